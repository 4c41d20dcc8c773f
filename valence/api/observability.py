"""What operators watch: request ids, one JSON log line per request, /metrics, liveness and readiness."""
import itertools
import logging
import os
import re
import time
from urllib.parse import parse_qs

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from valence.api.environment import from_environment, parse
from valence.api.probes import bp, metrics_bp, openapi_paths, service_problems
from valence.api.telemetry import LOOKUP_ROUTE, METHODS, UNMATCHED, Metrics, ProcessId, multiprocess_dir, request_logger

SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}").fullmatch
REQUEST_ID, ROUTE, SONGS = "valence.request_id", "valence.route", "valence.songs"  # keys of the WSGI environ
LOGGED_NAMES = ("track_id", "artist_name", "track_name")  # of a lookup, when VALENCE_LOG_LOOKUP_NAMES is on
LOGGED_NAME_CHARS = 100
LOG_SETTINGS = ("VALENCE_METRICS", "VALENCE_LOG_REQUESTS", "VALENCE_LOG_LOOKUP_NAMES")


class Observer:
    """One app's observability state: its settings, its metrics, the model version it logs."""

    def __init__(self, settings, readiness, url_map):
        self.metrics = Metrics(multiprocess_dir()) if settings["VALENCE_METRICS"] else None
        self.log = request_logger() if settings["VALENCE_LOG_REQUESTS"] else None
        self.log_names = settings["VALENCE_LOG_LOOKUP_NAMES"]
        self.readiness, self.url_map = readiness, url_map
        self.model_version = None
        self._pid = self._prefix = self._count = None

    def new_request_id(self):
        """Return a fresh id: a random per-process prefix and a counter (cheaper than a uuid4)."""
        if self._pid != ProcessId.pid:  # a forked worker must not repeat its parent's ids
            self._pid, self._prefix, self._count = ProcessId.pid, os.urandom(6).hex(), itertools.count(1)
        return f"{self._prefix}-{next(self._count):x}"

    def finish(self, environ, status, seconds):
        """Count a finished request in the metrics and write its log line, before its answer is sent."""
        method, route, songs = environ.get("REQUEST_METHOD", ""), environ.get(ROUTE), environ.get(SONGS)
        if route is None:
            route = self.route_of_405(environ) if status == 405 else UNMATCHED
        if self.metrics is not None:
            self.metrics.record_request(route, method, status, seconds, songs)
        if self.log is not None:
            # makeRecord and handle: what logger.info does, less its search of the stack for the caller.
            self.log.handle(self.log.makeRecord(self.log.name, logging.INFO, __file__, 0, "request", None, None,
                                                extra={"fields": self.log_fields(environ, method, route, status,
                                                                                 seconds, songs)}))

    def log_fields(self, environ, method, route, status, seconds, songs):
        """Return the fields of a request's log line, in their order (the time goes first, from the record)."""
        fields = {"request_id": environ[REQUEST_ID], "method": method if method in METHODS else method[:20],
                  "route": route, "status": status, "duration_ms": round(seconds * 1000, 3),
                  "model": self.model_version, "pid": ProcessId.pid}
        if songs is not None:
            fields["songs"] = songs
        if self.log_names and route == LOOKUP_ROUTE and method == "GET":
            query = parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=20)
            fields.update((name, query[name][0][:LOGGED_NAME_CHARS]) for name in LOGGED_NAMES if name in query)
        return fields

    def route_of_405(self, environ):
        """Return the URL rule a 405's path matched with another method (looked up only for these)."""
        adapter = self.url_map.bind_to_environ(environ)
        for method in sorted(METHODS):
            try:
                return adapter.match(method=method, return_rule=True)[0].rule
            except HTTPException:
                continue
        return UNMATCHED


class RequestObserver:
    """WSGI middleware: an X-Request-ID on every answer, then the metrics and the log line."""

    def __init__(self, wsgi_app, observer):
        self.wsgi_app, self.observer = wsgi_app, observer

    def __call__(self, environ, start_response):
        """Answer through the app, timing it and tagging the answer with the request's id."""
        started = time.perf_counter()
        request_id = environ.get("HTTP_X_REQUEST_ID")
        if request_id is None or SAFE_REQUEST_ID(request_id) is None:
            request_id = self.observer.new_request_id()
        environ[REQUEST_ID] = request_id
        seen = ["500"]  # what gunicorn answers if the app raises before starting the answer

        def start(status, headers, exc_info=None):
            seen[0] = status
            return start_response(status, [*headers, ("X-Request-ID", request_id)], exc_info)
        try:
            return self.wsgi_app(environ, start)
        finally:  # Flask has built the whole body by now: the time is the answer's
            self.observer.finish(environ, int(seen[0][:3]), time.perf_counter() - started)


