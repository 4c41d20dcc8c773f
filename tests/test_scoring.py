import pandas as pd
import pytest

from valence.config import FEATURE_COLUMNS, ValenceError
from valence.model.predict_file import score_csv


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv).head(40)


def test_score_csv_keeps_good_rows_and_reports_bad_ones_by_line(predictor, songs, tmp_path):
    damaged = songs.head(5).drop(columns=["valence"]).copy()
    damaged["energy"] = damaged["energy"].astype(object)
    damaged.loc[damaged.index[2], "energy"] = "loud"   # line 4 of the file (header is line 1)
    damaged.to_csv(tmp_path / "in.csv", index=False)
    summary = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert summary.scored == 4
    assert [line for line, _ in summary.bad_rows] == [4]
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["track_id"]) == list(damaged["track_id"])  # the bad row keeps its identity
    assert out["predicted_valence"].isna().tolist() == [False, False, True, False, False]


def test_score_csv_with_no_good_row_writes_nothing(predictor, tmp_path):
    (tmp_path / "in.csv").write_text(",".join(FEATURE_COLUMNS) + ",artist_name,track_name,track_id\n")
    with pytest.raises(ValenceError):
        score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert not (tmp_path / "out.csv").exists()


def test_score_csv_with_an_explainer_adds_contributions_that_add_up(predictor, songs, tmp_path):
    from valence.model.explain import GROUPS, Explainer

    songs.head(12).to_csv(tmp_path / "in.csv", index=False)
    score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor, chunksize=5, explainer=Explainer(predictor.regression))
    out = pd.read_csv(tmp_path / "out.csv")
    columns = [f"contribution_{group}" for group in GROUPS]
    assert list(out.columns[-len(GROUPS) - 2:]) == ["base_value", *columns, "reason"]
    assert len(out) == 12 and out["base_value"].nunique() == 1
    total = out[columns].sum(axis=1) + out["base_value"]
    assert (total - out["predicted_valence"]).abs().max() < 0.001
    assert (out[columns].abs() > 0.001).sum(axis=1).min() >= 3  # real explanations, not zeros


def test_score_csv_without_an_explainer_has_no_contribution_columns(predictor, songs, tmp_path):
    songs.head(3).to_csv(tmp_path / "in.csv", index=False)
    score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    assert not any(c.startswith("contribution_") or c == "base_value" for c in pd.read_csv(tmp_path / "out.csv"))


# ---- issue 13: every input row has an output row; unseen genres and artists are counted -----------

def test_score_csv_keeps_every_row_in_input_order_with_the_reason_for_the_bad_ones(predictor, songs, tmp_path):
    damaged = songs.head(6).drop(columns=["valence"]).copy()
    damaged["energy"] = damaged["energy"].astype(object)
    for row in (0, 1, 4):  # the first chunk of two is all bad: the header must still have every column
        damaged.loc[damaged.index[row], "energy"] = "loud"
    damaged.to_csv(tmp_path / "in.csv", index=False)
    summary = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor, chunksize=2)
    assert summary.scored == 3 and [line for line, _ in summary.bad_rows] == [2, 3, 6]
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["track_id", "artist_name", "track_name", "genre", "predicted_valence",
                                 "valence_low", "valence_high", "predicted_mood", "reason"]
    assert len(out) == 6
    for column in ("track_id", "artist_name", "track_name", "genre"):  # every row keeps what names it
        assert list(out[column]) == list(damaged[column].astype(str)), column
    assert [value == "" for value in out["predicted_valence"]] == [True, True, False, False, True, False]
    assert [reason.split(":")[0] for reason in out["reason"]] == [
        "row with a non-numeric feature", "row with a non-numeric feature", "", "", "row with a non-numeric feature", ""]
    assert "energy='loud'" in out["reason"].iloc[4]


def test_score_csv_of_features_only_writes_the_predictions_and_the_reason(predictor, songs, tmp_path):
    songs[list(FEATURE_COLUMNS)].head(4).to_csv(tmp_path / "in.csv", index=False)
    summary = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert summary.scored == 4 and list(out.columns) == ["genre", "predicted_valence", "valence_low", "valence_high",
                                                         "predicted_mood", "reason"]
    assert list(out["genre"]) == list(songs["genre"].head(4)) and set(out["reason"]) == {""}


def test_score_csv_counts_rows_of_an_unseen_genre_or_artist(predictor, songs, tmp_path):
    known = next(a for a in songs["artist_name"] if a.casefold() in predictor.regression.encoder.artist_table_)
    frame = songs.head(5).copy()
    frame["artist_name"] = [known, f" {known.upper()}", "Nobody Heard Of", "Nobody Heard Of", known]
    frame.loc[[1, 2], "genre"] = "Polka"
    frame.to_csv(tmp_path / "in.csv", index=False)
    summary = score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor, chunksize=3)
    assert summary.unseen == {"genre": 2, "artist_name": 2}


# ---- issue 24, point 9: a row that cannot be scored keeps its identity; an all-bad file says why -----------

def test_a_truncated_row_keeps_the_identity_it_holds_and_a_shifted_one_claims_none(predictor, songs, tmp_path):
    lines = songs.head(4).drop(columns=["valence"]).to_csv(index=False).splitlines()
    lines[2] = lines[2].rsplit(",", 3)[0]  # truncated: the names and track_id are still there
    lines[3] += ",extra"  # too many fields: which is which cannot be known (an unquoted comma in a name?)
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    for column in ("track_id", "artist_name", "track_name"):
        expected = list(songs[column].head(4).astype(str))
        assert list(out[column]) == [*expected[:2], "", expected[3]], column
    assert [reason.split(":")[0] for reason in out["reason"]] == ["", "truncated row", "row with too many fields", ""]


def test_no_scorable_row_names_the_reasons_by_count_and_the_first_lines(predictor, songs, tmp_path):
    damaged = songs.head(8).drop(columns=["valence"]).copy()
    damaged["energy"] = "loud"
    damaged.loc[damaged.index[:2], "key"] = "H"  # checked after energy: still counted as non-numeric energy
    damaged.loc[damaged.index[6:], "genre"] = ""
    damaged.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ValenceError) as error:
        score_csv(tmp_path / "in.csv", tmp_path / "out.csv", predictor, chunksize=3)
    assert str(error.value) == (
        f"no row of {tmp_path / 'in.csv'} could be scored: 8 bad rows (6 rows with a non-numeric feature, "
        "2 rows without genre); line 2: row with a non-numeric feature: energy='loud'; line 3: row with a "
        "non-numeric feature: energy='loud'; line 4: row with a non-numeric feature: energy='loud'; line 5: row "
        "with a non-numeric feature: energy='loud'; line 6: row with a non-numeric feature: energy='loud'; "
        "... and 3 more")
    assert not (tmp_path / "out.csv").exists()
