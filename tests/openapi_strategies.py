"""Hypothesis strategies built from the OpenAPI document's schemas: valid values, and junk."""
import math
import re

from hypothesis import strategies as st

# Lists the document allows 1,000 long are drawn at most this long: a forward
# pass per example is the slow part, and 1,000 songs are a hostile-test case.
MAX_LIST = 12
# Any Unicode but lone surrogates (a test client cannot send them in a URL).
ANY_CHARACTER = st.characters(exclude_categories=("Cs",))
PLAIN_CHARACTER = st.characters(exclude_categories=("Cs", "Cc"))

json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300, max_value=10 ** 400)
    | st.floats() | st.text(ANY_CHARACTER, max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(ANY_CHARACTER, max_size=12), inner, max_size=4),
    max_leaves=12)


def resolve(schema, document):
    """Follow a $ref to the named schema."""
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def valid(schema, document):
    """Return a strategy of values the schema accepts (lists shortened to MAX_LIST)."""
    schema = resolve(schema, document)
    if "oneOf" in schema:
        return st.one_of([valid(option, document) for option in schema["oneOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = {name: valid(properties[name], document) for name in schema.get("required", ())}
        optional = {name: valid(item, document) for name, item in properties.items() if name not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(valid(schema["items"], document), min_size=low,
                        max_size=max(low, min(schema.get("maxItems", MAX_LIST), MAX_LIST)))
    if kind == "string":
        text = st.text(PLAIN_CHARACTER, min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 50))
        pattern = schema.get("pattern")
        return text.filter(lambda value: re.search(pattern, value)) if pattern else text
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        whole = st.integers(math.ceil(low) if low is not None else None, math.floor(high) if high is not None else None)
        return st.floats(low, high, allow_nan=False, allow_infinity=False) | whole
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    return json_junk


def near_boundary(schema, document):
    """Return a strategy of values just inside or outside a number's or string's limits, else junk."""
    schema = resolve(schema, document)
    if schema.get("type") == "number":
        edges = [edge for name in ("minimum", "maximum") if (edge := schema.get(name)) is not None]
        nudged = [edge + step for edge in edges for step in (-1e-9, 0, 1e-9, -1, 1)]
        return st.sampled_from(nudged) | st.sampled_from([str(edge) for edge in edges]) | st.just(True)
    if schema.get("type") == "string":
        longest = schema.get("maxLength", 50)
        return (st.text(ANY_CHARACTER, min_size=longest - 1, max_size=longest + 2)
                | st.sampled_from(["", " ", "\t\n", "\x00", "a\x00b", "\x7f", "\x1b[31m"]) | st.just(7))
    return json_junk


@st.composite
def mutated(draw, schema, document):
    """Draw a valid object, then break (or keep) one of its fields: a wrong value, a missing or unknown key."""
    schema = resolve(schema, document)
    value = dict(draw(valid(schema, document)))
    properties = schema["properties"]
    how = draw(st.sampled_from(["junk", "boundary", "drop", "extra", "none"]))
    name = draw(st.sampled_from(sorted(properties)))
    if how == "junk":
        value[name] = draw(json_junk)
    elif how == "boundary":
        value[name] = draw(near_boundary(properties[name], document))
    elif how == "drop":
        value.pop(name, None)
    elif how == "extra":
        value[draw(st.text(ANY_CHARACTER, min_size=1, max_size=20))] = draw(json_junk)
    return value
