"""Unit tests of valence.data.rows: string fields of parsed records checked row by row into the clean frame."""
import numpy as np
import pandas as pd
import pytest

from valence.data import cells
from valence.data import rows as rows_module
from valence.config import KAGGLE_COLUMNS, NUMERIC_RANGES, ValenceError
from valence.data.synthetic import generate_dataset
from valence.data.rows import (BAD_CATEGORY, BAD_VALENCE, MISSING, NO_GENRE, NO_TRACK_ID, NO_VALENCE, NON_NUMERIC,
                          NOT_FINITE, OUT_OF_RANGE, REPEATED_HEADER, VALENCE_RANGE, build_clean_frame)

PLAN = {column: position for position, column in enumerate(KAGGLE_COLUMNS)}
NAMES = list(KAGGLE_COLUMNS)


@pytest.fixture(scope="module")
def songs():
    return generate_dataset(12, seed=4)


def raw_of(frame):
    """Return the frame as parse_fields gives it: every cell a string, columns numbered by position."""
    raw = frame[list(KAGGLE_COLUMNS)].astype(str)
    raw.columns = range(len(KAGGLE_COLUMNS))
    return raw.reset_index(drop=True)


def run(raw, require_valence=True, first_line=2):
    lines = np.arange(first_line, first_line + len(raw))
    return build_clean_frame(raw, lines, PLAN, NAMES, require_valence)


def with_cells(songs, changes):
    """Return the raw strings of `songs` with {(row, column): text} replaced."""
    raw = raw_of(songs)
    for (row, column), text in changes.items():
        raw.iat[row, PLAN[column]] = text
    return raw


def test_clean_rows_are_kept_with_their_values_and_lines(songs):
    frame, bad, counts, repaired = run(raw_of(songs), first_line=10)
    assert bad == [] and not counts and not repaired
    assert list(frame.columns) == [*KAGGLE_COLUMNS, "line"]
    assert frame["line"].tolist() == list(range(10, 10 + len(songs)))
    np.testing.assert_allclose(frame["energy"].to_numpy(), songs["energy"].to_numpy())
    np.testing.assert_allclose(frame["valence"].to_numpy(), songs["valence"].to_numpy())
    assert frame["track_id"].tolist() == songs["track_id"].tolist()


def test_each_bad_row_is_named_by_line_first_reason_and_cell(songs):
    raw = with_cells(songs, {
        (0, "track_id"): "  ", (0, "energy"): "2",  # two faults: only the first reason counts
        (1, "genre"): " ",
        (2, "tempo"): "",
        (3, "danceability"): "abc",
        (4, "loudness"): "nan",
        (5, "energy"): "1.5",
        (6, "key"): "H",
        (7, "track_id"): "track_id",
    })
    frame, bad, counts, _ = run(raw)
    assert len(frame) == len(songs) - 8 and frame["line"].min() == 10  # lines 2..9 were bad
    assert dict(counts) == {NO_TRACK_ID: 1, NO_GENRE: 1, MISSING: 1, NON_NUMERIC: 1, NOT_FINITE: 1,
                            OUT_OF_RANGE: 1, BAD_CATEGORY["key"]: 1, REPEATED_HEADER: 1}
    assert sorted(bad) == [(2, NO_TRACK_ID), (3, NO_GENRE), (4, f"{MISSING}: tempo=''"),
                           (5, f"{NON_NUMERIC}: danceability='abc'"), (6, f"{NOT_FINITE}: loudness='nan'"),
                           (7, f"{OUT_OF_RANGE}: energy='1.5'"), (8, f"{BAD_CATEGORY['key']}: key='H'"),
                           (9, REPEATED_HEADER)]


def test_long_bad_values_are_shortened_in_messages(songs):
    long = "x" * 60
    _, bad, _, _ = run(with_cells(songs, {(0, "tempo"): long}))
    assert bad == [(2, f"{NON_NUMERIC}: tempo={long[:37] + '...'!r}")]


