"""Catalog lookups (GET /predict): the query's parameters, the track they name, and the fast path below Flask."""
from urllib.parse import parse_qsl

from flask import request

from valence.api import observability
from valence.api.schemas import MAX_QUERY_BYTES, MAX_QUERY_TEXT, text_error
from valence.api.context import ApiError, served_service, service


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
        # Names are matched with case and spaces folded (config.normalise_name); an id only loses its spaces.
        values.append(value.strip() if name == "track_id" else value)
    return values


def find_track(query_string=None, state=None, suggest=True):
    """Return the catalog answer for the track a query names, or raise the 400, 404 or 503.

    query_string and state default to the Flask request's raw query string and Service;
    suggest=False leaves a 404's suggestions out (the fast path, which hands a 404 to Flask).
    """
    track_id, artist, track = lookup_parameters(request.query_string if query_string is None else query_string)
    if track_id is not None:
        if artist is not None or track is not None:
            raise ApiError(400, "give either track_id or artist_name and track_name, not both")
        answer = (state or service()).require_catalog().by_track_id(track_id)
        if answer is None:
            raise ApiError(404, f"no track with track_id {track_id!r} in the catalog", suggestions=[])
        return answer
    missing = [name for name, value in (("artist_name", artist), ("track_name", track)) if value is None]
    if missing:
        raise ApiError(400, f"missing query parameter(s): {', '.join(missing)} "
                            "(or give track_id)", missing=missing)
    catalog = (state or service()).require_catalog()
    answer = catalog.by_names(artist, track)
    if answer is None:
        raise ApiError(404, f"no track {track!r} by {artist!r} in the catalog",
                       suggestions=catalog.suggest(artist, track) if suggest else [])
    return answer


class LookupFastPath:
    """WSGI middleware: a catalog lookup that finds its track is answered here, below Flask.

    GET /predict is the route a load balancer sends most traffic to, and Flask's contexts,
    routing and response objects cost about as much as the lookup itself. This answers it
    with the same functions as the Flask route (find_track, the served pair, the app's JSON
    provider) and the same bytes and headers (tests/test_api.py compares the two); every
    other request, and any lookup that is not a 200 (a 4xx or 503, a browser asking for the
    page, a server in debug mode), goes on to Flask, which answers it as it always has.
    """

    def __init__(self, app, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app

    def __call__(self, environ, start_response):
        """Answer a found lookup here; pass everything else on."""
        if (environ.get("PATH_INFO") == "/predict" and environ.get("REQUEST_METHOD") == "GET"
                and "html" not in environ.get("HTTP_ACCEPT", "") and self.compact()):
            try:
                state = served_service(self.app)
                answer = find_track(environ.get("QUERY_STRING", "").encode("latin-1"), state, suggest=False)
            except Exception:  # noqa: BLE001 - Flask answers it again, with its error handlers
                answer = None
            if answer is not None:
                data = self.app.json.dumps(answer, separators=(",", ":")).encode() + b"\n"
                headers = [("Content-Type", self.app.json.mimetype), ("Content-Length", str(len(data)))]
                if state.version is not None:
                    headers.append(("X-Model-Version", state.version))
                environ[observability.ROUTE] = "/predict"  # the route label of the metrics and the log
                start_response("200 OK", headers)
                return [data]
        return self.wsgi_app(environ, start_response)

    def compact(self):
        """Return whether Flask writes JSON answers compact (else, as in debug mode, Flask answers)."""
        json = self.app.json
        return json.compact is not False and (json.compact is not None or not self.app.debug)