def route_keeping(request_class):
    """Return a subclass of a Flask request class that copies its URL rule into the environ.

    Flask drops the request before the middleware sees the answer; the rule
    (the route label) stays behind in the environ. A property costs less than
    a teardown_request function.
    """
    class RouteKeepingRequest(request_class):
        _url_rule = None

        @property
        def url_rule(self):
            """Return the URL rule that matched the request (None when none did)."""
            return self._url_rule

        @url_rule.setter
        def url_rule(self, rule):
            self._url_rule = rule
            if rule is not None:
                self.environ[ROUTE] = rule.rule
    return RouteKeepingRequest


def note_songs(count):
    """Tell the metrics and the log how many songs this request predicted."""
    request.environ[SONGS] = count


def served_models(pair):
    """Return (kind, version, created_at) of each bundle of a served pair; the version covers them all."""
    predictor = pair.models.predictor if pair is not None and pair.models is not None else None
    if predictor is None:
        return []
    bundles = (predictor.regression, predictor.classification)
    return [(bundle.kind, pair.version, bundle.meta.get("created_at")) for bundle in bundles if bundle is not None]


def watch_swaps(state, old, new):
    """Count a swap of the served models or catalog, or a new failure to load them; publish what is served."""
    metrics = state.metrics
    if metrics is not None:
        for what, half in (("model", "models"), ("catalog", "store")):  # failures: Serving.on_failure
            before, after = getattr(old, half, None), getattr(new, half)
            if before is not None and after is not None and after is not before:
                metrics.record_load(what, True)
        metrics.set_model_info(served_models(new))
        metrics.set_catalog_size(new.store.meta.get("tracks", 0) if new.store is not None else 0)
    state.model_version = new.version


def init_app(app, readiness=service_problems):
    """Add request ids, the request log, /metrics and /health/live|ready to an app (they follow its swaps)."""
    ProcessId.watch()
    settings = {}
    for key in LOG_SETTINGS:  # the environment's value, unless the app's config has one (create_app's, parsed)
        if app.config.get(key) is None:
            app.config[key] = from_environment().get(key)
        settings[key] = app.config[key] = parse(key, app.config[key])
    state = app.extensions["valence_observability"] = Observer(settings, readiness, app.url_map)
    serving = app.extensions.get("valence")
    if hasattr(serving, "on_serve"):  # the models and catalog are loaded in each worker, on its first request
        serving.on_serve = lambda old, new: watch_swaps(state, old, new)
        # A load that fails, or a served catalog that stops answering, once per new reason.
        serving.on_failure = lambda what: state.metrics is not None and state.metrics.record_load(what, False)
    app.request_class = route_keeping(app.request_class)
    app.register_blueprint(bp)
    if state.metrics is not None:
        app.register_blueprint(metrics_bp)
    document = app.extensions.get("valence_openapi")
    if document is not None:
        document["paths"].update(openapi_paths(state.metrics is not None))
    app.wsgi_app = RequestObserver(app.wsgi_app, state)
    return state


def observer(app=None):
    """Return the Observer of `app` (default: the current app)."""
    return (app or current_app).extensions["valence_observability"]


def record_reload(what, ok, app=None):
    """Count a reload of the "model" or the "catalog" (a load failure when not ok)."""
    metrics = observer(app).metrics
    if metrics is not None:
        metrics.record_load(what, ok)


def set_model_info(models, app=None):
    """Publish the served bundles as (kind, version, created_at); the first one's version goes in the log."""
    state = observer(app)
    models = list(models)
    state.model_version = models[0][1] if models else None
    if state.metrics is not None:
        state.metrics.set_model_info(models)


def set_catalog_size(tracks, app=None):
    """Publish the number of tracks in the served catalog."""
    metrics = observer(app).metrics
    if metrics is not None:
        metrics.set_catalog_size(tracks)
