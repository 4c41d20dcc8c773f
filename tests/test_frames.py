"""The Python API (valence.model.frames): one row out per row in, in order, the same checks and reasons as
--predict, explanations that add up to the predictions."""
import doctest
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from valence import ValenceModel
from valence.config import CLASS_NAMES, FEATURE_COLUMNS, ValenceError
from valence.model.explain import GROUPS
from valence.model.predict_file import score_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(trained):
    return ValenceModel(trained[0])


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv, keep_default_na=False).head(30)


def test_predict_gives_one_row_per_song_in_order_with_the_predictors_numbers(model, songs, predictor):
    shuffled = songs.sample(frac=1.0, random_state=4).set_index(pd.Index([f"song {i}" for i in range(30)]))
    out = model.predict(shuffled)
    assert list(out.index) == list(shuffled.index)
    assert list(out.columns) == ["valence", "valence_low", "valence_high", "mood", *(f"p_{c}" for c in CLASS_NAMES),
                                 "warnings", "reason"]
    expected = predictor.predict(shuffled.reset_index(drop=True))
    np.testing.assert_allclose(out["valence"].to_numpy(), expected.valence, rtol=0, atol=1e-7)
    assert out["mood"].tolist() == list(expected.mood)
    np.testing.assert_allclose(out[[f"p_{c}" for c in CLASS_NAMES]].sum(axis=1), 1.0, atol=1e-6)
    assert (out["reason"] == "").all() and out["warnings"].map(len).sum() == sum(map(len, expected.warnings))


def test_a_bad_row_keeps_its_place_with_the_reason_predict_gives(model, songs, predictor, tmp_path):
    bad = songs.astype({"energy": object})
    bad.loc[3, "energy"] = "loud"
    bad.loc[7, "tempo"] = -5
    out = model.predict(bad)
    assert out["valence"].isna().tolist() == [i in (3, 7) for i in range(30)]
    bad.to_csv(tmp_path / "in.csv", index=False)
    summary = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert [out["reason"].iloc[line - 2] for line, _ in summary.bad_rows] == [r for _, r in summary.bad_rows]
    assert "energy='loud'" in out["reason"].iloc[3] and "tempo" in out["reason"].iloc[7]


def test_names_with_line_breaks_keep_every_row_in_its_place(model, songs):
    odd = songs.astype({"energy": object})
    odd.loc[1, "track_name"] = "Two\nLines"
    odd.loc[2, "artist_name"] = "Three\r\nLine\rArtist"
    odd.loc[5, "energy"] = "loud"
    plain = model.predict(songs)
    out = model.predict(odd)
    assert out["reason"].ne("").tolist() == [i == 5 for i in range(30)]
    keep = [i for i in range(30) if i not in (1, 2, 5)]  # names change the artist statistics of rows 1 and 2
    # Another batch (29 songs scored, not 30) may round the last float32 bit differently.
    np.testing.assert_allclose(out["valence"].iloc[keep].to_numpy(), plain["valence"].iloc[keep].to_numpy(),
                               rtol=0, atol=1e-6)


def test_a_frame_without_a_feature_column_is_refused_naming_the_column_not_a_file(model, songs):
    with pytest.raises(ValenceError, match="the DataFrame is missing required column.*energy") as error:
        model.predict(songs.drop(columns="energy"))
    assert "songs.csv" not in str(error.value) and "valence-frame" not in str(error.value)
    with pytest.raises(ValenceError, match="pandas DataFrame"):
        model.predict(songs.to_dict("records"))


def test_explanations_add_up_to_the_predicted_valence(model, songs):
    songs = songs.copy()
    songs.loc[4, "danceability"] = 2.5  # out of range: not explained, kept in place
    explained, predicted = model.explain(songs), model.predict(songs)
    assert list(explained.columns) == ["prediction", "base_value", *(f"contribution_{g}" for g in GROUPS), "reason"]
    good = explained["reason"] == ""
    assert good.tolist() == [i != 4 for i in range(30)]
    np.testing.assert_array_equal(explained["prediction"][good], predicted["valence"][good])
    total = explained.filter(like="contribution_").sum(axis=1) + explained["base_value"]
    assert (total[good] - explained["prediction"][good]).abs().max() < 1e-5


def test_a_folder_without_models_is_refused_as_the_command_line_refuses_it(tmp_path):
    with pytest.raises(ValenceError, match="no saved model in"):
        ValenceModel(tmp_path)


def test_the_readme_notebook_example_runs_as_printed(trained, demo_csv, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copytree(trained[0], tmp_path / "models" / "demo")
    (tmp_path / "data").mkdir()
    shutil.copyfile(demo_csv, tmp_path / "data" / "demo_features.csv")
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert ">>> from valence import ValenceModel" in example
    test = doctest.DocTestParser().get_doctest(example, {}, "README", "README.md", 0)
    assert len(test.examples) >= 4
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
    assert result.failed == 0 and result.attempted == len(test.examples)


def test_every_feature_column_is_what_a_frame_needs(model, songs):
    out = model.predict(songs[list(FEATURE_COLUMNS)])  # no names or ids: unknown artists, still scored
    assert out["valence"].notna().all()
    assert all(any("artist" in w for w in row) or row == [] for row in out["warnings"])
