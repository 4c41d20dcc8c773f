"""Strict decoding of request bodies: UTF-8 JSON only, no NaN, no key twice, bounded depth."""
import json

MAX_ECHO = 200  # longest piece of a client's text quoted back in a message


class BodyError(Exception):
    """A request body that cannot be used; `errors` lists one entry per bad field."""

    def __init__(self, message, errors=()):
        super().__init__(message)
        self.message = message
        self.errors = list(errors)


def _reject_constant(name):
    """Refuse the non-standard JSON constants NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs):
    """Build a JSON object, refusing a key given twice (parsers disagree on which one wins)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen = set()
        twice = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise BodyError(f"key {twice[:MAX_ECHO]!r} appears twice in one JSON object")
    return found


def parse_json(raw):
    """Decode a request body as strict JSON, or raise BodyError saying why not."""
    if not raw or raw.isspace():
        raise BodyError("body is empty: send a JSON object of features or a list of them")
    try:
        # Decoded here, strictly: json.loads of bytes would also take UTF-16 and
        # UTF-8-encoded surrogates, which JSON between systems must not use (RFC 8259).
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BodyError(f"body is not valid UTF-8: byte {error.start} cannot be decoded") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise BodyError("body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, huge integer literals, NaN
        if "integer string conversion" in str(error):  # Python's own message suggests changing its settings
            raise BodyError("body holds a number with more than 4,300 digits") from None
        raise BodyError(f"body is not valid JSON: {error}") from None
