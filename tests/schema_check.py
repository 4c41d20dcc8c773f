"""Check values and answers against the served OpenAPI 3.1 document with jsonschema (JSON Schema 2020-12)."""
from jsonschema import Draft202012Validator


def schema_errors(value, schema, document):
    """Return a list of the places where `value` breaks `schema` (refs resolve in the document); empty when valid."""
    validator = Draft202012Validator({**schema, "components": document["components"]})
    return [f"${''.join(f'[{part!r}]' for part in error.absolute_path)}: {error.message[:300]}"
            for error in validator.iter_errors(value)]


def answer_errors(document, path, method, status, mimetype, body):
    """Validate an answer against the document's entry for its path, method and status."""
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"].get(str(status))
    if declared is None:
        return [f"{method} {path}: status {status} is not documented"]
    if mimetype not in declared.get("content", {}):
        return [f"{method} {path}: content type {mimetype}"]
    return schema_errors(body, declared["content"][mimetype]["schema"], document)


def response_errors(document, path, method, response):
    """Validate a Flask test client's response against the document."""
    return answer_errors(document, path, method, response.status_code, response.mimetype, response.get_json())
