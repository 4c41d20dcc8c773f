"""The OpenAPI 3.1 document of the API, its schemas generated from the pydantic models that validate."""
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from valence.schemas import (MAX_QUERY_BYTES, RESPONSE_MODELS, SongBody, SongPrediction, PredictionList, Song,
                             Text)

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
           503: "no model or no catalog loaded"}
    return {str(code): _answer(why[code], ref("Error")) for code in codes}


def openapi_document():
    """Return the OpenAPI 3.1 document as a plain dict."""
    schemas = components()
    text = inline_schema(Text, schemas)
    query = [{"name": name, "in": "query", "required": False, "schema": dict(text), "description": about}
             for name, about in (("artist_name", "with track_name; case and extra spaces are ignored"),
                                 ("track_name", "with artist_name"),
                                 ("track_id", "instead of the names"))]
    songs = inline_schema(SongBody, schemas)
    predictions = inline_schema(SongPrediction | PredictionList, schemas)
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
            "/health": {"get": {"summary": "Liveness and what is loaded",
                                "responses": {"200": _answer("always, even when degraded", ref("Health"))}}},
            "/model": {"get": {"summary": "Metadata of the loaded model",
                               "responses": {"200": _answer("the bundles' metadata", ref("ModelMetadata")),
                                             **_errors(503)}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _answer("OpenAPI 3.1 document", {"type": "object"})}}},
        },
        "components": {"schemas": schemas},
    }
