"""Unit tests of valence.api.schemas: POST /predict bodies checked field by field by the pydantic models."""
import json

import numpy as np
import pytest

from valence import config
from valence.data.load import load_dataset
from valence.data import cells
from valence.api.schemas import (BAD_TEXT, SPELLINGS, MAX_ERRORS, MAX_SONGS, MAX_TEXT, OPTIONAL_FIELDS, Song, songs_to_columns,
                             text_error, validate_songs)
from valence.api.strict_json import BodyError
from valence.data.synthetic import generate_dataset

REAL_DATA = config.PROJ_ROOT.parent / "shared" / "data" / "spotify_features_partial.csv"


@pytest.fixture(scope="module")
def song():
    """Return one valid song as JSON would decode it (plain ints, floats and strings)."""
    frame = generate_dataset(5, seed=1)[list(config.FEATURE_COLUMNS)]
    return json.loads(frame.iloc[[0]].to_json(orient="records"))[0]


def errors_of(body):
    """Return the BodyError's (index, field, message) triples for a body."""
    with pytest.raises(BodyError) as info:
        validate_songs(body)
    return [(e["index"], e["field"], e["message"]) for e in info.value.errors]


def test_text_error_refuses_control_characters_and_lone_surrogates_but_not_spaces():
    for bad in ("a\x00b", "\x07", "x\x7f", "\ud800", "pair \udfff"):
        assert text_error(bad) == BAD_TEXT, repr(bad)
    for good in ("", "Beyoncé", "tab\tand\nnewline\r", "emoji \U0001F600"):
        assert text_error(good) is None, repr(good)


def test_validate_songs_accepts_one_object_or_a_list(song):
    songs, is_list = validate_songs(song)
    assert not is_list and [one.model_dump(exclude_none=True) for one in songs] == [song]
    with_optionals = dict(song, artist_name="Someone", track_name="Song", track_id="X1", valence=0.5)
    songs, is_list = validate_songs([song, with_optionals])
    assert is_list and songs[1].model_dump(exclude={"level"}) == with_optionals and songs[0].artist_name is None


@pytest.mark.parametrize(("body", "message"), [
    ("a string", "body must be a JSON object of features or a list of them"),
    (3, "body must be a JSON object of features or a list of them"),
    (None, "body must be a JSON object of features or a list of them"),
    ([], f"a list must hold 1 to {MAX_SONGS} songs, not 0"),
])
def test_validate_songs_refuses_bodies_that_are_not_songs(body, message):
    with pytest.raises(BodyError) as info:
        validate_songs(body)
    assert info.value.message == message and info.value.errors == []


def test_validate_songs_refuses_a_list_over_the_limit(song):
    with pytest.raises(BodyError, match=f"not {MAX_SONGS + 1}$"):
        validate_songs([song] * (MAX_SONGS + 1))


def test_every_bad_field_is_listed_once_with_its_index_name_and_range(song):
    low, high = config.NUMERIC_RANGES["energy"]
    bad = dict(song, energy=high + 1, popularity=True, key="H", genre="  ", colour="red", tempo="120",
               loudness=float("inf"), duration_ms=10 ** 400, artist_name=None)
    del bad["mode"]
    with pytest.raises(BodyError) as info:
        validate_songs([song, bad])
    errors = {e["field"]: e["message"] for e in info.value.errors}
    assert len(info.value.errors) == len(errors) == 10
    assert all(e["index"] == 1 for e in info.value.errors)  # the good song 0 is not listed
    assert errors == {
        "energy": f"must be a number from {low:g} to {high:g}",
        "popularity": "must be a number from 0 to 100",  # a boolean is not a number
        "tempo": "must be a number from 0 to 400",  # nor is a string of digits
        "loudness": "must be a number from -100 to 10",
        "duration_ms": "must be a number from 1 to 1e+08",
        "key": "must be one of " + ", ".join(config.KEYS) + " (any case; also " + SPELLINGS["key"][1] + ")",
        "genre": f"must be a non-empty string of at most {MAX_TEXT} characters",
        "mode": "is required",
        "colour": "is not a known field",
        "artist_name": f"must be a string of at most {MAX_TEXT} characters",  # null is not a string
    }
    assert info.value.message == "10 invalid field(s); nothing was predicted"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"genre": "Pop\x00"}, ("genre", BAD_TEXT)),
    ({"genre": "\x1b[2J"}, ("genre", BAD_TEXT)),
    ({"genre": ""}, ("genre", f"must be a non-empty string of at most {MAX_TEXT} characters")),
    ({"genre": "x" * (MAX_TEXT + 1)}, ("genre", f"must be a non-empty string of at most {MAX_TEXT} characters")),
    ({"artist_name": "\ud800"}, ("artist_name", BAD_TEXT)),
    ({"track_name": "a\x7fb"}, ("track_name", BAD_TEXT)),
    ({"track_id": 7}, ("track_id", f"must be a string of at most {MAX_TEXT} characters")),
    ({"track_name": "x" * (MAX_TEXT + 1)}, ("track_name", f"must be a string of at most {MAX_TEXT} characters")),
    ({"valence": 1.5}, ("valence", "must be a number from 0 to 1")),
    ({"time_signature": 8}, ("time_signature", "must be one of " + ", ".join(config.TIME_SIGNATURES)
                             + " (any case; also " + SPELLINGS["time_signature"][1] + ")")),
    ({"key": -1}, ("key", "must be one of " + ", ".join(config.KEYS) + " (any case; also " + SPELLINGS["key"][1]
                   + ")")),
    ({"mode": True}, ("mode", "must be one of " + ", ".join(config.MODES) + " (any case; also "
                      + SPELLINGS["mode"][1] + ")")),
    ({"\ud800": 1}, ("\ud800", "is not a known field")),
    ({"x" * 5000: 1}, ("x" * 200, "is not a known field")),
])
def test_one_message_per_bad_field_of_a_single_object(song, changes, expected):
    assert errors_of(dict(song, **changes)) == [(None, *expected)]


