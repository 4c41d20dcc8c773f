"""Prometheus metrics and the request log, both written as each answer is given.

Under gunicorn, gunicorn.conf.py gives the workers one directory in
PROMETHEUS_MULTIPROC_DIR (cleared at start); each worker writes its figures to
memory-mapped files there as it answers, and a scrape of any worker sums them
(prometheus_client's multiprocess mode, MultiProcessCollector). Without that
variable the figures are kept in the process, in a registry of the app's own.

The request log is the standard logging module's: one JSON line per request,
written to stderr (a write and a flush) before the answer leaves the worker,
so a scrape right after an answer counts it and a worker killed with SIGKILL
has already written every line of the requests it answered.
"""
import glob
import json
import logging
import os
import sys
import time

from valence.config import ValenceError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_LOGGER = "valence.requests"
# Seconds; a lookup takes about 0.6 ms, a 1,000-song POST about 30 ms (docs/api.md, Speed).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Label values must come from a small set: a client can send any method name.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "unmatched"  # the route label of a request that matched no URL rule (404)
# A catalog lookup is a GET of this route: 200 when the track is found, 404 when not.
LOOKUP_ROUTE, LOOKUP_RESULTS = "/predict", {"200": "found", "404": "not_found"}


def multiprocess_dir():
    """Return the multiprocess directory from the environment, or None for per-process metrics."""
    return os.environ.get(MULTIPROC_ENV) or None


def clear_multiprocess_dir(path):
    """Create `path` if needed and remove the metric files a previous run left there."""
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def dead_worker_marker(path):
    """Return a function that drops a dead worker's live gauges (its counters stay, so nothing it counted is lost).

    gunicorn calls child_exit from its SIGCHLD handler: prometheus_client is
    imported here, at start, because an import interrupted by a second
    SIGCHLD that imports it again fails as a circular import.
    """
    from prometheus_client import multiprocess

    def mark_dead(pid):
        """Drop the live gauges of the worker `pid`."""
        multiprocess.mark_process_dead(pid, path)
    return mark_dead


class ProcessId:
    """This process's id, kept up to date across forks (getpid is a system call: about a microsecond a call)."""

    pid = None
    watching = False

    @classmethod
    def watch(cls):
        """Start following forks, once per interpreter."""
        if not cls.watching:
            cls.watching = True
            os.register_at_fork(after_in_child=cls.refresh)
        cls.refresh()

    @classmethod
    def refresh(cls):
        """Read the process id again."""
        cls.pid = os.getpid()


class StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever sys.stderr is at each line (pytest and some servers replace it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        """Return the current sys.stderr."""
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass  # always the current sys.stderr


class JsonLineFormatter(logging.Formatter):
    """Format a record as one JSON object: its UTC time to the millisecond, then the record's `fields` in order.

    Written here rather than taken from python-json-logger: the fields are one
    ordered dict the caller builds, so the whole formatter is one json.dumps.
    """

    def __init__(self):
        super().__init__()
        self._second, self._stamp = None, ""

    def format(self, record):
        """Return the record's JSON line (without its newline)."""
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = "%s.%03dZ" % (self._stamp, (record.created - second) * 1000)
        fields = getattr(record, "fields", None) or {"message": record.getMessage()}  # a record logged otherwise
        return json.dumps({"time": stamp, **fields}, ensure_ascii=False, separators=(",", ":"))


def request_logger():
    """Return the request log's logger: INFO lines as JSON to stderr, not passed on to the root logger's handlers.

    Set up on the first call (by an app's factory, never at import); later calls find it ready.
    """
    logger = logging.getLogger(REQUEST_LOGGER)
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonLineFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line per request, whatever else the root logger writes to
    return logger


class Metrics:
    """The API's metrics, prometheus_client's own Counter, Histogram and Gauge, written as each request is answered."""

    def __init__(self, path=None):
        """Create the metrics: written under `path` (multiprocess mode) or kept in a registry of their own."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        self.path = path
        if path is not None:
            if not getattr(values.ValueClass, "_multiprocess", False):
                raise ValenceError(f"{MULTIPROC_ENV} must be set before prometheus_client is first imported "
                                   "(gunicorn.conf.py sets it when gunicorn starts)")
            if not os.path.isdir(path) or not os.access(path, os.W_OK):
                raise ValenceError(f"{MULTIPROC_ENV}={path} is not a writable directory")
        self.registry = None if path is not None else CollectorRegistry()
        kept = {"registry": self.registry, "namespace": "valence"}
        self.requests = Counter("http_requests", "Requests answered, by route (URL rule), method and status.",
                                ("route", "method", "status"), **kept)
        self.latency = Histogram("http_request_duration_seconds", "Time to answer a request, by route and method.",
                                 ("route", "method"), buckets=LATENCY_BUCKETS, **kept)
        self.songs = Counter("songs_predicted", "Songs predicted (and explained) by POST /predict and POST /explain.", **kept)
        self.reloads = Counter("reloads", "Successful reloads of the model or the catalog.", ("what",), **kept)
        self.load_failures = Counter("load_failures", "Failed loads of the model or the catalog, at start or on a "
                                                      "reload.", ("what",), **kept)
        # Gauges of live workers only: those of a dead worker are dropped (dead_worker_marker).
        self.model_info = Gauge("model_info", "1 for each model bundle served now (0: served before a reload).",
                                ("kind", "version", "created_at"), multiprocess_mode="livemax", **kept)
        self.catalog_tracks = Gauge("catalog_tracks", "Tracks in the catalog served now.",
                                    multiprocess_mode="livemostrecent", **kept)
        self._models = ()
        self._children = {}  # (route, method, status): the request counter's and latency histogram's children

    def record_request(self, route, method, status, seconds, songs=None):
        """Count one answered request, its duration and the songs it predicted."""
        label = method if method in METHODS else "other"
        children = self._children.get((route, label, status))
        if children is None:  # labels() looks its child up under a lock: once per label set, not per request
            children = self._children[route, label, status] = (self.requests.labels(route, label, str(status)),
                                                               self.latency.labels(route, label))
        children[0].inc()
        children[1].observe(seconds)
        if songs:
            self.songs.inc(songs)

    def record_load(self, what, ok, reload=True):
        """Count a load of the model or the catalog: a reload when it succeeds, a failure when not."""
        if not ok:
            self.load_failures.labels(what).inc()
        elif reload:
            self.reloads.labels(what).inc()

    def set_model_info(self, models):
        """Mark the served bundles, given as (kind, version, created_at) triples; earlier ones go to 0."""
        models = tuple(tuple("" if value is None else str(value) for value in model) for model in models)
        for old in self._models:
            if old not in models:
                self.model_info.labels(*old).set(0)
        for model in models:
            self.model_info.labels(*model).set(1)
        self._models = models

    def set_catalog_size(self, tracks):
        """Set the number of tracks in the served catalog."""
        self.catalog_tracks.set(tracks)

    def exposition(self, accept=None):
        """Return (body bytes, content type) of a scrape, summed over the workers in multiprocess mode."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.registry is not None:
            source = self.registry
        else:
            source = MultiProcessCollector(None, self.path)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WithLookups(source))
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type


class WithLookups:
    """A collector that passes another's metrics on and adds valence_lookups_total, counted from them.

    Lookups found and not found are the 200s and 404s of GET /predict: counting
    them at scrape time spares every lookup a write of its own.
    """

    def __init__(self, source):
        self.source = source

    def collect(self):
        """Yield the source's metric families, then the lookups by result."""
        from prometheus_client.core import CounterMetricFamily

        counts = dict.fromkeys(LOOKUP_RESULTS.values(), 0.0)
        for family in self.source.collect():
            if family.name == "valence_http_requests":
                for sample in family.samples:
                    labels = sample.labels
                    if (sample.name.endswith("_total") and labels.get("route") == LOOKUP_ROUTE
                            and labels.get("method") == "GET" and labels.get("status") in LOOKUP_RESULTS):
                        counts[LOOKUP_RESULTS[labels["status"]]] += sample.value
            yield family
        lookups = CounterMetricFamily("valence_lookups", "Catalog lookups (GET /predict) by result: found (200) "
                                                         "or not_found (404).", labels=("result",))
        for result, count in counts.items():
            lookups.add_metric((result,), count)
        yield lookups
