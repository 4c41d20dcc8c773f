"""What a request answers with: the served pair as a Service, and the API's error type."""
import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g

from valence import config
from valence.catalog.sql import CATALOG_FILE, is_postgres, shown_target


class ApiError(Exception):
    """An answer other than 200, turned into a JSON error body by the app."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@dataclass(frozen=True)
class Service:
    """What one request answers with: the models and the catalog scored with them, or why either is missing.

    A request takes the pair served when it begins and keeps it to its end, so a swap
    between two of its steps cannot mix one model's answer with another's catalog.
    """

    predictor: object = None
    model_error: str | None = None
    catalog: object = None  # a valence.catalog.sql.CatalogStore scored with `predictor`
    catalog_error: str | None = None
    version: str | None = None
    train_hint: str = ""
    models: object = None  # the valence.model.predictor.Models of `predictor`

    @property
    def explainer(self):
        """Return the Explainer of the served regression model (made once per model), or None without one."""
        if self.models is None or self.models.predictor.regression is None:
            return None
        return explainer_for(self.models)

    def require_predictor(self):
        """Return the predictor, or raise a 503 saying how to train one."""
        if self.predictor is None:
            raise ApiError(503, f"no model is loaded ({self.model_error}); {self.train_hint}")
        return self.predictor

    def require_catalog(self):
        """Return the catalog store, or raise a 503 saying why there is none and what to run."""
        self.require_predictor()
        if self.catalog is None:
            raise ApiError(503, f"no catalog is loaded ({self.catalog_error})")
        return self.catalog


# A store's own "build it with: ..." names paths as the server sees them; answers give the app's hint instead.
STORE_HINT = re.compile(r"[;:] (?:re)?build (?:it|one) with: python musical_valence_predictor\.py --build-catalog.*$")
POSTGRES_SHOWN = "the database in VALENCE_CATALOG"


def shown_path(path):
    """Return a path as an answer may show it: relative to the project folder (where the hints are run from), or
    None when it lies outside it (answers show no server folders)."""
    path = Path(path).absolute()
    if path.is_relative_to(config.PROJ_ROOT):
        return str(path.relative_to(config.PROJ_ROOT)) or "."
    return None


def commands(model_dir, target):
    """Return (train hint, build hint): commands that, run from the project folder, write where this server reads;
    a folder or database an answer cannot name is given as the setting whose value to pass."""
    model = shown_path(model_dir)
    args = f"--model-dir {shlex.quote(model)}" if model else "--model-dir DIR"
    settings = [] if model else ["DIR is the server's VALENCE_MODEL_DIR"]
    if is_postgres(target) or Path(target).absolute() != (Path(model_dir) / CATALOG_FILE).absolute():
        where = None if is_postgres(target) else shown_path(target)
        args += f" --catalog {shlex.quote(where)}" if where else " --catalog TARGET"
        settings += [] if where else ["TARGET is the server's VALENCE_CATALOG"]
    where = f" ({'; '.join(settings)})" if settings else ""
    return (f"train one with: python musical_valence_predictor.py {args}{where}",
            f"build it with: python musical_valence_predictor.py --build-catalog {args}{where}")


def in_own_words(error, *paths, hint=None):
    """Return the first line of an error's message as answers show it: files relative to the project folder or
    by name, no database URL, and `hint` in place of a store's own build command."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if hint is not None:
        message = STORE_HINT.sub(f"; {hint}", message)
    for path in paths:
        if is_postgres(path):
            for spelling in {str(path), shown_target(path)}:
                message = message.replace(f"'{spelling}'", POSTGRES_SHOWN).replace(spelling, POSTGRES_SHOWN)
            continue
        shown = shown_path(path) or Path(path).name
        for spelling in sorted({str(path), str(Path(path)), str(Path(path).absolute())}, key=len, reverse=True):
            message = message.replace(spelling, shown)
    return message


def request_service(pair, settings):
    """Return a request's Service for the pair served now, naming files without the server's folders."""
    model_dir, target = settings["model_dir"], settings["target"]
    model_error = pair.model_error
    if model_error is not None:
        bundles = [config.bundle_path(model_dir, kind) for kind in config.MODEL_KINDS]
        earlier = [bundle.with_suffix(config.EARLIER_BUNDLE_SUFFIX) for bundle in bundles]
        missing = not any(bundle.exists() for bundle in (*bundles, *earlier))
        model_error = (f"neither {' nor '.join(bundle.name for bundle in bundles)} is in the model folder"
                       if missing else in_own_words(model_error, *bundles, *earlier))
    # The target first: it usually lies inside the model folder.
    catalog_error = pair.catalog_error and in_own_words(pair.catalog_error, target, model_dir,
                                                        hint=settings["build_hint"])
    return Service(predictor=pair.models.predictor if pair.models else None, model_error=model_error,
                   catalog=pair.store, catalog_error=catalog_error, version=pair.version,
                   train_hint=settings["train_hint"], models=pair.models)


@functools.lru_cache(maxsize=2)  # the models served, and those served before a swap
def explainer_for(models):
    """Return the Explainer of a loaded pair's regression model, made once per model."""
    from valence.model.explain import Explainer
    return Explainer(models.predictor.regression)


def service():
    """Return this request's Service: the pair served when the request began, for all of it."""
    if "valence" not in g:
        g.valence = served_service(current_app)
    return g.valence


def served_service(app):
    """Return the Service of the pair `app` serves now (made once per pair, not per request)."""
    extensions = app.extensions
    pair, settings = extensions["valence"].current(), extensions["valence_settings"]
    made = settings.get("service")  # (pair, its Service)
    if made is None or made[0] is not pair:
        made = settings["service"] = (pair, request_service(pair, settings))
    return made[1]
