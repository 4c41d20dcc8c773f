"""Inputs shaped like Spotify's through POST /predict and a CSV: one reading rule for both (issue 24)."""
import pytest

from conftest import served
from valence.data.load import load_dataset

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C#", "liveness": 0.1, "loudness": -5.0, "mode": "Minor",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "3/4"}
SPOTIFY = {"key": 1, "mode": 0, "time_signature": 3}  # the same song as Spotify's audio features give it


def test_spotify_integers_are_predicted_as_their_kaggle_spellings(client):
    kaggle = client.post("/predict", json=SONG)
    spotify = client.post("/predict", json=dict(SONG, **SPOTIFY))
    assert kaggle.status_code == spotify.status_code == 200
    assert spotify.json == kaggle.json and spotify.json["warnings"] == []


def test_a_time_signature_the_model_never_saw_gets_the_csv_paths_warning(app, client, tmp_path):
    answer = client.post("/predict", json=dict(SONG, time_signature=7))
    assert answer.status_code == 200
    assert answer.json["warnings"] == ["unknown time_signature '7/4': predicted as an unseen time_signature"]
    header = ",".join(["artist_name", "track_name", "track_id", *SONG])
    row = ",".join(["A", "B", "X1", *(str(v) for v in dict(SONG, time_signature=7).values())])
    (tmp_path / "one.csv").write_text(f"{header}\n{row}\n")
    frame, _ = load_dataset(tmp_path / "one.csv", require_valence=False)
    from_file = served(app).predictor.predict(frame.drop(columns=["artist_name", "track_name"]))
    assert from_file.warnings == [answer.json["warnings"]]
    assert float(from_file.valence[0]) == pytest.approx(answer.json["prediction"], rel=1e-5)


@pytest.mark.parametrize(("field", "value"), [("key", -1), ("key", 12), ("mode", 2), ("time_signature", 8)])
def test_numbers_outside_spotifys_ranges_are_a_400_naming_the_field(client, field, value):
    answer = client.post("/predict", json=dict(SONG, **{field: value}))
    assert answer.status_code == 400
    assert [error["field"] for error in answer.json["errors"]] == [field]


@pytest.mark.parametrize("typed", ["pop", "POP", " pOp "])
def test_a_genre_in_any_case_is_that_genre(client, typed):
    exact = client.post("/predict", json=SONG)
    answer = client.post("/predict", json=dict(SONG, genre=typed))
    assert answer.status_code == 200 and answer.json == exact.json and answer.json["warnings"] == []
    unseen = client.post("/predict", json=dict(SONG, genre="polka")).json["warnings"]
    assert unseen == ["unknown genre 'polka': predicted as an unseen genre"]
