"""Prometheus metrics and the request log's writer: counted per process, flushed in the background.

Under gunicorn, gunicorn.conf.py gives the workers one directory in
PROMETHEUS_MULTIPROC_DIR (cleared at start); each worker writes its figures to
memory-mapped files there, and a scrape of any worker sums them
(prometheus_client's multiprocess mode). Without that variable the figures are
kept in the process, in a registry of the app's own.

A request only adds to plain Python numbers and queues its log line (under a
microsecond); a background thread per process moves them to prometheus_client
and to stderr every FLUSH_SECONDS, and once more at exit. Writing each request
through prometheus_client cost 3 to 7 us (locked, pid-checked writes) and a log
line's write(2) to a file 1 to 4 us (timeit, on the busy development machine),
against about 80 us for a lookup in Flask. The price: a scrape may
miss the last FLUSH_SECONDS of other workers' requests, and a worker killed
with SIGKILL loses at most its last FLUSH_SECONDS of counts and log lines.
"""
import atexit
import bisect
import collections
import glob
import os
import threading
import time
import weakref

from valence.config import ValenceError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 0.1
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
    """This process's id, kept up to date across forks (getpid is a system call, 1 us on a busy machine)."""

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


class Flusher:
    """The per-process thread that calls flush() on every registered object each FLUSH_SECONDS, and at exit."""

    pid = None
    targets = weakref.WeakSet()

    @classmethod
    def register(cls, target):
        """Flush `target` from now on (it is dropped when nothing else holds it)."""
        ProcessId.watch()
        cls.targets.add(target)

    @classmethod
    def ensure_running(cls):
        """Start this process's thread unless it runs (a forked child has none of its parent's threads)."""
        if cls.pid != ProcessId.pid:
            cls.pid = ProcessId.pid
            threading.Thread(target=cls.run, name="valence-flush", daemon=True).start()
            atexit.register(cls.flush_all)

    @classmethod
    def run(cls):
        """Flush every FLUSH_SECONDS for the life of the process."""
        while True:
            time.sleep(FLUSH_SECONDS)
            cls.flush_all()

    @classmethod
    def flush_all(cls):
        """Flush every registered object now."""
        for target in list(cls.targets):
            target.flush()


class LogWriter:
    """The request log: lines queued by requests, written to a file descriptor in batches of whole lines.

    Batches of at most PIPE_BUF bytes are written by one write(2) each, so
    they never interleave with another worker's lines on a shared pipe.
    """

    BATCH_BYTES = 4096  # PIPE_BUF on Linux: a write to a pipe up to this size is never split
    MAX_WAITING = 100_000  # lines; beyond this (a blocked stderr) new lines are dropped

    def __init__(self, fd=2):
        self.fd, self.pid, self.waiting, self.lock = fd, None, collections.deque(), threading.Lock()
        Flusher.register(self)

    def write(self, line):
        """Queue one line (bytes ending in a newline)."""
        if self.pid != ProcessId.pid:  # lines a parent queued before a fork are the parent's to write
            self.pid, self.waiting, self.lock = ProcessId.pid, collections.deque(), threading.Lock()
            Flusher.ensure_running()
        if len(self.waiting) < self.MAX_WAITING:
            self.waiting.append(line)  # deque appends and pops are thread-safe

    def flush(self):
        """Write every queued line now, in batches of whole lines."""
        with self.lock:
            waiting, batch, size = self.waiting, [], 0
            for _ in range(len(waiting)):
                line = waiting.popleft()
                if size + len(line) > self.BATCH_BYTES and batch:
                    self.write_batch(batch)
                    batch, size = [], 0
                batch.append(line)
                size += len(line)
            if batch:
                self.write_batch(batch)

    def write_batch(self, lines):
        """Write lines in one write(2); a closed or broken stderr loses them without failing anything."""
        try:
            os.write(self.fd, b"".join(lines))
        except OSError:
            pass


class Metrics:
    """The API's metrics; requests are added up in the process and flushed to prometheus_client in batches."""

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
        # Per (route, method, status): [requests, sum of seconds, then one count per bucket, +Inf last].
        self._pending, self._songs, self._pid = {}, 0, None
        self._lock = threading.Lock()
        Flusher.register(self)

    def record_request(self, route, method, status, seconds, songs=None):
        """Add one answered request, its duration and the songs it predicted."""
        if self._pid != ProcessId.pid:  # counts a parent held before a fork are the parent's to flush
            self._pid, self._pending, self._songs = ProcessId.pid, {}, 0
            Flusher.ensure_running()
        with self._lock:
            pending = self._pending.get((route, method, status))
            if pending is None:
                pending = self._pending[route, method, status] = [0, 0.0] + [0] * (len(LATENCY_BUCKETS) + 1)
            pending[0] += 1
            pending[1] += seconds
            pending[2 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # buckets count values <= their bound
            if songs:
                self._songs += songs

    def flush(self):
        """Move the added-up requests into prometheus_client (its files, in multiprocess mode)."""
        with self._lock:
            pending, songs, self._pending, self._songs = self._pending, self._songs, {}, 0
        for (route, method, status), (count, seconds, *buckets) in pending.items():
            label = method if method in METHODS else "other"
            self.requests.labels(route, label, str(status)).inc(count)
            histogram = self.latency.labels(route, label)
            # prometheus_client has no call to add many observations: add to the child's
            # sum and bucket values as observe() does (tests compare the two).
            histogram._sum.inc(seconds)
            for bucket, added in zip(histogram._buckets, buckets):
                if added:
                    bucket.inc(added)
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

        self.flush()  # this worker's own figures are exact; the others' are at most FLUSH_SECONDS old
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
