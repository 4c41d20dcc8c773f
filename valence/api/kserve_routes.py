"""The Open Inference Protocol (KServe V2) REST routes, so KServe, Seldon MLServer and Triton clients call the API.

One input tensor per feature column (numbers FP64, text BYTES; artist_name and track_name optional, BYTES), each
of shape [n] (or [n, 1]) for n songs; the songs built from them are checked as POST /predict checks them. The
answer names one output tensor per column of ValenceModel.predict (valence, mood, p_sad, p_neutral, p_happy) and
the warnings, each of shape [n]. Errors answer the protocol's {"error": "..."}.
"""
import numpy as np
import pandas as pd
from flask import Blueprint, request
from werkzeug.exceptions import HTTPException

from valence import config
from valence.api import observability
from valence.api.bodies import request_body
from valence.api.context import ApiError, service
from valence.api.probes import service_problems
from valence.api.schemas import MAX_SONGS, OPTIONAL_FIELDS, songs_to_columns, validate_songs
from valence.api.strict_json import BodyError, parse_json

bp = Blueprint("kserve", __name__, url_prefix="/v2")

MODEL_NAME = "valence"
PLATFORM = "numpy"  # the saved networks' forward pass runs in numpy (valence.model.network)
NUMBER_TYPES = ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
TEXT_FIELDS = ("genre", "key", "mode", "time_signature", "artist_name", "track_name")
INPUTS = (*config.FEATURE_COLUMNS, "artist_name", "track_name")
INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
WARNINGS_SEPARATOR = "; "


def input_datatype(name):
    """Return the datatype the metadata names for an input tensor: BYTES for text, FP64 for numbers."""
    return "BYTES" if name in TEXT_FIELDS else "FP64"


def output_names(predictor):
    """Return the output tensors the served models answer: valence and its 90 % interval (valence_low,
    valence_high) with regression, mood and its probabilities with classification, warnings."""
    return [*predictor.output_columns(), "warnings"]


def tensor(name, datatype, shape=(-1,)):
    """Return a tensor's metadata: name, datatype and shape (-1: as many as songs)."""
    return {"name": name, "datatype": datatype, "shape": list(shape)}


def require_model(name):
    """Raise the protocol's 404 unless `name` is the served model's name."""
    if name != MODEL_NAME:
        raise ApiError(404, f"unknown model {name[:100]!r}: this server serves the model {MODEL_NAME!r}")


@bp.errorhandler(ApiError)
def protocol_error(error):
    """Answer an ApiError in the protocol's error shape, {"error": "..."}."""
    return {"error": error.message}, error.status


@bp.errorhandler(HTTPException)
def protocol_http_error(error):
    """Answer a 413, 415 or other protocol error raised by these routes in the protocol's error shape."""
    if error.code == 413:
        return {"error": "the body is larger than the server's limit for a body: send the songs in smaller "
                         "requests"}, 413
    return {"error": error.description}, error.code


@bp.get("/health/live")
def live():
    """Answer 200 while the process can answer at all."""
    return {"live": True}


@bp.get("/health/ready")
def ready():
    """Answer 200 when a model and a catalog are loaded (as /health/ready), else 400 with why (the protocol's 4xx)."""
    problems = service_problems()
    if problems:
        raise ApiError(400, "not ready: " + "; ".join(problems))
    return {"ready": True}


@bp.get("/models/<name>")
def metadata(name):
    """Answer the model's metadata: name, versions, platform, input and output tensors."""
    require_model(name)
    served = service()
    predictor = served.require_predictor()
    outputs = [tensor(output, "BYTES" if output in ("mood", "warnings") else "FP64")
               for output in output_names(predictor)]
    return {"name": MODEL_NAME, "versions": [served.version], "platform": PLATFORM,
            "inputs": [tensor(name, input_datatype(name)) for name in INPUTS], "outputs": outputs}


@bp.get("/models/<name>/ready")
def model_ready(name):
    """Answer 200 when the model is loaded, else 400 with why (the protocol's 4xx)."""
    require_model(name)
    served = service()
    if served.predictor is None:
        raise ApiError(400, f"not ready: no model is loaded ({served.model_error}); {served.train_hint}")
    return {"name": MODEL_NAME, "ready": True}


@bp.post("/models/<name>/infer")
def infer(name):
    """Predict the songs given as named input tensors; answer one named output tensor per column."""
    require_model(name)
    # The protocol's bodies are JSON: Triton's client sends them without a Content-Type.
    if request.mimetype not in ("", "application/json") and not request.is_json:
        raise ApiError(415, f"send the inference request as JSON (Content-Type: application/json), not "
                            f"{request.mimetype[:50]}")
    if "Inference-Header-Content-Length" in request.headers:
        raise ApiError(415, "binary tensor data (Inference-Header-Content-Length) is not supported: send the "
                            "tensors' data as JSON")
    if request.content_encoding not in (None, "", "identity"):
        raise ApiError(415, "Content-Encoding is not supported: send the JSON uncompressed")
    predictor = service().require_predictor()
    try:
        body = parse_json(request_body())
        songs = validate_songs(tensor_songs(body), MAX_SONGS)[0]
    except BodyError as error:
        raise ApiError(400, body_error_text(error)) from None
    wanted = requested_outputs(body, output_names(predictor))
    result = predictor.predict(pd.DataFrame(songs_to_columns(songs)))
    observability.note_songs(len(songs))
    values = {name: column if name == "mood" else np.asarray(column, dtype=np.float64).tolist()
              for name, column in result.columns().items()}
    values["warnings"] = [WARNINGS_SEPARATOR.join(warnings) for warnings in result.warnings]
    outputs = [{**tensor(output, "BYTES" if output in ("mood", "warnings") else "FP64", [len(songs)]),
                "data": values[output]} for output in wanted]
    answer = {"model_name": MODEL_NAME, "model_version": service().version}
    if "id" in body:
        answer["id"] = body["id"]
    return {**answer, "outputs": outputs}


