"""Request bodies of songs: framed and bounded bytes, strict JSON, validated songs (POST /predict and /explain)."""
from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from valence.api.context import ApiError, service
from valence.api.schemas import MAX_SONGS, validate_songs
from valence.api.strict_json import BodyError, parse_json


def request_body():
    """Return the body's bytes: framed by Content-Length or chunked, and under MAX_CONTENT_LENGTH (else 413)."""
    codings = request.headers.get("Transfer-Encoding")
    if codings is not None and codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
        # RFC 9112 6.1: its length cannot be known. gunicorn would read Content-Length
        # instead, which a proxy in front may not have done.
        raise ApiError(400, f"Transfer-Encoding {codings[:50]!r} is not supported: send the body plainly or chunked")
    raw = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None and len(raw) >= limit:
        raise RequestEntityTooLarge()  # werkzeug stops reading a chunked body at the limit without a word
    return raw


def song_levels(songs, default):
    """Each song's interval level: its own `level` field, else the query's `?level=` (default 0.9); one
    number when they all share it."""
    levels = [default if song.level is None else song.level for song in songs]
    return levels[0] if len(set(levels)) == 1 else levels


def json_songs(max_songs=MAX_SONGS):
    """Return (songs, is_list) of a JSON body of songs, or raise the 4xx that says what is wrong."""
    if not request.is_json:
        raise ApiError(415, "send the songs as JSON with Content-Type: application/json")
    if request.content_encoding not in (None, "", "identity"):
        raise ApiError(415, "Content-Encoding is not supported: send the JSON uncompressed")
    service().require_predictor()
    try:
        songs, is_list = validate_songs(parse_json(request_body()), max_songs)
    except BodyError as error:
        raise ApiError(400, error.message, errors=error.errors) from None
    return songs, is_list
