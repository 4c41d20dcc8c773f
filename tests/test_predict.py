import shutil

import numpy as np
import pandas as pd
import pytest

from valence.config import FEATURE_COLUMNS, ValenceError
from valence.predict import Predictor, score_csv


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor.from_model_dir(trained[0])


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv).head(40)


def test_predicts_valence_and_mood_for_every_row(predictor, songs):
    result = predictor.predict(songs)
    assert result.valence.shape == (40,)
    assert np.all((result.valence >= 0) & (result.valence <= 1))
    assert result.mood_probabilities.shape == (40, 3)
    np.testing.assert_allclose(result.mood_probabilities.sum(axis=1), 1, atol=1e-5)
    assert result.mood == [("sad", "neutral", "happy")[i] for i in result.mood_probabilities.argmax(axis=1)]
    assert result.warnings == [[] for _ in range(40)]


def test_unknown_genre_is_predicted_with_a_warning(predictor, songs):
    odd = songs.head(3).copy()
    odd.loc[odd.index[1], "genre"] = "Polka"
    result = predictor.predict(odd[list(FEATURE_COLUMNS)])  # no artist_name: an unknown artist
    assert np.isfinite(result.valence).all()
    assert result.warnings[0] == [] and result.warnings[2] == []
    assert result.warnings[1] == ["unknown genre 'Polka': predicted as an unseen genre"]


def test_without_a_classifier_there_is_no_mood(trained, tmp_path, songs):
    shutil.copy(trained[0] / "regression.pt", tmp_path / "regression.pt")
    predictor = Predictor.from_model_dir(tmp_path)
    assert predictor.classification is None
    assert predictor.predict(songs).mood is None
    assert set(predictor.metadata()) == {"regression"}


def test_metadata_is_plain_and_names_the_features(predictor):
    meta = predictor.metadata()
    assert meta["regression"]["kind"] == "regression"
    assert "danceability" in meta["regression"]["features"]["numeric"]
    assert len(meta["classification"]["data"]["sha256"]) == 64


def test_score_csv_keeps_good_rows_and_reports_bad_ones_by_line(predictor, songs, tmp_path):
    damaged = songs.head(5).drop(columns=["valence"]).copy()
    damaged["energy"] = damaged["energy"].astype(object)
    damaged.loc[damaged.index[2], "energy"] = "loud"   # line 4 of the file (header is line 1)
    damaged.to_csv(tmp_path / "in.csv", index=False)
    scored, bad = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert scored == 4
    assert [line for line, _ in bad] == [4]
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["track_id"]) == [t for i, t in enumerate(damaged["track_id"]) if i != 2]


def test_score_csv_with_no_good_row_writes_nothing(predictor, tmp_path):
    (tmp_path / "in.csv").write_text(",".join(FEATURE_COLUMNS) + ",artist_name,track_name,track_id\n")
    with pytest.raises(ValenceError):
        score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert not (tmp_path / "out.csv").exists()


def test_metadata_names_the_training_file_but_not_the_server_folders(predictor, trained):
    meta = predictor.metadata()["regression"]
    assert meta["data"]["path"] == "demo.csv"
    assert meta["metrics"]["data_path"] == "demo.csv"
