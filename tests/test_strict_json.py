"""Unit tests of valence.api.strict_json: request bodies are decoded as strict UTF-8 JSON or refused saying why."""
import pytest

from valence.api.strict_json import MAX_ECHO, BodyError, parse_json


def body_error(raw):
    with pytest.raises(BodyError) as info:
        parse_json(raw)
    return info.value.message


def test_parse_json_decodes_a_body_with_or_without_a_byte_order_mark():
    assert parse_json(b'{"genre": "Pop", "tempo": 120}') == {"genre": "Pop", "tempo": 120}
    assert parse_json("\ufeff[1, 2.5]".encode("utf-8")) == [1, 2.5]


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"", "body is empty"),
    (b" \n\t ", "body is empty"),
    (b'{"a": "\xff"}', "body is not valid UTF-8: byte 7 cannot be decoded"),
    (b'{"a": "\xed\xa0\x80"}', "body is not valid UTF-8"),  # a UTF-8-encoded surrogate
    ('{"a": 1}'.encode("utf-16"), "body is not valid UTF-8"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b'[-Infinity]', "-Infinity is not valid JSON"),
    (b'{"a": 1, "b": 2, "a": 3}', "key 'a' appears twice in one JSON object"),
    (b'[{"x": {"a": 1, "a": 1}}]', "key 'a' appears twice in one JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "body is nested too deeply"),
    (b"1" * 5000, "more than 4,300 digits"),
    (b'{"a": 1', "body is not valid JSON"),
])
def test_parse_json_refuses_bad_bodies_saying_why(raw, fragment):
    assert fragment in body_error(raw)


def test_a_long_duplicate_key_is_quoted_short():
    key = "k" * 5000
    assert body_error(f'{{"{key}": 1, "{key}": 2}}'.encode()) == f"key {key[:MAX_ECHO]!r} appears twice in one JSON object"
