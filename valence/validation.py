"""Validate POST /predict bodies against the schema in config, field by field."""
import json
import re

from valence import config

MAX_SONGS = 1000
MAX_TEXT = 200  # longest genre/artist/track/id string a song may hold
MAX_QUERY_TEXT = 500  # longest artist_name/track_name/track_id a lookup accepts
# Longest raw query string: two 500-character names fit even as percent-encoded
# accented letters; gunicorn refuses request lines over 8,190 bytes before the app sees them.
MAX_QUERY_BYTES = 8000
MAX_ERRORS = 100  # a 1,000-row body of junk should not answer with 14,000 messages
# Kaggle columns a client may send along with the features (e.g. a catalog
# row pasted back): accepted and checked, only artist_name is used.
OPTIONAL_FIELDS = {"artist_name": str, "track_name": str, "track_id": str, "valence": float}
CHOICES = {"key": config.KEYS, "mode": config.MODES, "time_signature": config.TIME_SIGNATURES}
RANGES = [(name, low, high) for name, (low, high) in config.NUMERIC_RANGES.items()]
KNOWN_FIELDS = frozenset(config.FEATURE_COLUMNS) | OPTIONAL_FIELDS.keys()
# Text may not hold control characters (NUL and the like; tab and newline
# count as spaces) nor lone UTF-16 surrogates, which no UTF-8 text can hold.
# The patterns say so in the OpenAPI document (valid in JavaScript too).
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
GENRE_PATTERN = r"^(?!\s*$)[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # the same, and not blank
BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


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
        raise BodyError(f"key {twice[:MAX_TEXT]!r} appears twice in one JSON object")
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


def text_error(value):
    """Return why a string is not acceptable text (control characters, lone surrogates), or None."""
    if BAD_CHARACTER.search(value):
        return "must not contain control characters (such as NUL) or lone surrogates"
    return None


def _is_number(value):
    """Tell whether a JSON value is a number (booleans are not); NaN and inf fail every range."""
    return type(value) in (int, float)


def _field_error(name, value):
    """Return a message if one field's value is bad, else None."""
    if name in config.NUMERIC_RANGES:
        low, high = config.NUMERIC_RANGES[name]
        if not _is_number(value) or not low <= value <= high:
            return f"must be a number from {low:g} to {high:g}"
        return None
    if name in CHOICES:
        if not isinstance(value, str) or value not in CHOICES[name]:
            return f"must be one of {', '.join(CHOICES[name])}"
        return None
    if name == "genre":
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            return f"must be a non-empty string of at most {MAX_TEXT} characters"
        return text_error(value)
    kind = OPTIONAL_FIELDS[name]
    if kind is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            return f"must be a string of at most {MAX_TEXT} characters"
        return text_error(value)
    if kind is float and (not _is_number(value) or not 0.0 <= value <= 1.0):
        return "must be a number from 0 to 1"
    return None


def _song_is_valid(song):
    """Check one song quickly; song_errors() says what is wrong when this is False."""
    if not isinstance(song, dict) or not song.keys() <= KNOWN_FIELDS:
        return False
    try:
        return (all(type(song[name]) in (int, float) and low <= song[name] <= high for name, low, high in RANGES)
                and all(isinstance(song[name], str) and song[name] in allowed for name, allowed in CHOICES.items())
                and _field_error("genre", song["genre"]) is None
                and all(_field_error(name, song[name]) is None for name in song.keys() & OPTIONAL_FIELDS.keys()))
    except KeyError:  # a missing field
        return False


def song_errors(song, index):
    """List {index, field, message} for every bad, missing or unknown field of one song."""
    if not isinstance(song, dict):
        return [{"index": index, "field": None, "message": "must be a JSON object of features"}]
    errors = []
    for name in config.FEATURE_COLUMNS:
        message = _field_error(name, song[name]) if name in song else "is required"
        if message:
            errors.append({"index": index, "field": name, "message": message})
    for name in song.keys() - set(config.FEATURE_COLUMNS):
        message = _field_error(name, song[name]) if name in OPTIONAL_FIELDS else "is not a known field"
        if message:
            errors.append({"index": index, "field": name[:MAX_TEXT], "message": message})
    return errors


def validate_songs(body):
    """Return (songs, is_list) for a valid body; raise BodyError listing every bad field."""
    is_list = isinstance(body, list)
    songs = body if is_list else [body]
    if not isinstance(body, (list, dict)):
        raise BodyError("body must be a JSON object of features or a list of them")
    if not 1 <= len(songs) <= MAX_SONGS:
        raise BodyError(f"a list must hold 1 to {MAX_SONGS} songs, not {len(songs)}")
    errors = []
    for index, song in enumerate(songs):
        if not _song_is_valid(song):
            errors.extend(song_errors(song, index if is_list else None))
    if errors:
        shown = errors[:MAX_ERRORS]
        more = f" (first {MAX_ERRORS} shown)" if len(errors) > MAX_ERRORS else ""
        raise BodyError(f"{len(errors)} invalid field(s){more}; nothing was predicted", shown)
    return songs, is_list


def songs_to_columns(songs):
    """Turn validated songs into the column lists a Predictor frame is built from."""
    columns = {name: [song[name] for song in songs] for name in config.FEATURE_COLUMNS}
    columns["genre"] = [genre.strip() for genre in columns["genre"]]
    if any("artist_name" in song for song in songs):
        columns["artist_name"] = [song.get("artist_name", "") for song in songs]
    return columns
