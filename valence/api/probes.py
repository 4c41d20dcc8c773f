"""The operators' routes: /health/live, /health/ready and /metrics, and their OpenAPI paths."""
from flask import Blueprint, current_app, request

from valence.api.context import ApiError, in_own_words, service

bp = Blueprint("probes", __name__)
metrics_bp = Blueprint("metrics", __name__)  # registered only when VALENCE_METRICS is on


def observer():
    """Return the current app's observability state (valence.api.observability.Observer)."""
    return current_app.extensions["valence_observability"]


def service_problems():
    """Return why the app's service cannot answer (no model, no catalog), as its 503s say it; empty when it can."""
    served = service()  # what this request is answered with (loaded on a worker's first request)
    problems = []
    for required in (served.require_predictor, served.require_catalog):
        try:
            required()
        except ApiError as error:  # its text is the 503's message
            if str(error) not in problems:
                problems.append(str(error))
    outage = current_app.extensions["valence"].outage  # the served catalog stopped answering (database, file)
    if outage and not problems:
        settings = current_app.extensions["valence_settings"]
        problems.append("the catalog cannot answer: " + in_own_words(outage, settings["target"], settings["model_dir"],
                                                                      hint=settings["build_hint"]))
    return problems


def openapi_paths(with_metrics):
    """Return the OpenAPI path items of these routes (/metrics only when it is on)."""
    def answer(description, properties, required):
        schema = {"type": "object", "required": required, "properties": properties, "additionalProperties": False}
        return {"description": description, "content": {"application/json": {"schema": schema}}}
    text = {"type": "string"}
    not_ready = answer("no model or no catalog is loaded; `reasons` says which", {
        "status": {"type": "integer", "enum": [503]}, "error": text, "message": text,
        "reasons": {"type": "array", "items": text, "minItems": 1}}, ["status", "error", "message", "reasons"])
    paths = {
        "/health/live": {"get": {"summary": "Liveness: the process answers", "responses": {
            "200": answer("always, while the process lives", {"status": {"type": "string", "enum": ["alive"]}},
                          ["status"])}}},
        "/health/ready": {"get": {"summary": "Readiness: a model and a catalog are loaded", "responses": {
            "200": answer("ready to answer lookups and predictions", {
                "status": {"type": "string", "enum": ["ready"]},
                "model_version": {"type": ["string", "null"]}}, ["status", "model_version"]),
            "503": not_ready}}},
    }
    if with_metrics:
        paths["/metrics"] = {"get": {"summary": "Prometheus metrics, summed over the server's workers", "responses": {
            "200": {"description": "the Prometheus text format (OpenMetrics when the Accept header asks for it)",
                    "content": {"text/plain": {"schema": text}, "application/openmetrics-text": {"schema": text}}}}}}
    return paths


@bp.get("/health/live")
def live():
    """Answer 200 while the process can answer at all."""
    return {"status": "alive"}


@bp.get("/health/ready")
def ready():
    """Answer 200 when a model and a catalog are loaded, else 503 with why."""
    problems = observer().readiness()
    if problems:
        message = "not ready: " + "; ".join(problems)
        return {"status": 503, "error": "Service Unavailable", "message": message, "reasons": problems}, 503
    return {"status": "ready", "model_version": observer().model_version}


@metrics_bp.get("/metrics")
def metrics():
    """Answer the metrics in the Prometheus text format (summed over gunicorn's workers)."""
    body, content_type = observer().metrics.exposition(request.headers.get("Accept"))
    return current_app.response_class(body, content_type=content_type)
