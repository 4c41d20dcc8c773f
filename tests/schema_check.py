"""A small validator for the OpenAPI 3.0 schema subset our document uses (jsonschema is not a dependency)."""
import re

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
KNOWN = {"$ref", "type", "nullable", "properties", "required", "additionalProperties", "items", "enum",
         "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "oneOf", "description", "pattern"}


def schema_errors(value, schema, document, where="$"):
    """Return a list of the places where `value` breaks `schema`; empty when it is valid."""
    unknown = set(schema) - KNOWN
    assert not unknown, f"schema_check does not understand {unknown} at {where}"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_errors(value, document["components"]["schemas"][name], document, where)
    if value is None and schema.get("nullable"):
        return []
    if "oneOf" in schema:
        passing = [s for s in schema["oneOf"] if not schema_errors(value, s, document, where)]
        return [] if len(passing) == 1 else [f"{where}: matches {len(passing)} of oneOf"]
    if "type" in schema and not TYPES[schema["type"]](value):
        return [f"{where}: {value!r:.80} is not of type {schema['type']}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if "maximum" in schema and TYPES["number"](value) and value > schema["maximum"]:
        errors.append(f"{where}: {value} > {schema['maximum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r:.80} does not match {schema['pattern']}")
    if isinstance(value, (str, list)):
        low, high = schema.get("minLength", schema.get("minItems", 0)), schema.get("maxLength", schema.get("maxItems"))
        if len(value) < low or (high is not None and len(value) > high):
            errors.append(f"{where}: length {len(value)} outside [{low}, {high}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{where}: missing {name}" for name in schema.get("required", ()) if name not in value]
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], document, f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {name}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, document, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], document, f"{where}[{i}]")
    return errors


def response_errors(document, path, method, response):
    """Validate a test client's response against the document's entry for its path, method and status."""
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"].get(str(response.status_code))
    if declared is None:
        return [f"{method} {path}: status {response.status_code} is not documented"]
    if response.mimetype != "application/json":
        return [f"{method} {path}: content type {response.mimetype}"]
    schema = declared["content"]["application/json"]["schema"]
    return schema_errors(response.get_json(), schema, document)
