"""Catalog lookups (GET /predict, GET /explain): the query's parameters and the track they name."""
from urllib.parse import parse_qsl

from flask import request

from valence.api.schemas import MAX_QUERY_BYTES, MAX_QUERY_TEXT, text_error
from valence.api.context import ApiError, service
from valence.model.intervals import DEFAULT_LEVEL, check_level


def query_args(query_string):
    """Return the parameters of a raw query string as {name: [values]}, parsed as werkzeug's request.args does."""
    args = {}
    for name, value in parse_qsl(query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote"):
        args.setdefault(name, []).append(value)
    return args


def lookup_parameters(query_string):
    """Return track_id, artist_name and track_name of a raw query string (None when absent)."""
    if len(query_string) > MAX_QUERY_BYTES:
        raise ApiError(414, f"query string is longer than {MAX_QUERY_BYTES:,} bytes")
    args = query_args(query_string)
    values = []
    for name in ("track_id", "artist_name", "track_name"):
        given = args.get(name)
        if given is None:
            values.append(None)
            continue
        if len(given) > 1:  # which one would count is anybody's guess: refused, as a key twice in a body is
            raise ApiError(400, f"query parameter {name} is given more than once")
        value = given[0]
        if len(value) > MAX_QUERY_TEXT:
            raise ApiError(400, f"query parameter {name} is longer than {MAX_QUERY_TEXT} characters")
        problem = text_error(value)
        if problem:
            raise ApiError(400, f"query parameter {name} {problem}")
        if not value.strip():
            raise ApiError(400, f"query parameter {name} is empty")
        # Names are matched in one normal form (config.normalise_name); an id only loses its spaces.
        values.append(value.strip() if name == "track_id" else value)
    return values


def query_level():
    """Return the interval level the query asks for (?level=, default DEFAULT_LEVEL), or raise the 400."""
    given = query_args(request.query_string).get("level")
    if given is None:
        return DEFAULT_LEVEL
    if len(given) > 1:
        raise ApiError(400, "query parameter level is given more than once")
    try:
        return check_level(float(given[0]))
    except ValueError:
        raise ApiError(400, f"query parameter level must be a number between 0 and 1 (exclusive), such as 0.9; "
                            f"got {given[0][:40]!r}") from None


def track_answer(level):
    """Return the catalog answer of the track the query names, its valence with the interval at `level`."""
    answer = find_track()
    parts = answer.pop("interval_parts", None)
    if parts is not None:
        intervals = service().require_predictor().regression.intervals
        low, high = intervals.bounds([answer["prediction"]], [parts[0]], [parts[1]], level)
        answer["interval"] = {"level": level, "low": float(low[0]), "high": float(high[0])}
    return answer


def find_track():
    """Return the catalog answer for the track the request's query names, or raise the 400, 404 or 503."""
    track_id, artist, track = lookup_parameters(request.query_string)
    if track_id is not None:
        if artist is not None or track is not None:
            raise ApiError(400, "give either track_id or artist_name and track_name, not both")
        answer = service().require_catalog().by_track_id(track_id)
        if answer is None:
            raise ApiError(404, f"no track with track_id {track_id!r} in the catalog", suggestions=[])
        return answer
    missing = [name for name, value in (("artist_name", artist), ("track_name", track)) if value is None]
    if missing:
        raise ApiError(400, f"missing query parameter(s): {', '.join(missing)} "
                            "(or give track_id)", missing=missing)
    catalog = service().require_catalog()
    answer = catalog.by_names(artist, track)
    if answer is None:
        raise ApiError(404, f"no track {track!r} by {artist!r} in the catalog",
                       suggestions=catalog.suggest(artist, track))
    return answer
