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