def test_numbers_in_other_spellings_are_read_and_extremes_are_refused(songs):
    low, high = NUMERIC_RANGES["tempo"]
    raw = with_cells(songs, {(0, "tempo"): " 120.5 ", (1, "tempo"): "1_2_0", (2, "tempo"): "+.5e2",
                             (3, "tempo"): "1e500", (4, "tempo"): str(high + 1), (5, "tempo"): str(low - 1),
                             (6, "tempo"): "-inf"})
    frame, bad, counts, _ = run(raw)
    assert frame["tempo"].tolist()[:2] == [120.5, 50.0]
    # "1_2_0" is not how a number is written in a CSV (float() would read it as 120): skipped.
    assert dict(counts) == {NOT_FINITE: 2, OUT_OF_RANGE: 2, NON_NUMERIC: 1}
    assert sorted(line for line, _ in bad) == [3, 5, 6, 7, 8]


def test_key_numbered_twelve_stops_the_load_naming_the_line(songs):
    raw = with_cells(songs, {(3, "key"): "12"})
    with pytest.raises(ValenceError, match=r"^line 9: key is '12', but Spotify numbers keys 0 \(C\) to 11 \(B\)"):
        run(raw, first_line=6)


def test_categories_in_api_spellings_are_converted_and_counted(songs):
    raw = with_cells(songs, {(0, "key"): "0", (1, "mode"): "1", (2, "mode"): "0", (3, "time_signature"): "4",
                             (4, "time_signature"): "4-Apr", (5, "time_signature"): " 3 / 4 "})
    frame, bad, _, repaired = run(raw)
    assert bad == []
    assert frame["key"][0] == "C" and frame["mode"][1] == "Major" and frame["mode"][2] == "Minor"
    assert frame["time_signature"][3:6].tolist() == ["4/4", "4/4", "3/4"]
    assert dict(repaired) == {f"key:{cells.CONVERTED}": 1, f"mode:{cells.CONVERTED}": 2,
                              f"time_signature:{cells.CONVERTED}": 1, f"time_signature:{cells.REPAIRED}": 2}


def test_training_data_needs_a_valence_in_0_1(songs):
    raw = with_cells(songs, {(0, "valence"): "", (1, "valence"): "high", (2, "valence"): "1.01",
                             (3, "valence"): "-0.5", (4, "valence"): "inf"})
    frame, bad, counts, _ = run(raw)
    assert dict(counts) == {NO_VALENCE: 1, BAD_VALENCE: 2, VALENCE_RANGE: 2}
    assert (2, NO_VALENCE) in bad and (3, f"{BAD_VALENCE}: valence='high'") in bad
    assert len(frame) == len(songs) - 5


def test_scoring_input_keeps_rows_and_blanks_an_unusable_valence(songs):
    raw = with_cells(songs, {(0, "valence"): "", (1, "valence"): "high", (2, "valence"): "1.01"})
    frame, bad, counts, _ = run(raw, require_valence=False)
    assert bad == [] and not counts and len(frame) == len(songs)
    assert frame["valence"][:3].isna().all()
    assert frame["valence"][3] == songs["valence"][3]


def test_scoring_input_without_a_valence_column(songs):
    raw = raw_of(songs).drop(columns=[PLAN["valence"]])
    plan = {c: p for c, p in PLAN.items() if c != "valence"}
    frame, bad, _, _ = build_clean_frame(raw, np.arange(len(raw)) + 2, plan, NAMES[:-1], False)
    assert bad == [] and "valence" not in frame.columns and len(frame) == len(songs)


def test_to_float_splits_missing_from_not_a_number():
    values, missing, strange = rows_module._to_float(pd.Series(["1.5", "", " ", "abc", "NaN", "1e3"]))
    assert missing.tolist() == [False, True, True, False, False, False]
    assert strange.tolist() == [False, False, False, True, False, False]
    assert values[0] == 1.5 and values[5] == 1000.0 and np.isnan(values[4])
    floats = pd.Series([0.25, 2.0])
    values, missing, strange = rows_module._to_float(floats)
    assert values.tolist() == [0.25, 2.0] and not missing.any() and not strange.any()
