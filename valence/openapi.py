"""The OpenAPI 3 document of the API, built from config so it cannot drift from validation."""
from valence import config
from valence.validation import (CHOICES, GENRE_PATTERN, MAX_QUERY_BYTES, MAX_QUERY_TEXT, MAX_SONGS, MAX_TEXT,
                               OPTIONAL_FIELDS, TEXT_PATTERN)

NUMBER_0_1 = {"type": "number", "minimum": 0, "maximum": 1}
TEXT = {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN}
NO_SURROGATES = "; no control characters (pattern) and no lone surrogates (\\ud800 without its pair)"
STRINGS = {"type": "array", "items": {"type": "string"}}
MOOD = {
    "mood": {"type": "string", "enum": list(config.CLASS_NAMES)},
    "mood_probabilities": {"type": "object", "required": list(config.CLASS_NAMES),
                           "properties": {name: NUMBER_0_1 for name in config.CLASS_NAMES},
                           "additionalProperties": False},
}


def ref(name):
    """Return a reference to a schema of the document."""
    return {"$ref": f"#/components/schemas/{name}"}


def _song_schema():
    """Describe one song's features as POST /predict accepts them."""
    properties = {"genre": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": GENRE_PATTERN,
                            "description": "a genre of the training data; others are predicted with a warning; "
                                           "not blank" + NO_SURROGATES}}
    for name, (low, high) in config.NUMERIC_RANGES.items():
        properties[name] = {"type": "number", "minimum": low, "maximum": high}
    for name, allowed in CHOICES.items():
        properties[name] = {"type": "string", "enum": list(allowed)}
    for name, kind in OPTIONAL_FIELDS.items():
        properties[name] = dict(TEXT) if kind is str else dict(NUMBER_0_1)
        properties[name]["description"] = "optional; " + (
            "passed to the model" if name == "artist_name" else "accepted and ignored") + (
            NO_SURROGATES if kind is str else "")
    ordered = {name: properties[name] for name in (*config.FEATURE_COLUMNS, *OPTIONAL_FIELDS)}
    return {"type": "object", "required": list(config.FEATURE_COLUMNS), "properties": ordered,
            "additionalProperties": False}


def _schemas():
    """Return the document's named schemas."""
    brief = {"track_id": {"type": "string"}, "artist_name": {"type": "string"},
             "track_name": {"type": "string"}, "genres": STRINGS}
    track = {
        **brief,
        "popularity": {"type": "number"},
        "expected": {**NUMBER_0_1, "description": "the track's valence in the catalog"},
        "prediction": {**NUMBER_0_1, "description": "mean of the per-genre predictions"},
        "genre_predictions": {"type": "object", "additionalProperties": NUMBER_0_1},
        "warnings": STRINGS,
        **MOOD,
        "other_matches": {"type": "array", "items": ref("TrackBrief"),
                          "description": "other tracks with the same names (lookups by name only)"},
    }
    return {
        "Song": _song_schema(),
        "SongPrediction": {"type": "object", "required": ["prediction", "warnings"],
                           "properties": {"prediction": NUMBER_0_1, **MOOD, "warnings": STRINGS},
                           "additionalProperties": False},
        "PredictionList": {"type": "object", "required": ["predictions"], "additionalProperties": False,
                           "properties": {"predictions": {"type": "array", "items": ref("SongPrediction")}}},
        "TrackBrief": {"type": "object", "required": list(brief), "properties": brief,
                       "additionalProperties": False},
        "Track": {"type": "object", "required": [name for name in track if name not in MOOD and name != "other_matches"],
                  "properties": track, "additionalProperties": False},
        "Health": {"type": "object", "required": ["status", "model", "catalog"], "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "model": {"type": "object", "required": ["loaded", "classification", "error"], "properties": {
                "loaded": {"type": "boolean"}, "classification": {"type": "boolean"},
                "error": {"type": "string", "nullable": True}}},
            "catalog": {"type": "object", "required": ["loaded", "tracks", "rows", "error"], "properties": {
                "loaded": {"type": "boolean"}, "tracks": {"type": "integer", "minimum": 0},
                "rows": {"type": "integer", "minimum": 0}, "error": {"type": "string", "nullable": True}}}}},
        "ModelMetadata": {"type": "object", "description": "per bundle: kind, created_at, data_sha256, "
                                                           "metrics, features, versions"},
        "Error": {"type": "object", "required": ["status", "error", "message"], "properties": {
            "status": {"type": "integer"}, "error": {"type": "string"}, "message": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["index", "field", "message"], "properties": {
                    "index": {"type": "integer", "nullable": True, "description": "null for a single object"},
                    "field": {"type": "string", "nullable": True}, "message": {"type": "string"}}}},
            "missing": STRINGS,
            "suggestions": {"type": "array", "items": ref("TrackBrief")}}},
    }


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
    """Return the OpenAPI 3.0 document as a plain dict."""
    query = [{"name": name, "in": "query", "required": False,
              "schema": {"type": "string", "maxLength": MAX_QUERY_TEXT, "pattern": TEXT_PATTERN},
              "description": text} for name, text in (
        ("artist_name", "with track_name; case and extra spaces are ignored"),
        ("track_name", "with artist_name"),
        ("track_id", "instead of the names"))]
    songs = {"oneOf": [ref("Song"), {"type": "array", "items": ref("Song"), "minItems": 1, "maxItems": MAX_SONGS}]}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Musical valence predictor", "version": "1.0.0",
                 "description": "Predicts Spotify songs' valence (0 sad .. 1 happy) from audio features."},
        "paths": {
            "/predict": {
                "get": {"summary": "Look up a catalog track by names or track_id", "parameters": query,
                        "responses": {"200": _answer("the track and its prediction", ref("Track")),
                                      **_errors(400, 404, 414, 503)}},
                "post": {"summary": "Predict songs from their features",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": songs}}},
                         "responses": {"200": _answer("one answer per song, in order", {
                             "oneOf": [ref("SongPrediction"), ref("PredictionList")]}),
                             **_errors(400, 413, 415, 503)}},
            },
            "/health": {"get": {"summary": "Liveness and what is loaded",
                                "responses": {"200": _answer("always, even when degraded", ref("Health"))}}},
            "/model": {"get": {"summary": "Metadata of the loaded model",
                               "responses": {"200": _answer("the bundles' metadata", ref("ModelMetadata")),
                                             **_errors(503)}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _answer("OpenAPI 3 document", {"type": "object"})}}},
        },
        "components": {"schemas": _schemas()},
    }
