"""Unit tests of valence.api.openapi: the document is generated from the pydantic models and is a valid OpenAPI 3.1."""
import json
import re

import pytest
from jsonschema import Draft202012Validator

from schema_check import schema_errors
from valence.data import cells
from valence import config
from valence.api import schemas
from valence.api.openapi import openapi_document, ref
from valence.data.synthetic import generate_dataset


@pytest.fixture(scope="module")
def document():
    return openapi_document()


def refs(value):
    """Yield every $ref string in a nested JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def test_document_is_json_and_every_reference_resolves(document):
    assert json.loads(json.dumps(document)) == document
    assert document["openapi"] == "3.1.0"
    found = set(refs(document))
    assert ref("Song") == {"$ref": "#/components/schemas/Song"}
    assert found and all(r.startswith("#/components/schemas/") for r in found)
    assert {r.rsplit("/", 1)[1] for r in found} <= set(document["components"]["schemas"])
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)  # each is valid JSON Schema 2020-12


def test_song_schema_follows_config_ranges_and_choices(document):
    song = document["components"]["schemas"]["Song"]
    assert song["required"] == list(config.FEATURE_COLUMNS)
    assert list(song["properties"]) == [*config.FEATURE_COLUMNS, *schemas.OPTIONAL_FIELDS, "level"]
    assert song["additionalProperties"] is False
    for name, (low, high) in config.NUMERIC_RANGES.items():
        assert (song["properties"][name]["minimum"], song["properties"][name]["maximum"]) == (low, high)
    for name, pattern in (("key", cells.KEY_PATTERN), ("mode", cells.MODE_PATTERN),  # spelt as a CSV cell may
                          ("time_signature", cells.TIME_SIGNATURE_PATTERN)):     # spell it, or Spotify's integer
        low, high = cells.NUMBER_RANGES[name]
        assert song["properties"][name]["anyOf"] == [{"type": "string", "pattern": pattern},
                                                     {"type": "integer", "minimum": low, "maximum": high}]
    assert song["properties"]["valence"] == {"type": "number", "minimum": 0, "maximum": 1,
                                             "description": "optional; accepted and ignored"}
    assert song["properties"]["track_name"]["maxLength"] == schemas.MAX_TEXT
    assert "passed to the model" in song["properties"]["artist_name"]["description"]
    assert "accepted and ignored" in song["properties"]["track_id"]["description"]


def test_song_schema_and_validation_agree_on_sample_songs(document):
    frame = generate_dataset(20, seed=5)[list(config.FEATURE_COLUMNS)]
    songs = json.loads(frame.to_json(orient="records"))
    variants = [*songs, dict(songs[0], energy=1.5), dict(songs[1], key="H"), dict(songs[2], extra=1),
                dict(songs[3], genre="   "), dict(songs[4], artist_name="a\x00b"), dict(songs[5], valence=0.2),
                dict(songs[6], tempo=True), dict(songs[7], tempo="120"), dict(songs[8], track_name="x" * 1001),
                dict(songs[9], genre=" \tPop"), dict(songs[10], artist_name=None)]
    for song in variants:
        by_schema = schema_errors(song, ref("Song"), document) == []
        try:
            by_validation = bool(schemas.validate_songs(song))
        except schemas.BodyError:
            by_validation = False
        assert by_schema == by_validation, song


def test_text_patterns_refuse_control_characters_and_the_genre_pattern_blanks():
    text, genre = re.compile(schemas.TEXT_PATTERN), re.compile(schemas.GENRE_PATTERN)
    for good in ("", "Beyoncé", "a\tb\nc"):
        assert text.search(good), repr(good)
    for bad in ("\x00", "a\x1fb", "\x7f"):
        assert not text.search(bad) and not genre.search(bad), repr(bad)
    assert genre.search("Pop") and genre.search(" \tPop ") and not genre.search("") and not genre.search(" \t ")


def test_post_body_limits_and_error_responses(document):
    post = document["paths"]["/predict"]["post"]
    songs = post["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert songs[0] == ref("Song")
    assert songs[1]["maxItems"] == schemas.MAX_SONGS and songs[1]["minItems"] == 1
    assert set(post["responses"]) == {"200", "400", "413", "415", "503"}
    get = document["paths"]["/predict"]["get"]
    assert set(get["responses"]) == {"200", "400", "404", "414", "503"}
    assert f"{schemas.MAX_QUERY_BYTES:,} bytes" in get["responses"]["414"]["description"]
    assert [p["name"] for p in get["parameters"]] == ["artist_name", "track_name", "track_id"]
    assert all(p["schema"]["maxLength"] == schemas.MAX_QUERY_TEXT for p in get["parameters"])
    for responses in (post["responses"], get["responses"]):
        for code, answer in responses.items():
            if code != "200":
                assert answer["content"]["application/json"]["schema"] == ref("Error")


def test_mood_schema_names_every_class(document):
    schemas_ = document["components"]["schemas"]
    assert schemas_["MoodProbabilities"]["required"] == list(config.CLASS_NAMES)
    for name in ("SongPrediction", "Track"):
        assert schemas_[name]["properties"]["mood"]["enum"] == list(config.CLASS_NAMES)
        # Mood is absent from regression-only answers, so it is never required.
        assert "mood" not in schemas_[name]["required"] and "mood_probabilities" not in schemas_[name]["required"]
    assert "other_matches" not in schemas_["Track"]["required"]


def test_sample_answers_match_the_response_schemas(document):
    prediction = {"prediction": 0.4, "mood": "neutral",
                  "mood_probabilities": {"sad": 0.2, "neutral": 0.5, "happy": 0.3}, "warnings": []}
    assert schema_errors(prediction, ref("SongPrediction"), document) == []
    assert schema_errors({"prediction": 0.4, "warnings": ["w"]}, ref("SongPrediction"), document) == []
    assert schema_errors({"predictions": [prediction]}, ref("PredictionList"), document) == []
    assert schema_errors(dict(prediction, prediction=1.2), ref("SongPrediction"), document) != []
    assert schema_errors(dict(prediction, mood="angry"), ref("SongPrediction"), document) != []
    assert schema_errors(dict(prediction, mood=None), ref("SongPrediction"), document) != []
    error = {"status": 400, "error": "Bad Request", "message": "m",
             "errors": [{"index": None, "field": "tempo", "message": "is required"}]}
    assert schema_errors(error, ref("Error"), document) == []
    assert schema_errors({"status": 400}, ref("Error"), document) != []
    # A folder of moods only: the prediction is null, and still there.
    assert schema_errors(dict(prediction, prediction=None), ref("SongPrediction"), document) == []
    assert schema_errors({"mood": "sad", "warnings": []}, ref("SongPrediction"), document) != []
    health = {"status": "degraded", "model": {"loaded": False, "regression": False, "classification": False,
                                              "version": None, "error": "why"},
              "catalog": {"loaded": False, "backend": "sqlite", "tracks": 0, "rows": 0, "model_version": None,
                          "built_at": None, "error": None},
              "notes": []}
    assert schema_errors(health, ref("Health"), document) == []
    assert schema_errors(dict(health, status="fine"), ref("Health"), document) != []
