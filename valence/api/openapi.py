"""The OpenAPI 3.1 document of the API, its schemas generated from the pydantic models that validate."""
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from valence.api.schemas import (MAX_CSV_BYTES, MAX_CSV_SONGS, MAX_QUERY_BYTES, RESPONSE_MODELS, ExplainBody,
                                 ExplanationList, InferRequest, InferResponse, InvocationBody, Invocations,
                                 ModelReady, PredictionList, ProtocolError, ServerLive, ServerReady, Song, SongBody,
                                 SongExplanation, SongPrediction, Text, V2ModelMetadata)

REF_TEMPLATE = "#/components/schemas/{model}"


class DocumentSchema(GenerateJsonSchema):
    """JSON Schema as the document shows it: no generated field titles, no defaults of optional fields."""

    def field_title_should_be_set(self, schema):
        """Leave out titles made from field names ("Track Id"): the names say it."""
        return False

    def default_schema(self, schema):
        """Describe an optional field by its type alone: absent, not null, is its default."""
        return self.generate_inner(schema["schema"])


def ref(name):
    """Return a reference to a schema of the document."""
    return {"$ref": REF_TEMPLATE.format(model=name)}


def inline_schema(kind, components):
    """Return the JSON Schema of a type, moving the models it names into components."""
    schema = TypeAdapter(kind).json_schema(ref_template=REF_TEMPLATE, schema_generator=DocumentSchema)
    components.update(schema.pop("$defs", {}))
    return schema


def components():
    """Return the document's named schemas: the request and response models and what they use."""
    models = [(model, "validation") for model in (Song, *RESPONSE_MODELS)]
    _, found = models_json_schema(models, ref_template=REF_TEMPLATE, schema_generator=DocumentSchema)
    return found["$defs"]