def test_a_song_that_is_no_object_is_one_error(song):
    assert errors_of([song, "a song", [song]]) == [(1, None, "must be a JSON object of features"),
                                                   (2, None, "must be a JSON object of features")]


def test_errors_are_cut_to_the_first_max_errors(song):
    songs = [dict(song, energy=-1.0, tempo=-1.0)] * 60  # two errors each: 120 in all
    with pytest.raises(BodyError) as info:
        validate_songs(songs)
    assert len(info.value.errors) == MAX_ERRORS
    assert info.value.message.startswith(f"120 invalid field(s) (first {MAX_ERRORS} shown)")
    assert info.value.errors[-1]["index"] == (MAX_ERRORS - 1) // 2


def test_text_up_to_the_limit_with_tabs_and_accents_is_accepted(song):
    name = "Tout est possible (par Anggun, Dany Brillant, Garou, Gérard Lenorman, Julie Zenatti…)\t" * 11
    songs, _ = validate_songs(dict(song, track_name=name[:MAX_TEXT], artist_name="Beyoncé", genre=" Pop "))
    assert songs[0].track_name == name[:MAX_TEXT]


def test_every_catalog_row_of_the_real_slice_can_be_sent_back_as_it_is():
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} is absent")
    frame, _ = load_dataset(REAL_DATA, require_valence=True)  # as the catalog loads it
    rows = json.loads(frame[list(config.KAGGLE_COLUMNS)].to_json(orient="records"))
    longest = max(rows, key=lambda row: len(row["track_name"]))
    assert len(longest["track_name"]) > 200  # the row that a 200-character limit refused
    for start in range(0, len(rows), MAX_SONGS):
        validate_songs(rows[start:start + MAX_SONGS])


def test_song_fields_follow_config(song):
    assert list(Song.model_fields) == [*config.FEATURE_COLUMNS, *OPTIONAL_FIELDS, "level"]
    assert OPTIONAL_FIELDS == ("artist_name", "track_name", "track_id", "valence")
    assert [name for name, field in Song.model_fields.items() if field.is_required()] == list(config.FEATURE_COLUMNS)


def test_songs_to_columns_strips_genres_and_fills_missing_artists(song):
    songs, _ = validate_songs([dict(song, genre="  Pop "), dict(song, genre="Rock", artist_name="Band")])
    columns = songs_to_columns(songs)
    assert columns["genre"] == ["Pop", "Rock"]
    assert columns["artist_name"] == ["", "Band"]
    assert columns["tempo"].dtype == np.float64 and columns["tempo"].tolist() == [song["tempo"], song["tempo"]]
    assert set(columns) == set(config.FEATURE_COLUMNS) | {"artist_name"}
    assert "artist_name" not in songs_to_columns(validate_songs(song)[0])


def test_songs_to_columns_passes_track_names_for_their_version_marker(song):
    songs, _ = validate_songs([dict(song, track_name="Falling - Acoustic"), song])
    columns = songs_to_columns(songs)
    assert columns["track_name"] == ["Falling - Acoustic", ""]
    assert "track_name" not in songs_to_columns(validate_songs(song)[0])


# ---- issue 24, point 6: Spotify's own JSON types, read as the CSV reader reads the same cell ---------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({"key": 0, "mode": 1, "time_signature": 4}, ("C", "Major", "4/4")),
    ({"key": 11, "mode": 0, "time_signature": 7}, ("B", "Minor", "7/4")),
    ({"key": "1", "mode": "0", "time_signature": "3"}, ("C#", "Minor", "3/4")),
    ({"key": "Db", "mode": "major", "time_signature": " 7 / 4 "}, ("C#", "Major", "7/4")),
    ({"key": 11.0, "mode": "1\n", "time_signature": 4.0}, ("B", "Major", "4/4")),  # what JSON Schema lets through
])
def test_spotify_numbers_are_read_as_the_csv_reads_them(song, changes, expected):
    songs, _ = validate_songs(dict(song, **changes))
    columns = songs_to_columns(songs)
    assert (columns["key"][0], columns["mode"][0], columns["time_signature"][0]) == expected
    for name, value in changes.items():  # the same value as a CSV cell
        assert cells.parse_cell(name, str(value))[0] == columns[name][0]


@pytest.mark.parametrize(("name", "value"), [("key", 12), ("key", -1), ("mode", 2), ("mode", -1),
                                             ("time_signature", 8), ("time_signature", -4),
                                             ("time_signature", 4.5), ("key", "12"), ("time_signature", "9/4")])
def test_values_the_csv_reader_refuses_are_refused(song, name, value):
    assert [field for _, field, _ in errors_of(dict(song, **{name: value}))] == [name]
    if not isinstance(value, float):  # 4.5 is no beat count (4.0 is 4: test above)
        assert cells.parse_cell(name, str(value))[0] is None
