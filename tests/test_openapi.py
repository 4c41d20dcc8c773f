"""Unit tests of valence.openapi: the document is built from config and validation, and is self-consistent."""
import json
import re

import pytest

from schema_check import schema_errors
from valence import config, validation
from valence.openapi import openapi_document, ref
from valence.synthetic import generate_dataset


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
    assert document["openapi"].startswith("3.0")
    found = set(refs(document))
    assert ref("Song") == {"$ref": "#/components/schemas/Song"}
    assert found and all(r.startswith("#/components/schemas/") for r in found)
    assert {r.rsplit("/", 1)[1] for r in found} <= set(document["components"]["schemas"])


def test_song_schema_follows_config_ranges_and_choices(document):
    song = document["components"]["schemas"]["Song"]
    assert song["required"] == list(config.FEATURE_COLUMNS)
    assert list(song["properties"]) == [*config.FEATURE_COLUMNS, *validation.OPTIONAL_FIELDS]
    assert song["additionalProperties"] is False
    for name, (low, high) in config.NUMERIC_RANGES.items():
        assert (song["properties"][name]["minimum"], song["properties"][name]["maximum"]) == (low, high)
    for name, allowed in validation.CHOICES.items():
        assert song["properties"][name]["enum"] == list(allowed)
    assert song["properties"]["valence"]["type"] == "number"
    assert song["properties"]["artist_name"]["maxLength"] == validation.MAX_TEXT
    assert "passed to the model" in song["properties"]["artist_name"]["description"]
    assert "accepted and ignored" in song["properties"]["track_id"]["description"]


def test_song_schema_and_validation_agree_on_sample_songs(document):
    frame = generate_dataset(20, seed=5)[list(config.FEATURE_COLUMNS)]
    songs = json.loads(frame.to_json(orient="records"))
    variants = [*songs, dict(songs[0], energy=1.5), dict(songs[1], key="H"), dict(songs[2], extra=1),
                dict(songs[3], genre="   "), dict(songs[4], artist_name="a\x00b"), dict(songs[5], valence=0.2)]
    for song in variants:
        by_schema = schema_errors(song, ref("Song"), document) == []
        by_validation = validation.song_errors(song, None) == []
        assert by_schema == by_validation, song


def test_text_patterns_refuse_control_characters_and_the_genre_pattern_blanks():
    text, genre = re.compile(validation.TEXT_PATTERN), re.compile(validation.GENRE_PATTERN)
    for good in ("", "Beyoncé", "a\tb\nc"):
        assert text.search(good), repr(good)
    for bad in ("\x00", "a\x1fb", "\x7f"):
        assert not text.search(bad) and not genre.search(bad), repr(bad)
    assert genre.search("Pop") and not genre.search("") and not genre.search(" \t ")


def test_post_body_limits_and_error_responses(document):
    post = document["paths"]["/predict"]["post"]
    songs = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert songs[1]["maxItems"] == validation.MAX_SONGS and songs[1]["minItems"] == 1
    assert set(post["responses"]) == {"200", "400", "413", "415", "503"}
    get = document["paths"]["/predict"]["get"]
    assert set(get["responses"]) == {"200", "400", "404", "414", "503"}
    assert f"{validation.MAX_QUERY_BYTES:,} bytes" in get["responses"]["414"]["description"]
    assert [p["name"] for p in get["parameters"]] == ["artist_name", "track_name", "track_id"]
    assert all(p["schema"]["maxLength"] == validation.MAX_QUERY_TEXT for p in get["parameters"])
    for responses in (post["responses"], get["responses"]):
        for code, answer in responses.items():
            if code != "200":
                assert answer["content"]["application/json"]["schema"] == ref("Error")


def test_mood_schema_names_every_class(document):
    schemas = document["components"]["schemas"]
    for name in ("SongPrediction", "Track"):
        properties = schemas[name]["properties"]
        assert properties["mood"]["enum"] == list(config.CLASS_NAMES)
        assert properties["mood_probabilities"]["required"] == list(config.CLASS_NAMES)
    # Mood is absent from regression-only answers, so it is never required.
    assert "mood" not in schemas["Track"]["required"] and "mood" not in schemas["SongPrediction"]["required"]
    assert "other_matches" not in schemas["Track"]["required"]


def test_sample_answers_match_the_response_schemas(document):
    prediction = {"prediction": 0.4, "mood": "neutral",
                  "mood_probabilities": {"sad": 0.2, "neutral": 0.5, "happy": 0.3}, "warnings": []}
    assert schema_errors(prediction, ref("SongPrediction"), document) == []
    assert schema_errors({"predictions": [prediction]}, ref("PredictionList"), document) == []
    assert schema_errors(dict(prediction, prediction=1.2), ref("SongPrediction"), document) != []
    assert schema_errors(dict(prediction, mood="angry"), ref("SongPrediction"), document) != []
    error = {"status": 400, "error": "Bad Request", "message": "m",
             "errors": [{"index": None, "field": "tempo", "message": "is required"}]}
    assert schema_errors(error, ref("Error"), document) == []
    assert schema_errors({"status": 400}, ref("Error"), document) != []