def _answer(description, schema):
    """Return a JSON response object."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    """Return error responses for the given status codes."""
    why = {400: "bad parameters or body", 404: "no such track", 413: "body too large",
           414: f"query string over {MAX_QUERY_BYTES:,} bytes", 415: "body is not JSON, or compressed",
           503: "no model or no catalog loaded (/explain: no regression model)"}
    return {str(code): _answer(why[code], ref("Error")) for code in codes}


def kserve_paths(schemas):
    """Return the path items of the Open Inference Protocol (KServe V2) routes; their errors are {"error": ...}."""
    names = {model: inline_schema(model, schemas) for model in (InferRequest, InferResponse, ModelReady,
                                                                ProtocolError, ServerLive, ServerReady,
                                                                V2ModelMetadata)}
    why = {400: "not ready, or a bad inference request (the message names the tensor and field)",
           413: "body too large", 415: "body is not JSON, or compressed", 503: "no model loaded"}
    errors = {code: _answer(why[code], names[ProtocolError]) for code in why}
    # an unknown model's name is the protocol's error; a path no route takes is the API's own
    errors[404] = _answer("no such model", {"anyOf": [names[ProtocolError], ref("Error")]})
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the model's name: valence"}]

    def respond(codes, **answers):
        return {**answers, **{str(code): errors[code] for code in codes}}
    return {
        "/v2/health/live": {"get": {"summary": "Open Inference Protocol: liveness", "responses": {
            "200": _answer("the process answers", names[ServerLive])}}},
        "/v2/health/ready": {"get": {"summary": "Open Inference Protocol: readiness (as /health/ready)",
                                     "responses": respond([400], **{"200": _answer(
                                         "a model and a catalog are loaded", names[ServerReady])})}},
        "/v2/models/{name}": {"get": {"summary": "Open Inference Protocol: the model's metadata", "parameters": name,
                                      "responses": respond([404, 503], **{"200": _answer(
                                          "its versions, platform, input and output tensors",
                                          names[V2ModelMetadata])})}},
        "/v2/models/{name}/ready": {"get": {"summary": "Open Inference Protocol: the model is loaded",
                                            "parameters": name, "responses": respond([400, 404], **{"200": _answer(
                                                "the model is loaded", names[ModelReady])})}},
        "/v2/models/{name}/infer": {"post": {
            "summary": "Open Inference Protocol: predict songs given as named input tensors",
            "description": ("One input tensor per feature (numbers FP64, text BYTES; artist_name and track_name "
                            "optional), each of shape [n] or [n, 1] for the same n songs (1 to 1,000), checked as "
                            "POST /predict checks songs. The answer holds one output tensor of shape [n] per "
                            "output (valence, mood, p_sad, p_neutral, p_happy, warnings joined by '; '), or those "
                            "the request's outputs name."),
            "parameters": name,
            "requestBody": {"required": True, "content": {"application/json": {"schema": names[InferRequest]}}},
            "responses": respond([400, 404, 413, 415, 503], **{"200": _answer(
                "one output tensor per output, one value per song in order", names[InferResponse])})}},
    }


def openapi_document():
    """Return the OpenAPI 3.1 document as a plain dict."""
    schemas = components()
    text = inline_schema(Text, schemas)
    query = [{"name": name, "in": "query", "required": False, "schema": dict(text),
              "description": f"{about}; blank or given twice: a 400"}
             for name, about in (("artist_name", "with track_name; case and extra spaces are ignored"),
                                 ("track_name", "with artist_name; case and extra spaces are ignored"),
                                 ("track_id", "instead of the names; surrounding spaces are ignored"))]
    songs = inline_schema(SongBody, schemas)
    predictions = inline_schema(SongPrediction | PredictionList, schemas)
    explain_songs = inline_schema(ExplainBody, schemas)
    explanations = inline_schema(SongExplanation | ExplanationList, schemas)
    invocation = inline_schema(InvocationBody, schemas)
    invocations = inline_schema(Invocations, schemas)
    search = [{"name": "q", "in": "query", "required": True, "schema": dict(text),
               "description": "the start of an artist's or a track's name, or a piece of an artist's name"}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Musical valence predictor", "version": "1.0.0",
                 "description": "Predicts Spotify songs' valence (0 sad .. 1 happy) from audio features."},
        "paths": {
            "/predict": {
                "get": {"summary": "Look up a catalog track by names or track_id", "parameters": query,
                        "responses": {"200": _answer("the track and its prediction", ref("Track")),
                                      **_errors(400, 404, 414, 503)}},
                "post": {"summary": "Predict songs from their features",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": songs}}},
                         "responses": {"200": _answer("one answer per song, in order", predictions),
                                       **_errors(400, 413, 415, 503)}},
            },
            "/explain": {
                "get": {"summary": "Why a catalog track (found as GET /predict finds it) gets its prediction",
                        "parameters": query,
                        "responses": {"200": _answer("the track, its prediction and each feature group's "
                                                     "contribution", ref("TrackExplanation")),
                                      **_errors(400, 404, 414, 503)}},
                "post": {"summary": "Why songs given by their features get their predictions (at most 100)",
                         "requestBody": {"required": True,
                                         "content": {"application/json": {"schema": explain_songs}}},
                         "responses": {"200": _answer("one explanation per song, in order", explanations),
                                       **_errors(400, 413, 415, 503)}},
            },
            "/invocations": {"post": {
                "summary": "MLflow's scoring protocol: songs as MLflow's JSON shapes or as CSV",
                "description": (f"JSON: one of dataframe_split, dataframe_records, instances or inputs (1 to 1,000 "
                                f"songs, checked as POST /predict checks them). text/csv: a header row and at most "
                                f"{MAX_CSV_SONGS:,} songs in {MAX_CSV_BYTES:,} bytes, read as --predict reads a "
                                f"CSV; a bad row keeps its place with its line and reason. The answer is JSON, or "
                                f"CSV (the same columns, warnings joined by '; ') for Accept: text/csv. With "
                                f"format=predict a text/csv body is answered with the file --predict writes, its "
                                f"summary in the X-Score-Summary header."),
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["mlflow", "predict"], "default": "mlflow"},
                                "description": "mlflow: MLflow's answer; predict (text/csv bodies only): the file "
                                               "--predict writes, as text/csv"}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": invocation},
                                                              "text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "one prediction per song, in order",
                                      "headers": {"X-Score-Summary": {
                                          "description": "format=predict only: JSON (ASCII) of scored, skipped, "
                                                         "reasons, first_skipped and unseen",
                                          "schema": {"type": "string"}}},
                                      "content": {"application/json": {"schema": invocations},
                                                  "text/csv": {"schema": {"type": "string"}}}},
                              **_errors(400, 413, 415, 503)}}},
            "/search": {"get": {"summary": "Catalog songs for a partly typed name, for suggestions as you type",
                                "parameters": search,
                                "responses": {"200": _answer("up to 10 songs, best first", ref("SearchResults")),
                                              **_errors(400, 414, 503)}}},
            "/health": {"get": {"summary": "Liveness and what is loaded",
                                "responses": {"200": _answer("always, even when degraded", ref("Health"))}}},
            "/model": {"get": {"summary": "Metadata of the loaded model",
                               "responses": {"200": _answer("the bundles' metadata", ref("ModelMetadata")),
                                             **_errors(503)}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _answer("OpenAPI 3.1 document", {"type": "object"})}}},
            **kserve_paths(schemas),
        },
        "components": {"schemas": schemas},
    }
