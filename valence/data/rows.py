"""Turn CSV records' string fields into the clean frame, with a reason for each skipped row."""
import re
from collections import Counter

import numpy as np
import pandas as pd

from valence.data import cells
from valence.config import KAGGLE_COLUMNS, NUMERIC_FEATURES, NUMERIC_RANGES, TARGET, ValenceError

# Why a row is skipped: the keys of LoadReport.skipped, in the order rows are checked.
REPEATED_HEADER = "repeated header line"
NO_TRACK_ID = "row without track_id"
NO_GENRE = "row without genre"
MISSING = "row with a missing feature"
NON_NUMERIC = "row with a non-numeric feature"
NOT_FINITE = "row with NaN or inf"
OUT_OF_RANGE = "row with an out-of-range value"
BAD_CATEGORY = {"key": "row with an unknown key", "mode": "row with an unknown mode",
                "time_signature": "row with an unreadable time_signature"}
NO_VALENCE = "row without valence"
BAD_VALENCE = "row with a non-numeric valence"
VALENCE_RANGE = "row with valence outside [0, 1]"

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_NOT_A_NUMBER = {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}
_PARSERS = cells.PARSERS


def _short(value):
    return repr(value if len(value) <= 40 else value[:37] + "...")


class _Checker:
    """Marks each row with the first reason it fails, and keeps a message for it."""

    def __init__(self, lines):
        self.lines = lines
        self.ok = np.ones(len(lines), dtype=bool)
        self.counts = Counter()
        self.bad = []

    def flag(self, mask, reason, column=None, values=None):
        hit = np.flatnonzero(np.asarray(mask) & self.ok)
        if hit.size == 0:
            return
        self.ok[hit] = False
        self.counts[reason] += int(hit.size)
        for i in hit:
            detail = "" if column is None else f": {column}={_short(str(values[i]))}"
            self.bad.append((int(self.lines[i]), reason + detail))


def _to_float(text):
    """Return (float64 values, 'missing', 'not a number') for a column of strings."""
    if text.dtype == np.float64:  # the parser read every cell as a number
        nothing = np.zeros(len(text), dtype=bool)
        return text.to_numpy(copy=True), nothing, nothing
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = (text == "").to_numpy()
    failed = np.flatnonzero(np.isnan(values) & ~missing)
    strange = np.zeros(len(values), dtype=bool)
    for i in failed:  # rare: "1e500", "nan", " 3 ", "abc"
        cell = text.iat[i].strip()
        if not cell:
            missing[i] = True
        elif _NUMBER.fullmatch(cell):
            values[i] = float(cell)
        elif cell.lower() not in _NOT_A_NUMBER:
            strange[i] = True
    return values, missing, strange


def _refuse_one_based_keys(keys, lines):
    """Stop when a key number is 12: the file numbers keys 1 to 12, and 1 to 11 would be misread."""
    twelve = [v for v in keys.unique() if cells.parse_key(v)[0] is None and v.strip() in ("12", "12.0")]
    if twelve:
        line = int(np.asarray(lines)[np.flatnonzero((keys == twelve[0]).to_numpy())[0]])
        raise ValenceError(
            f"line {line}: key is {twelve[0]!r}, but Spotify numbers keys 0 (C) to 11 (B); this "
            f"file seems to number them 1 to 12, so its key numbers cannot be converted safely. "
            f"Write keys as names (C, C#, D, ... B) or as numbers 0 to 11")


def build_clean_frame(raw, lines, plan, names, require_valence):
    """Return (clean frame, bad rows, reason counts, counts of repaired and converted cells)."""
    text = {column: raw[position] for column, position in plan.items()}
    checker = _Checker(lines)
    # Scoring input may lack the names and track_id (require_valence=False): carried when present.
    out = {column: text[column].to_numpy(dtype=object) for column in ("artist_name", "track_name") if column in text}
    if "track_id" in text:
        out["track_id"] = text["track_id"].str.strip().to_numpy(dtype=object)
    genres = text["genre"].map({g: cells.parse_genre(g) for g in text["genre"].unique()})
    out["genre"] = genres.to_numpy(dtype=object)
    header = dict(zip(plan, names))
    marker = "track_id" if "track_id" in out else "genre"  # a cell that holds its own column's name
    checker.flag(out[marker] == (header[marker] if marker == "track_id" else cells.parse_genre(header[marker])),
                 REPEATED_HEADER)
    if require_valence:  # training and the catalog group rows by track
        checker.flag(out["track_id"] == "", NO_TRACK_ID)
    checker.flag(out["genre"] == "", NO_GENRE)

    for column in NUMERIC_FEATURES:
        values, missing, strange = _to_float(text[column])
        low, high = NUMERIC_RANGES[column]
        shown = text[column].to_numpy()
        checker.flag(missing, MISSING, column, shown)
        checker.flag(strange, NON_NUMERIC, column, shown)
        checker.flag(~np.isfinite(values), NOT_FINITE, column, shown)
        with np.errstate(invalid="ignore"):
            checker.flag((values < low) | (values > high), OUT_OF_RANGE, column, shown)
        out[column] = values

    _refuse_one_based_keys(text["key"], lines)
    hows = {}
    for column, parse in _PARSERS.items():
        parsed = {value: parse(value) for value in text[column].unique()}
        values = text[column].map({k: v[0] for k, v in parsed.items()}).to_numpy(dtype=object)
        hows[column] = text[column].map({k: v[1] for k, v in parsed.items()}).to_numpy(dtype=object)
        checker.flag(pd.isna(values), BAD_CATEGORY[column], column, text[column].to_numpy(dtype=object))
        out[column] = values

    if TARGET in text:
        values, missing, strange = _to_float(text[TARGET])
        if require_valence:
            shown = text[TARGET].to_numpy()
            checker.flag(missing, NO_VALENCE)
            checker.flag(strange | ~np.isfinite(values), BAD_VALENCE, TARGET, shown)
            with np.errstate(invalid="ignore"):
                checker.flag((values < 0) | (values > 1), VALENCE_RANGE, TARGET, shown)
        else:  # scoring input: an unusable valence is only left out
            with np.errstate(invalid="ignore"):
                values[strange | ~((values >= 0) & (values <= 1))] = np.nan
        out[TARGET] = values

    keep = checker.ok
    frame = pd.DataFrame({c: out[c][keep] for c in KAGGLE_COLUMNS if c in out})
    frame["line"] = np.asarray(lines, dtype=np.int64)[keep]
    repaired = Counter()
    for column, how in hows.items():
        for kind in (cells.REPAIRED, cells.CONVERTED):
            count = int(np.count_nonzero(how[keep] == kind))
            if count:
                repaired[f"{column}:{kind}"] = count
    return frame, checker.bad, checker.counts, repaired
