"""Prometheus metrics of the API: per process, or summed over gunicorn's workers.

Under gunicorn, gunicorn.conf.py gives the workers one directory in
PROMETHEUS_MULTIPROC_DIR (cleared at start); each worker then writes its
figures to memory-mapped files there, and a scrape of any worker sums them
(prometheus_client's multiprocess mode). Without that variable the figures are
kept in the process, in a registry of the app's own.
"""
import glob
import os

from valence.config import ValenceError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
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


def mark_worker_dead(pid, path):
    """Drop a dead worker's live gauges; its counters stay, so no request it counted is lost."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


class Metrics:
    """The API's metrics, with per-request recording that binds each label set once."""

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
        # One histogram: its _count is the number of requests by route, method and status,
        # so a request costs two writes (its bucket and the sum), not three with a counter.
        self.requests = Histogram("http_request_duration_seconds", "Time to answer a request, by route (URL rule), "
                                  "method and status; _count is the number of requests.",
                                  ("route", "method", "status"), buckets=LATENCY_BUCKETS, **kept)
        self.songs = Counter("songs_predicted", "Songs predicted by POST /predict.", **kept)
        self.reloads = Counter("reloads", "Successful reloads of the model or the catalog.", ("what",), **kept)
        self.load_failures = Counter("load_failures", "Failed loads of the model or the catalog, at start or on a "
                                                      "reload.", ("what",), **kept)
        # Gauges of live workers only: those of a dead worker are dropped by mark_worker_dead.
        self.model_info = Gauge("model_info", "1 for each model bundle served now (0: served before a reload).",
                                ("kind", "version", "created_at"), multiprocess_mode="livemax", **kept)
        self.catalog_tracks = Gauge("catalog_tracks", "Tracks in the catalog served now.",
                                    multiprocess_mode="livemostrecent", **kept)
        self._bound = {}
        self._models = ()

    def record_request(self, route, method, status, seconds):
        """Count one answered request and its duration."""
        key = (route, method, status)
        child = self._bound.get(key)
        if child is None:  # labels() takes a lock and builds strings: once per label set, not per request
            child = self._bound[key] = self.requests.labels(route, method if method in METHODS else "other", status)
        child.observe(seconds)

    def record_songs(self, count):
        """Count songs predicted by one POST."""
        self.songs.inc(count)

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
            if family.name == "valence_http_request_duration_seconds":
                for sample in family.samples:
                    labels = sample.labels
                    if (sample.name.endswith("_count") and labels.get("route") == LOOKUP_ROUTE
                            and labels.get("method") == "GET" and labels.get("status") in LOOKUP_RESULTS):
                        counts[LOOKUP_RESULTS[labels["status"]]] += sample.value
            yield family
        lookups = CounterMetricFamily("valence_lookups", "Catalog lookups (GET /predict) by result: found (200) "
                                                         "or not_found (404).", labels=("result",))
        for result, count in counts.items():
            lookups.add_metric((result,), count)
        yield lookups
