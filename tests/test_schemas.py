"""Unit tests of valence.validation: strict JSON decoding and field-by-field checks of POST /predict bodies."""
import json

import pytest

from valence import config
from valence.synthetic import generate_dataset
from valence.validation import (MAX_ERRORS, MAX_SONGS, MAX_TEXT, BodyError, parse_json, song_errors,
                                songs_to_columns, text_error, validate_songs)


@pytest.fixture(scope="module")
def song():
    """Return one valid song as JSON would decode it (plain ints, floats and strings)."""
    frame = generate_dataset(5, seed=1)[list(config.FEATURE_COLUMNS)]
    return json.loads(frame.iloc[[0]].to_json(orient="records"))[0]


def body_error(raw):
    with pytest.raises(BodyError) as info:
        parse_json(raw)
    return info.value.message


def test_parse_json_decodes_a_body_with_or_without_a_byte_order_mark():
    assert parse_json(b'{"genre": "Pop", "tempo": 120}') == {"genre": "Pop", "tempo": 120}
    assert parse_json("\ufeff[1, 2.5]".encode("utf-8")) == [1, 2.5]


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"", "body is empty"),
    (b" \n\t ", "body is empty"),
    (b'{"a": "\xff"}', "body is not valid UTF-8: byte 7 cannot be decoded"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b'[-Infinity]', "-Infinity is not valid JSON"),
    (b'{"a": 1, "b": 2, "a": 3}', "key 'a' appears twice in one JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "body is nested too deeply"),
    (b"1" * 5000, "more than 4,300 digits"),
    (b'{"a": 1', "body is not valid JSON"),
])
def test_parse_json_refuses_bad_bodies_saying_why(raw, fragment):
    assert fragment in body_error(raw)


def test_text_error_refuses_control_characters_and_lone_surrogates_but_not_spaces():
    for bad in ("a\x00b", "\x07", "x\x7f", "\ud800", "pair \udfff"):
        assert "control characters" in text_error(bad), repr(bad)
    for good in ("", "Beyoncé", "tab\tand\nnewline\r", "emoji \U0001F600"):
        assert text_error(good) is None, repr(good)


def test_validate_songs_accepts_one_object_or_a_list(song):
    assert validate_songs(song) == ([song], False)
    with_optionals = dict(song, artist_name="Someone", track_name="Song", track_id="X1", valence=0.5)
    songs, is_list = validate_songs([song, with_optionals])
    assert is_list and songs == [song, with_optionals]


@pytest.mark.parametrize(("body", "message"), [
    ("a string", "body must be a JSON object of features or a list of them"),
    (3, "body must be a JSON object of features or a list of them"),
    ([], f"a list must hold 1 to {MAX_SONGS} songs, not 0"),
])
def test_validate_songs_refuses_bodies_that_are_not_songs(body, message):
    with pytest.raises(BodyError) as info:
        validate_songs(body)
    assert info.value.message == message and info.value.errors == []


def test_validate_songs_refuses_a_list_over_the_limit(song):
    with pytest.raises(BodyError, match=f"not {MAX_SONGS + 1}$"):
        validate_songs([song] * (MAX_SONGS + 1))


def test_every_bad_field_is_listed_with_its_index_name_and_range(song):
    low, high = config.NUMERIC_RANGES["energy"]
    bad = dict(song, energy=high + 1, popularity=True, key="H", genre="  ", colour="red")
    del bad["tempo"]
    with pytest.raises(BodyError) as info:
        validate_songs([song, bad])
    errors = {e["field"]: e for e in info.value.errors}
    assert set(errors) == {"energy", "popularity", "key", "genre", "tempo", "colour"}
    assert all(e["index"] == 1 for e in errors.values())  # the good song 0 is not listed
    assert errors["energy"]["message"] == f"must be a number from {low:g} to {high:g}"
    assert errors["popularity"]["message"] == "must be a number from 0 to 100"  # a boolean is not a number
    assert errors["key"]["message"] == "must be one of " + ", ".join(config.KEYS)
    assert errors["genre"]["message"] == f"must be a non-empty string of at most {MAX_TEXT} characters"
    assert errors["tempo"]["message"] == "is required"
    assert errors["colour"]["message"] == "is not a known field"
    assert info.value.message == "6 invalid field(s); nothing was predicted"


def test_a_single_object_has_no_index_and_a_non_object_song_is_one_error(song):
    errors = song_errors(dict(song, valence=1.5, artist_name="x" * (MAX_TEXT + 1)), None)
    assert sorted((e["index"], e["field"], e["message"]) for e in errors) == [
        (None, "artist_name", f"must be a string of at most {MAX_TEXT} characters"),
        (None, "valence", "must be a number from 0 to 1")]
    assert song_errors([song], 4) == [{"index": 4, "field": None, "message": "must be a JSON object of features"}]
    assert song_errors(song, 0) == []


def test_errors_are_cut_to_the_first_max_errors(song):
    songs = [dict(song, energy=-1.0, tempo=-1.0)] * 60  # two errors each: 120 in all
    with pytest.raises(BodyError) as info:
        validate_songs(songs)
    assert len(info.value.errors) == MAX_ERRORS
    assert info.value.message.startswith(f"120 invalid field(s) (first {MAX_ERRORS} shown)")
    assert info.value.errors[-1]["index"] == (MAX_ERRORS - 1) // 2


def test_songs_to_columns_strips_genres_and_fills_missing_artists(song):
    one, two = dict(song, genre="  Pop "), dict(song, genre="Rock", artist_name="Band")
    columns = songs_to_columns([one, two])
    assert columns["genre"] == ["Pop", "Rock"]
    assert columns["artist_name"] == ["", "Band"]
    assert columns["tempo"] == [song["tempo"], song["tempo"]]
    assert set(columns) == set(config.FEATURE_COLUMNS) | {"artist_name"}
    assert "artist_name" not in songs_to_columns([song])