def body_error_text(error):
    """Return a BodyError as one line: its message, then each bad field as the tensor and song it names."""
    parts = [f"input {entry['field']}" + (f" [{entry['index']}]" if entry["index"] is not None else "")
             + f": {entry['message']}" for entry in error.errors or ()]
    return error.message + ("; " + "; ".join(parts) if parts else "")


def kind(value):
    """Return a JSON value's kind, for messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def tensor_songs(body):
    """Return the songs (one object per song) named by an inference request's input tensors, or raise BodyError."""
    if not isinstance(body, dict):
        raise BodyError(f"the inference request must be a JSON object with inputs, not a JSON {kind(body)}")
    unknown = [key for key in body if key not in REQUEST_KEYS]
    if unknown:
        raise BodyError(f"an inference request holds id, parameters, inputs and outputs; not {unknown[0][:50]!r}")
    if "id" in body and not isinstance(body["id"], str):
        raise BodyError(f"id must be a string, not a JSON {kind(body['id'])}")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise BodyError(f"parameters must be a JSON object (it is ignored), not a JSON {kind(body['parameters'])}")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BodyError("inputs must be a non-empty list of input tensors ({name, shape, datatype, data}), one per "
                        f"feature: {', '.join(config.FEATURE_COLUMNS)}")
    columns, count = {}, None
    for position, given in enumerate(inputs):
        name, data = input_tensor(position, given)
        if name in columns:
            raise BodyError(f"input {name} is given twice")
        if count is not None and len(data) != count:
            raise BodyError(f"input {name} holds {len(data)} values, but input {next(iter(columns))} holds {count}: "
                            "every input needs one value per song")
        columns[name], count = data, len(data)
    missing = [name for name in config.FEATURE_COLUMNS if name not in columns]
    if missing:
        raise BodyError(f"missing input tensor(s): {', '.join(missing)} (one per feature)")
    if not 1 <= count <= MAX_SONGS:
        raise BodyError(f"inputs must hold 1 to {MAX_SONGS} songs, not {count}")
    # null in an optional tensor (artist_name, track_name) means that song lacks it
    return [{name: values[i] for name, values in columns.items() if values[i] is not None or name not in
             OPTIONAL_FIELDS} for i in range(count)]


def input_tensor(position, given):
    """Return (name, values) of one input tensor after checking its name, datatype, shape and data."""
    if not isinstance(given, dict):
        raise BodyError(f"inputs[{position}] must be an input tensor object, not a JSON {kind(given)}")
    unknown = [key for key in given if key not in INPUT_KEYS]
    name = given.get("name")
    if not isinstance(name, str):
        raise BodyError(f"inputs[{position}] needs a name (a string): one of {', '.join(INPUTS)}")
    if name not in INPUTS:
        raise BodyError(f"input {name[:50]!r} is not a known input; the inputs are {', '.join(INPUTS)}")
    if unknown:
        raise BodyError(f"input {name} holds name, shape, datatype, parameters and data; not {unknown[0][:50]!r}")
    datatype, shape, data = given.get("datatype"), given.get("shape"), given.get("data")
    allowed = ("BYTES",) if name in TEXT_FIELDS else NUMBER_TYPES
    if name in ("key", "mode", "time_signature"):  # Spotify's numbers are accepted too, as POST /predict takes them
        allowed = ("BYTES", *NUMBER_TYPES)
    if datatype not in allowed:
        raise BodyError(f"input {name} has datatype {str(datatype)[:20]!r}; expected {input_datatype(name)}")
    if not isinstance(shape, list) or not all(type(size) is int and size >= 0 for size in shape) \
            or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BodyError(f"input {name} has shape {str(shape)[:50]}; expected [n] or [n, 1] for n songs")
    if "parameters" in given and not isinstance(given["parameters"], dict):
        raise BodyError(f"input {name}'s parameters must be a JSON object (they are ignored)")
    if not isinstance(data, list):
        raise BodyError(f"input {name}'s data must be a list of values, not a JSON {kind(data)}")
    values = [item for row in data for item in row] if data and all(isinstance(row, list) for row in data) else data
    if len(values) != shape[0]:
        raise BodyError(f"input {name} has shape {shape} but holds {len(values)} values")
    if any(isinstance(value, list) for value in values):
        raise BodyError(f"input {name}'s data must be flat, or rows of one value")
    return name, values


def requested_outputs(body, available):
    """Return the output tensors to answer: those the request's outputs name, else all; a 400 for any other."""
    requested = body.get("outputs")
    if requested is None:
        return available
    if not isinstance(requested, list) or not all(isinstance(item, dict) and isinstance(item.get("name"), str)
                                                  for item in requested):
        raise ApiError(400, "outputs must be a list of requested outputs, each an object with a name")
    names = [item["name"] for item in requested]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ApiError(400, f"output {unknown[0][:50]!r} is not an output of the served model; its outputs are "
                            f"{', '.join(available)}")
    return names
