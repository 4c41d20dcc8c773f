"""The generated data set: Kaggle schema, determinism, realism, learnable signal, atomic writes."""
import numpy as np
import pandas as pd
import pytest

from valence.config import KAGGLE_COLUMNS, KEYS, MODES, NUMERIC_FEATURES, NUMERIC_RANGES, TIME_SIGNATURES
from valence.data.load import load_dataset
from valence.data.synthetic import generate_dataset, write_csv


@pytest.fixture(scope="module")
def songs():
    return generate_dataset(20_000, seed=0)


@pytest.mark.parametrize("n_rows", [1, 5, 17, 1000])
def test_exact_size_and_kaggle_schema(n_rows):
    frame = generate_dataset(n_rows, seed=3)
    assert len(frame) == n_rows and list(frame.columns) == list(KAGGLE_COLUMNS)
    assert frame["track_id"].str.fullmatch(r"[0-9A-Za-z]{22}").all()
    assert set(frame["key"]) <= set(KEYS) and set(frame["mode"]) <= set(MODES)
    assert set(frame["time_signature"]) <= set(TIME_SIGNATURES)
    assert frame["popularity"].dtype == np.int64 and frame["duration_ms"].dtype == np.int64
    for column in NUMERIC_FEATURES:
        low, high = NUMERIC_RANGES[column]
        assert frame[column].between(low, high).all(), column
    assert frame["valence"].between(0, 1).all()
    assert (frame["artist_name"].str.len() > 0).all() and (frame["track_name"].str.len() > 0).all()


def test_same_seed_same_data_other_seed_other_data():
    pd.testing.assert_frame_equal(generate_dataset(500, seed=9), generate_dataset(500, seed=9))
    assert not generate_dataset(500, seed=9)["valence"].equals(generate_dataset(500, seed=10)["valence"])


def test_genres_like_the_kaggle_file(songs):
    counts = songs["genre"].value_counts()
    assert len(counts) == 27  # 26 genres, Children's Music spelled two ways
    assert counts["Children\u2019s Music"] < counts["Children's Music"]
    assert counts.drop(["A Capella", "Children\u2019s Music"]).min() > 500
    assert songs["genre"].is_monotonic_increasing is False  # grouped in Kaggle's order, not sorted
    assert songs["genre"].iloc[0] == "Movie"


def test_tracks_repeat_under_other_genres_with_identical_features(songs):
    repeated = songs[songs["track_id"].duplicated(keep=False)]
    assert 0.15 < len(repeated) / len(songs) < 0.5
    per_track = repeated.groupby("track_id")
    assert (per_track["genre"].nunique() == per_track.size()).all()  # each listing another genre
    features = [c for c in KAGGLE_COLUMNS if c != "genre"]
    assert (per_track[features].nunique() == 1).all().all()


def test_artists_have_several_songs(songs):
    per_artist = songs.drop_duplicates("track_id")["artist_name"].value_counts()
    assert 3 < per_artist.mean() < 20 and per_artist.max() >= 20


def test_valence_rises_with_danceability_energy_and_loudness(songs):
    correlation = songs[["valence", "danceability", "energy", "loudness", "acousticness"]].corr()["valence"]
    assert 0.3 < correlation["danceability"] < 0.75
    assert 0.2 < correlation["energy"] < 0.65
    assert 0.15 < correlation["loudness"] < 0.65
    assert correlation["acousticness"] < -0.1
    assert songs["energy"].corr(songs["loudness"]) > 0.7  # as in the real data


def test_marginals_look_like_the_real_data(songs):
    assert 30 < songs["popularity"].mean() < 55
    assert 0.5 < songs["danceability"].mean() < 0.65 and 0.5 < songs["energy"].mean() < 0.7
    assert -13 < songs["loudness"].mean() < -6 and 100 < songs["tempo"].mean() < 130
    assert 150_000 < songs["duration_ms"].median() < 300_000
    assert 0.4 < songs["valence"].mean() < 0.55 and songs["valence"].std() > 0.2
    assert (songs["instrumentalness"] == 0).mean() > 0.2
    assert songs["time_signature"].value_counts().index[0] == "4/4"


def test_signal_is_learnable(songs):
    """A least-squares fit on the features clearly beats predicting the mean."""
    tracks = songs.drop_duplicates("track_id").sample(frac=1, random_state=0)  # rows come by genre
    x = pd.get_dummies(tracks[list(NUMERIC_FEATURES) + ["genre", "mode"]], dtype=float).to_numpy()
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    x = np.c_[np.ones(len(x)), x]
    y = tracks["valence"].to_numpy()
    train, test = slice(0, len(y) * 3 // 4), slice(len(y) * 3 // 4, None)
    weights = np.linalg.lstsq(x[train], y[train], rcond=None)[0]
    error = np.abs(x[test] @ weights - y[test]).mean()
    baseline = np.abs(y[train].mean() - y[test]).mean()
    assert error < 0.85 * baseline


def test_written_csv_loads_back_unchanged(tmp_path):
    frame = generate_dataset(300, seed=4)
    path = write_csv(frame, tmp_path / "new" / "demo.csv")
    loaded, report = load_dataset(path)
    assert report.rows_kept == 300 and report.skipped == {}
    assert loaded["track_id"].tolist() == frame["track_id"].tolist()
    assert np.allclose(loaded["valence"], frame["valence"]) and np.allclose(loaded["tempo"], frame["tempo"])
    assert loaded["genre"].str.contains("\u2019").sum() == 0
    assert list(tmp_path.joinpath("new").iterdir()) == [path]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_csv(generate_dataset(5, seed=0), tmp_path / "demo.csv")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        write_csv(generate_dataset(50, seed=1), path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_invalid_size_is_refused():
    with pytest.raises(ValueError):
        generate_dataset(0)
