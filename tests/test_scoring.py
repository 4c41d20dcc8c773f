import pandas as pd
import pytest

from valence.config import FEATURE_COLUMNS, ValenceError
from valence.predict import Predictor
from valence.scoring import score_csv


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor.from_model_dir(trained[0])


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv).head(40)


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


def test_score_csv_with_an_explainer_adds_contributions_that_add_up(predictor, songs, tmp_path):
    from valence.explain import GROUPS, Explainer

    songs.head(12).to_csv(tmp_path / "in.csv", index=False)
    score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor, chunksize=5, explainer=Explainer(predictor.regression))
    out = pd.read_csv(tmp_path / "out.csv")
    columns = [f"contribution_{group}" for group in GROUPS]
    assert list(out.columns[-len(GROUPS) - 1:]) == ["base_value", *columns]
    assert len(out) == 12 and out["base_value"].nunique() == 1
    total = out[columns].sum(axis=1) + out["base_value"]
    assert (total - out["predicted_valence"]).abs().max() < 0.001
    assert (out[columns].abs() > 0.001).sum(axis=1).min() >= 3  # real explanations, not zeros


def test_score_csv_without_an_explainer_has_no_contribution_columns(predictor, songs, tmp_path):
    songs.head(3).to_csv(tmp_path / "in.csv", index=False)
    score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert not any(c.startswith("contribution_") or c == "base_value" for c in pd.read_csv(tmp_path / "out.csv"))
