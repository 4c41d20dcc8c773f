"""What a process serves: the models, their version, and the catalog scored with them, swapped as a pair."""
import gc
import logging
import shlex
import threading
import time
from dataclasses import dataclass

from valence.config import ValenceError
from valence.model.predictor import Models, bundle_signature, load_models
from valence.catalog.sql import BUILD_HINT, CatalogMissing, CatalogUnavailable
from valence.catalog.store import connect

log = logging.getLogger("valence.catalog")

@dataclass(frozen=True)
class Pair:
    """What a request answers with: models and the catalog scored with them (or why either is missing)."""

    models: Models | None = None
    store: object = None  # a store.CatalogStore whose model_version is models.version
    model_error: str | None = None
    catalog_error: str | None = None

    @property
    def version(self):
        """Return the version of the models served, or None."""
        return self.models.version if self.models is not None else None


class Serving:
    """The pair one process serves, checked for new files at most every `check_seconds` and swapped whole.

    Nothing is loaded until the first request, so each gunicorn worker loads after the
    fork. A new pair is served only once both halves match: models saved by a training
    run are held back until a catalog scored with them is in place, and the pair served
    before stays until then (a SQLite store keeps reading the file it opened; PostgreSQL
    keeps the previous generation's tables).
    """

    def __init__(self, model_dir, catalog_target, check_seconds=1.0, freeze_heap=False):
        self.model_dir, self.check_seconds, self.freeze_heap = model_dir, check_seconds, freeze_heap
        self.database = connect(catalog_target)
        self.pair, self.pending, self.waiting, self.retired = None, None, None, []
        self.next_check, self.notes = 0.0, []
        # Why the served catalog cannot answer now (its database away, its file found damaged), or None:
        # the process is not ready while it is set, and serves the same pair again when it clears.
        self.outage = None
        self.failures = {"model": None, "catalog": None}  # the last reason each half failed to load
        self.lock = threading.Lock()
        self.on_serve = None  # called with (old pair, new pair) on every swap (valence.api.observability)
        self.on_failure = None  # called with "model" or "catalog" once per new reason either fails to load

    def current(self):
        """Return the pair to answer with, after looking for new models and catalogs when it is time."""
        if self.pair is None or time.monotonic() >= self.next_check:
            with self.lock:
                if self.pair is None or time.monotonic() >= self.next_check:
                    self.refresh()
                    self.next_check = time.monotonic() + self.check_seconds
        return self.pair

    def refresh(self):
        """Swap in the newest matching pair of models and catalog, if it is not the one served."""
        for store in self.retired:  # retired a check ago: no request is still reading them
            store.close()
        self.retired = []
        served = self.pair or Pair()
        models, model_error = self._newest_models(served.models)
        store, catalog_error, self.outage = self._newest_store(served.store)
        self._count_failures(model=model_error, catalog=self.outage or catalog_error)
        self.notes = []  # what /health tells an operator besides the served pair's own errors
        if models is not None and store is not None and store.model_version == models.version:
            self._serve(Pair(models, store))
        elif served.store is not None:
            # The served pair stays until the new one is complete (or while the database is away).
            self._hold(models, store, served)
            self.notes = [f"serving the previous pair: {error}" for error in (model_error, catalog_error) if error]
            if models is not None and store is not None:
                self.notes.append(f"waiting for a matching pair: {self._mismatch(store, models)}")
        elif models is None:
            self._serve(Pair(None, None, model_error, "no model is loaded to serve the catalog with"))
        elif store is None:
            self._serve(Pair(models, None, None, catalog_error))
        else:
            self._serve(Pair(models, None, None, self._mismatch(store, models)))

    def _mismatch(self, store, models):
        """Return why a catalog cannot be served with the models: it was scored with others, and the command
        that rebuilds it with these models."""
        shown = self.database.shown
        return (f"the catalog at {shown} was scored with model {store.model_version}, but the models in "
                f"{self.model_dir} are version {models.version}: rebuild it with: {BUILD_HINT} "
                f"--model-dir {shlex.quote(str(self.model_dir))} --catalog {shlex.quote(str(shown))}")

    def _newest_models(self, served):
        """Return (the newest loadable models, None) or (None, why none load)."""
        signature = bundle_signature(self.model_dir)
        for models in (served, self.pending):
            if models is not None and models.signature == signature:
                return models, None
        try:
            return load_models(self.model_dir), None
        except ValenceError as error:
            return None, str(error)

    def _newest_store(self, served):
        """Return (the store of the catalog at the target now, None, None) or (None, why there is none, why the
        served store cannot answer either: its database is away, or its file failed a query)."""
        broken = getattr(served, "broken", None)  # a SQLite file that failed a query: reopened only when fixed
        try:
            signature = self.database.signature()
            for store in (served, self.waiting):
                if store is not None and store.signature == signature and not getattr(store, "broken", None):
                    return store, None, None
            return self.database.open(), None, None
        except CatalogUnavailable as error:
            log.warning("%s", error.detail)
            return None, str(error), str(error) if served is not None else None
        except CatalogMissing as error:
            return None, str(error), broken

    def _count_failures(self, **errors):
        """Tell on_failure of each half whose load fails for a new reason (once per reason, not per check)."""
        for what, error in errors.items():
            if error is not None and error != self.failures[what] and self.on_failure is not None:
                self.on_failure(what)
            self.failures[what] = error

    def _serve(self, pair):
        """Serve a new pair; retire the stores no longer served or waited for."""
        old = self.pair
        self.pair, self.pending, self.waiting = pair, None, None
        if self.freeze_heap and (old is None or old.models is not pair.models or old.store is not pair.store):
            freeze_heap()
        if self.on_serve is not None:
            self.on_serve(old, pair)
        if old is not None and old.store is not None and old.store is not pair.store:
            self.retired.append(old.store)

    def _hold(self, models, store, served):
        """Keep serving the served pair; remember the newer halves until their match arrives."""
        self.pending = models if models is not served.models else None
        if self.waiting is not None and self.waiting is not store and self.waiting is not served.store:
            self.retired.append(self.waiting)
        self.waiting = store if store is not served.store else None

    def close(self):
        """Close the stores and the database connection pool."""
        for store in {id(s): s for s in [*self.retired, self.waiting, self.pair and self.pair.store] if s}.values():
            store.close()
        self.database.close()


def freeze_heap():
    """Move every object alive now (libraries, models, the pair) out of the cyclic collector's reach.

    A worker holds about 220,000 such objects, and a collection of the oldest generation walks
    them all: a 1,000-song POST that set one off took 48 ms at p50 (max 194 ms) instead of
    33 ms (max 40 ms). Objects freed by reference counting are freed as before.
    """
    gc.collect()
    gc.freeze()
