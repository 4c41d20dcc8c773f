"""The JSON API: app factory, one blueprint, JSON errors and security headers."""
import json
from pathlib import Path

import pandas as pd
import threadpoolctl
from flask import Blueprint, Flask, current_app, jsonify, redirect, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from valence import config
from valence.api import environment, explain_routes, kserve_routes, mlflow_routes, observability, page
from valence.api.bodies import json_songs, song_levels
from valence.api.context import ApiError, commands, in_own_words, service
from valence.api.lookup import query_level, track_answer
from valence.api.openapi import openapi_document
from valence.api.schemas import songs_to_columns
from valence.api.serving import Serving
from valence.catalog.sql import CATALOG_FILE, CatalogMissing, CatalogUnavailable, is_postgres

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),  # answers depend on the loaded model, which a restart may change
)

bp = Blueprint("api", __name__)


def catalog_target(app_config):
    """Return the catalog the app serves: VALENCE_CATALOG, else <VALENCE_MODEL_DIR>/catalog.sqlite."""
    return app_config["VALENCE_CATALOG"] or str(Path(app_config["VALENCE_MODEL_DIR"]) / CATALOG_FILE)


def create_app(test_config=None):
    """Build the app: config from defaults, environment, then test_config; nothing is loaded yet."""
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(
        VALENCE_MODEL_DIR=str(config.MODELS_DIR),
        VALENCE_CATALOG=None,  # a file path or a postgresql:// URL; None: <VALENCE_MODEL_DIR>/catalog.sqlite
        # How often a worker looks for new models and catalogs (a stat, or one query): a
        # retrain or a rebuild is served by every worker within this many seconds.
        VALENCE_RELOAD_SECONDS=1.0,
        MAX_CONTENT_LENGTH=1024 * 1024,  # 1,000 songs take about 300 KB
        # Each gunicorn worker is a process of its own: one BLAS thread (numpy's
        # forward pass and explanations) per worker, or their threads fight over
        # the cores (10x slower here). None leaves the setting alone (the tests
        # do, to leave no trace).
        VALENCE_THREADS=1,
        # Each newly served pair is moved out of the cyclic garbage collector's reach
        # (serving.freeze_heap): False leaves the collector alone (the tests do, to leave no trace).
        VALENCE_FREEZE_HEAP=True,
        # OPTIONS would answer an empty text/html 200; without CORS there is
        # nothing to describe, so it gets the JSON 405 with the Allow header.
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.config.update(environment.from_environment())
    if test_config is not None:
        app.config.from_mapping(test_config)
    for name in environment.SETTINGS:  # test_config's values too, by the same parsers
        if name in app.config:
            app.config[name] = environment.parse(name, app.config[name])
    app.config["VALENCE_MODEL_DIR"] = app.config["VALENCE_MODEL_DIR"] or str(config.MODELS_DIR)
    app.json.sort_keys = False  # keep answers in the documented order
    if app.config["VALENCE_THREADS"]:
        threadpoolctl.threadpool_limits(int(app.config["VALENCE_THREADS"]), user_api="blas")
    model_dir, target = app.config["VALENCE_MODEL_DIR"], catalog_target(app.config)
    # Nothing is loaded or opened here: each worker loads the models and opens the catalog on
    # its first request, after gunicorn's fork, and looks for new ones every VALENCE_RELOAD_SECONDS.
    app.extensions["valence"] = Serving(model_dir, target, app.config["VALENCE_RELOAD_SECONDS"],
                                        freeze_heap=bool(app.config["VALENCE_FREEZE_HEAP"]))
    train_hint, build_hint = commands(model_dir, target)
    app.extensions["valence_settings"] = {
        "model_dir": model_dir, "target": target, "train_hint": train_hint, "build_hint": build_hint}
    app.extensions["valence_openapi"] = openapi_document()
    app.register_blueprint(bp)
    app.register_blueprint(explain_routes.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(mlflow_routes.bp)
    app.register_blueprint(kserve_routes.bp)
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(CatalogMissing, catalog_error)
    app.register_error_handler(CatalogUnavailable, catalog_error)
    app.after_request(add_model_version)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, internal_error)
    app.wsgi_app = SecurityHeaders(app.wsgi_app)
    observability.init_app(app)  # last: its middleware wraps every answer
    return app


def add_model_version(response):
    """Name the served model's version in every answer (X-Model-Version), when one is loaded."""
    version = service().version
    if version is not None:
        response.headers["X-Model-Version"] = version
    return response


def catalog_error(error):
    """Answer a catalog that cannot answer now (its database away, its file damaged) with a JSON 503."""
    settings = current_app.extensions["valence_settings"]
    message = in_own_words(error, settings["target"], settings["model_dir"], hint=settings["build_hint"])
    return jsonify(error_body(503, HTTP_STATUS_CODES[503], message)), 503


def error_body(status, error, message, **extra):
    """Return the JSON error body every non-200 answer uses."""
    return {"status": status, "error": error, "message": message, **extra}


def api_error(error):
    """Answer an ApiError as JSON."""
    body = error_body(error.status, HTTP_STATUS_CODES[error.status], error.message, **error.extra)
    return jsonify(body), error.status


def http_error(error):
    """Answer a routing or protocol error (404, 405, 413, ...) as JSON, keeping its headers."""
    message, limit = error.description, current_app.config.get("MAX_CONTENT_LENGTH")
    # werkzeug's order of the allowed methods follows a set: sorted, it is the same every time.
    allowed = ", ".join(sorted(error.valid_methods)) if error.code == 405 and error.valid_methods else None
    if error.code == 413 and limit:
        sent = f" (this one has {request.content_length:,} bytes)" if request.content_length else ""
        message = (f"the body is larger than {limit:,} bytes, the server's limit for a body{sent}: send the "
                   "songs in smaller requests")
    elif allowed:
        message = f"method {request.method[:20]} is not allowed here; use one of {allowed}"
    response = jsonify(error_body(error.code, error.name, message))
    response.status_code = error.code
    # Keep what the error adds besides its HTML page, such as a 405's Allow header.
    response.headers.extend((name, value) for name, value in error.get_headers() if name.lower() != "content-type")
    if allowed:
        response.headers["Allow"] = allowed
    return response


def internal_error(error):
    """Answer an unexpected failure with a JSON 500 and log it; never show a traceback."""
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    body = error_body(500, "Internal Server Error", "the server failed to answer; the error is logged")
    return jsonify(body), 500


class SecurityHeaders:
    """WSGI middleware that adds SECURITY_HEADERS to every answer, errors included."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        """Pass the request on, adding the headers as the answer starts (cheaper than Flask's Headers)."""
        def start(status, headers, exc_info=None):
            # The page sets its own, looser Content-Security-Policy; every other answer gets the strict one.
            own = {name.lower() for name, _ in headers}
            return start_response(status, [*headers, *(h for h in SECURITY_HEADERS if h[0].lower() not in own)],
                                  exc_info)
        return self.wsgi_app(environ, start)


def wants_page():
    """Return whether the client is a browser asking for HTML rather than an API client (curl: */*)."""
    if "html" not in request.environ.get("HTTP_ACCEPT", ""):  # API clients: no parsing of the header
        return False
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


@bp.get("/predict")
def lookup():
    """Answer the valence of a catalog track found by track_id or by artist and track name."""
    if wants_page():  # a person who followed an old link: the page shows the same song
        query = request.query_string.decode("latin-1")
        return redirect(url_for("page.index") + (f"?{query}" if query else ""), code=303)
    # json.dumps and a Response made with its Content-Type: what jsonify does, less its per-call settings lookups.
    return current_app.response_class(json.dumps(track_answer(query_level()), separators=(",", ":")) + "\n",
                                      content_type="application/json")


@bp.post("/predict")
def predict_features():
    """Predict the valence (and mood) of one song or a list of songs given their features."""
    default = query_level()
    songs, is_list = json_songs()
    predictor = service().require_predictor()
    levels = song_levels(songs, default)
    result = predictor.predict(pd.DataFrame(songs_to_columns(songs)), levels)
    observability.note_songs(len(songs))
    # A classification-only model folder answers moods, and a null prediction.
    valence = result.valence.tolist() if result.valence is not None else [None] * len(songs)
    answers = [{"prediction": value} for value in valence]
    if result.valence is not None:
        for i, answer in enumerate(answers):
            answer["interval"] = result.interval(i)
    if result.mood is not None:
        for answer, mood, probabilities in zip(answers, result.mood, result.mood_probabilities.tolist()):
            answer["mood"], answer["mood_probabilities"] = mood, dict(zip(config.CLASS_NAMES, probabilities))
    for answer, warnings in zip(answers, result.warnings):
        answer["warnings"] = list(warnings)
    return {"predictions": answers} if is_list else answers[0]


@bp.get("/health")
def health():
    """Answer that the process is alive and what it serves: model version, catalog, notes for operators."""
    state, settings = service(), current_app.extensions["valence_settings"]
    catalog = state.catalog
    serving = current_app.extensions["valence"]
    notes = [in_own_words(note, settings["target"], settings["model_dir"], hint=settings["build_hint"])
             for note in serving.notes]
    outage = serving.outage and in_own_words(serving.outage, settings["target"], settings["model_dir"],
                                             hint=settings["build_hint"])
    return {
        "status": "ok" if state.predictor is not None and catalog is not None and not outage else "degraded",
        "model": {
            "loaded": state.predictor is not None,
            "regression": getattr(state.predictor, "regression", None) is not None,
            "classification": getattr(state.predictor, "classification", None) is not None,
            "version": state.version,
            "error": state.model_error and f"{state.model_error}; {state.train_hint}",
        },
        "catalog": {
            "loaded": catalog is not None,
            "backend": "postgresql" if is_postgres(settings["target"]) else "sqlite",
            "tracks": catalog.size() if catalog is not None else 0,
            "rows": int(catalog.meta["rows"]) if catalog is not None else 0,
            "model_version": catalog.model_version if catalog is not None else None,
            "built_at": catalog.meta.get("built_at") if catalog is not None else None,
            "error": outage or state.catalog_error,
        },
        "notes": notes,
    }


@bp.get("/model")
def model():
    """Answer the loaded model's metadata: when and on what it was trained, its metrics."""
    return service().require_predictor().metadata()


@bp.get("/openapi.json")
def openapi():
    """Answer the OpenAPI 3 document of this API."""
    return current_app.extensions["valence_openapi"]
