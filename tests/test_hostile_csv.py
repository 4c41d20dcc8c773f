"""Hostile and odd CSV files, all generated here: each loads with exact counts of kept and
skipped rows, or stops with one clear message and exit status 2; no traceback ever.

The corpus starts from 40 generated songs (valence.data.synthetic, never real data) and
damages them one way per case. `CASES` lists what each case must give; the same
files then go through the command line (`--print-batch`, and `--predict`).
"""
import codecs
import gzip
import io
import os
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from valence.data import load as data_module
from valence.config import KAGGLE_COLUMNS, KEYS, NUMERIC_FEATURES, ValenceError
from valence.data.load import LoadReport, load_dataset
from valence.data.synthetic import generate_dataset

from cli_runner import shared_server

BASE_ROWS = 40
HEADER = ",".join(KAGGLE_COLUMNS) + "\n"
TEN_MB = 10 << 20


@dataclass
class Expect:
    """What loading a case must give: exact counts, or an error naming the problem."""
    kept: int = None
    read: int = None
    skipped: dict = field(default_factory=dict)
    error: str = None  # a regular expression the one error message matches
    note: str = None   # a substring of one of the report's notes


CASES = {}


def case(**expect):
    """Register a function that writes a damaged copy of the base frame to a path."""
    def register(make):
        CASES[make.__name__] = (make, Expect(**expect))
        return make
    return register


def text(frame):
    return frame.to_csv(index=False, lineterminator="\n")


def lines_of(frame):
    return text(frame).splitlines(keepends=True)


# ---- the corpus ------------------------------------------------------------------------

@case(error=r"is empty: expected a CSV file whose first line is the header genre,artist_name")
def empty(base, path):
    path.write_bytes(b"")


@case(error=r"is empty")
def blank_lines_only(base, path):
    path.write_text("   \n\n\t\n")


@case(error=r"no usable rows in .*: it has a header but no data rows")
def header_only(base, path):
    path.write_text(HEADER)


@case(error=r"expected comma-separated values, but the header is semicolon-separated")
def semicolons(base, path):
    path.write_text(base.to_csv(index=False, sep=";", decimal=","))  # a European spreadsheet's export


@case(error=r"expected comma-separated values, but the header is tab-separated")
def tabs(base, path):
    path.write_text(base.to_csv(index=False, sep="\t"))


@case(kept=40, read=40, note="different order from the Kaggle file")
def columns_reordered_and_renamed(base, path):
    frame = base[list(reversed(KAGGLE_COLUMNS))]
    frame.columns = [c.replace("_", " ").title() for c in frame.columns]  # "Track Name"
    path.write_text(text(frame))


@case(kept=40, read=40, note="ignored 3 extra column(s): , comment, energy_2")
def extra_columns(base, path):
    frame = base.copy()
    frame.insert(0, "", range(len(frame)))  # pandas' unnamed index column
    frame["comment"] = "great, really"       # quoted: it has a comma
    frame["energy_2"] = frame["energy"] * 2
    path.write_text(text(frame))


@case(error=r"missing required column\(s\): energy, tempo \(found: 'genre'")
def missing_columns(base, path):
    path.write_text(text(base.drop(columns=["energy", "tempo"])))


@case(error=r"missing required column\(s\): valence")
def missing_valence_for_training(base, path):
    path.write_text(text(base.drop(columns=["valence"])))


@case(kept=40, read=40, note="converted 40 key values")
def spotify_api_numbers(base, path):
    frame = base.copy()
    frame["key"] = [KEYS.index(k) for k in frame["key"]]        # Spotify API: 0 = C ... 11 = B
    frame["mode"] = (frame["mode"] == "Major").astype(int)     # 1 = Major
    frame["time_signature"] = frame["time_signature"].str[0].astype(int)  # 4 = 4/4
    path.write_text(text(frame))


@case(error=r"line 3: key is '12', but Spotify numbers keys 0 \(C\) to 11 \(B\)")
def keys_numbered_1_to_12(base, path):
    frame = base.copy()
    frame.loc[1, "key"] = "B"
    frame["key"] = [KEYS.index(k) + 1 for k in frame["key"]]  # B is 12: the numbering is not Spotify's
    path.write_text(text(frame))


@case(kept=40, read=40, note="decoded 2 lines as cp1252")
def cp1252_file(base, path):
    frame = base.copy()
    frame.loc[0, "track_name"] = "Café – Señor"
    frame.loc[21, "genre"] = "Children\u2019s Music"
    path.write_bytes(text(frame).replace("\n", "\r\n").encode("cp1252"))  # a Windows program's file


@case(kept=40, read=40, note="decoded 1 line as cp1252")
def utf8_with_one_cp1252_line(base, path):
    frame = base.copy()
    frame.loc[20, "genre"] = "Children\u2019s Music"  # stays UTF-8
    frame.loc[21, "genre"] = "Children\u2019s Music"  # this line becomes cp1252 bytes below
    frame.loc[21, "track_name"] = "Café"
    rows = lines_of(frame)
    path.write_bytes(b"".join(r.encode("cp1252" if i == 22 else "utf-8") for i, r in enumerate(rows)))


@case(kept=40, read=40, note="is UTF-16 text")
def utf16_with_bom(base, path):
    path.write_bytes(text(base).encode("utf-16"))


@case(kept=40, read=40, note="is UTF-16 text")
def utf16_big_endian_without_bom(base, path):
    path.write_bytes(text(base).replace("\n", "\r\n").encode("utf-16-be"))


@case(kept=40, read=40, note="removed 41 NUL bytes")
def nul_bytes(base, path):
    path.write_bytes(b"".join(line.encode().replace(b",", b",\x00", 1) for line in lines_of(base)))


@case(error=r"missing required column\(s\): genre, .* \(found: 'xxxxxxxxx.*\.\.\.'\)$")
def ten_mb_single_line(base, path):
    path.write_text("x" * TEN_MB)


@case(kept=40, read=41, skipped={"truncated row": 1})
def ten_mb_line_among_rows(base, path):
    rows = lines_of(base)
    path.write_text("".join(rows[:21]) + "a" * TEN_MB + "\n" + "".join(rows[21:]))  # line 22


@case(kept=39, read=40, skipped={"row with a non-numeric feature": 1})
def quoted_commas_and_newlines(base, path):
    frame = base.copy().astype({"energy": object})
    frame.loc[3, "track_name"] = 'Hello, "World"\nPart 2, the end'  # one line end inside
    frame.loc[5, "artist_name"] = "A,\n\nB"                         # two
    frame.loc[10, "genre"] = 'Pop, "Rock"'
    frame.loc[30, "energy"] = "loud"  # row 30 starts on line 2 + 30 + 3 = 35
    path.write_text(text(frame))


@case(kept=40, read=42, skipped={"repeated header line": 2})
def repeated_header_lines(base, path):
    rows = lines_of(base)
    # Files joined with `cat`: the second copy's header, once with its byte-order mark.
    path.write_text("".join(rows[:11]) + rows[0] + "".join(rows[11:31]) + "\ufeff" + rows[0]
                    + "".join(rows[31:]))


@case(kept=39, read=40, skipped={"truncated row": 1}, note=None)
def spreadsheet_save(base, path):
    rows = lines_of(base)
    blank = "," * (len(KAGGLE_COLUMNS) - 1) + "\n"
    body = "".join(rows[:15]) + blank + "\n" + "   \n" + "".join(rows[15:])
    body = body[: -len(rows[-1]) // 2]  # cut mid-row, as the real slice ends
    path.write_bytes(codecs.BOM_UTF8 + body.replace("\n", "\r\n").encode())


# Every rendering a spreadsheet gives "N/4" once it took it for a date: month N, day 4
# (US), or day N of April (day-first locales); then shown in some date format.
TIME_SIGNATURE_RENDERINGS = {
    "4-Jan": "1/4", "4-Mar": "3/4", "4-Apr": "4/4", "4-May": "5/4", "4-Jul": "7/4",
    "04-Mar": "3/4", "4-Mar-21": "3/4", "04-Mar-2021": "3/4", "Mar-04": "3/4",
    "Mar 4, 2021": "3/4", "March 4, 2021": "3/4", "Thursday, March 4, 2021": "3/4",
    "Thu, Mar 4, 2021": "3/4", "3/4/2021": "3/4", "03/04/2021": "3/4", "3/4/21": "3/4",
    "1/4/2021": "1/4", "2021-03-04": "3/4", "2021/03/04": "3/4", "2021-05-04": "5/4",
    "2021-03-04 00:00:00": "3/4", "2021-03-04T00:00:00": "3/4", "3/4/2021 0:00": "3/4",
    "3/4/2021 12:00:00 AM": "3/4", "20210304": "3/4", "44259": "3/4", "44259.0": "3/4",
    "44200": "1/4",
    "03-Apr": "3/4", "3-Apr": "3/4", "01-Apr": "1/4", "05-Apr-21": "5/4", "07-Apr": "7/4",
    "3 Apr 2021": "3/4", "3 April 2021": "3/4", "Saturday, 3 April 2021": "3/4",
    "03.04.2021": "3/4", "03.04.21": "3/4", "3.4.": "3/4", "2021-04-03": "3/4",
    "44289": "3/4", "05-avr.": "5/4", "03-abr": "3/4", "3 avril 2021": "3/4",
    "4/4": "4/4", "0/4": "0/4",      # already right: kept, not counted as repaired
    "Apr-21": None, "13/8": None,    # the day is lost / not a time signature: skipped
}


@case(kept=len(TIME_SIGNATURE_RENDERINGS) - 2, read=len(TIME_SIGNATURE_RENDERINGS),
      skipped={"row with an unreadable time_signature": 2})
def time_signature_dates(base, path):
    frame = base.iloc[np.arange(len(TIME_SIGNATURE_RENDERINGS)) % len(base)].copy()
    frame["time_signature"] = list(TIME_SIGNATURE_RENDERINGS)
    path.write_text(text(frame))


BAD_NUMBERS = ("nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1", "1e308", "99999999999999999999")


# 10 features x 6 non-finite spellings; -1 is out of range everywhere but loudness (kept).
@case(kept=3, read=2 + 11 * len(BAD_NUMBERS),
      skipped={"row with NaN or inf": 60, "row with an out-of-range value": 29,
               "row with a non-numeric valence": 6, "row with valence outside [0, 1]": 3})
def nan_inf_negative_huge_everywhere(base, path):
    columns = [*NUMERIC_FEATURES, "valence"]
    frame = base.iloc[[0, 1] + [2] * (len(columns) * len(BAD_NUMBERS))].astype(object).reset_index(drop=True)
    for i, (column, value) in enumerate((c, v) for c in columns for v in BAD_NUMBERS):
        frame.loc[2 + i, column] = value
    path.write_text(text(frame))


@case(kept=36, read=40, skipped={"row with too many fields": 1, "truncated row": 1,
                                 "row without track_id": 1, "row without valence": 1})
def broken_rows(base, path):
    rows = lines_of(base)
    rows[3] = rows[3].replace(",", ", and friends,", 2)  # an unquoted comma: too many fields
    rows[8] = rows[8][:40] + "\n"                        # cut short
    frame = base.copy()
    frame.loc[19, "track_id"] = " "
    frame.loc[29, "valence"] = np.nan
    fixed = lines_of(frame)
    rows[20], rows[30] = fixed[20], fixed[30]
    path.write_text("".join(rows))


@case(kept=39, read=40, skipped={"row with an unterminated quote": 1})
def unterminated_quote(base, path):
    rows = lines_of(base)
    path.write_text("".join(rows[:21]) + '"never closed,' + "".join(rows[21:]))  # line 22


@case(error=r"is a ZIP archive \(or an \.xlsx workbook\), not a CSV text file: extract the CSV")
def zip_archive(base, path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("SpotifyFeatures.csv", text(base))
    path.write_bytes(buffer.getvalue())


@case(error=r"is gzip-compressed, not a CSV text file")
def gzip_file(base, path):
    path.write_bytes(gzip.compress(text(base).encode()))


@case(error=r"is a directory, not a CSV file")
def directory(base, path):
    path.mkdir()


@case(error=r"data file not found: .*kaggle\.com.*--demo")
def missing_file(base, path):
    pass


@case(error=r"cannot read .*: Permission denied")
def unreadable(base, path):
    path.write_text(text(base))
    path.chmod(0)


# ---- fixtures ----------------------------------------------------------------------------

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def base():
    return generate_dataset(BASE_ROWS, seed=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, base):
    """Write every case; return {name: path}."""
    folder = tmp_path_factory.mktemp("corpus")
    paths = {}
    for name, (make, _) in CASES.items():
        paths[name] = folder / f"{name}.csv"
        make(base.copy(), paths[name])
    return paths


def load(corpus, name, monkeypatch):
    """Load a case in this process; as root, unreadable is simulated (chmod does not stop root)."""
    if name == "unreadable" and AS_ROOT:
        real_open = open

        def refused(path, *args, **kwargs):
            if str(path) == str(corpus[name]):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(data_module, "open", refused, raising=False)
    return load_dataset(corpus[name])


# ---- loading each case -------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_each_case_loads_with_exact_counts_or_stops_with_one_clear_error(corpus, name, monkeypatch):
    expect = CASES[name][1]
    if expect.error:
        with pytest.raises(ValenceError) as error:
            load(corpus, name, monkeypatch)
        message = str(error.value)
        assert len(message) < 1000, message[:300]  # a 10 MB header is not echoed back
        assert str(corpus[name]) in message
        assert re.search(expect.error, message, re.S), message
        return
    frame, report = load(corpus, name, monkeypatch)
    assert (report.rows_kept, report.rows_read, report.skipped) == (expect.kept, expect.read, expect.skipped)
    assert len(frame) == expect.kept and frame["line"].is_unique
    assert list(frame.columns) == [*KAGGLE_COLUMNS, "line"]
    if expect.note:
        assert any(expect.note in note for note in report.notes), report.notes


def test_values_survive_the_damage(corpus, base, monkeypatch):
    """What the repairs give back is the original data, cell for cell."""
    for name in ("columns_reordered_and_renamed", "extra_columns", "spotify_api_numbers", "utf16_with_bom",
                 "utf16_big_endian_without_bom", "nul_bytes", "repeated_header_lines"):
        frame, _ = load(corpus, name, monkeypatch)
        pd.testing.assert_frame_equal(frame[list(KAGGLE_COLUMNS)], base.assign(
            genre=base["genre"].str.replace("\u2019", "'")), check_dtype=False, obj=name)


def test_encodings_are_decoded_per_line(corpus, monkeypatch):
    frame, report = load(corpus, "cp1252_file", monkeypatch)
    assert frame.loc[0, "track_name"] == "Café – Señor"
    assert frame.loc[21, "genre"] == "Children's Music"
    mixed, _ = load(corpus, "utf8_with_one_cp1252_line", monkeypatch)
    assert list(mixed.loc[20:21, "genre"]) == ["Children's Music", "Children's Music"]
    assert mixed.loc[21, "track_name"] == "Café"


def test_line_numbers_count_physical_lines(corpus, monkeypatch):
    frame, report = load(corpus, "quoted_commas_and_newlines", monkeypatch)
    assert report.bad_lines == [(35, "row with a non-numeric feature: energy='loud'")]
    assert frame.loc[3, "track_name"] == 'Hello, "World"\nPart 2, the end'
    assert frame.loc[5, "artist_name"] == "A,\n\nB" and frame.loc[10, "genre"] == 'Pop, "Rock"'
    assert list(frame["line"][:8]) == [2, 3, 4, 5, 7, 8, 11, 12]
    for name, lines in {"ten_mb_line_among_rows": [22], "unterminated_quote": [22],
                        "repeated_header_lines": [12, 33], "spreadsheet_save": [44],
                        "broken_rows": [4, 9, 21, 31]}.items():
        assert [line for line, _ in load(corpus, name, monkeypatch)[1].bad_lines] == lines, name


def test_every_time_signature_rendering_is_repaired(corpus, monkeypatch):
    frame, report = load(corpus, "time_signature_dates", monkeypatch)
    wanted = {line: value for line, value in enumerate(TIME_SIGNATURE_RENDERINGS.values(), 2) if value}
    assert dict(zip(frame["line"], frame["time_signature"])) == wanted
    assert report.repaired_time_signatures == len(wanted) - 2  # "4/4" and "0/4" needed no repair


@pytest.mark.parametrize("name", [n for n, (_, e) in CASES.items() if not e.error])
def test_reading_in_chunks_keeps_and_skips_the_same_rows(corpus, name, monkeypatch):
    """Scoring streams a file in chunks of records: chunk edges change nothing."""
    whole, report = load(corpus, name, monkeypatch)
    streamed = LoadReport(path=str(corpus[name]))
    chunks = list(data_module._chunks(corpus[name], 7, True, streamed))  # iter_feature_chunks, valence required
    assert [line for chunk, _ in chunks for line in chunk["line"]] == list(whole["line"])
    bad = [line for _, chunk_bad in chunks for line, _ in chunk_bad]
    assert len(bad) == sum(report.skipped.values())
    assert bad[:len(report.bad_lines)] == [line for line, _ in report.bad_lines]
    assert (streamed.rows_kept, streamed.rows_read, streamed.skipped) == (
        report.rows_kept, report.rows_read, report.skipped)


# ---- the same files through the command line ---------------------------------------------

@pytest.fixture(scope="module")
def cli_results(corpus, tmp_path_factory):
    """Run `--print-batch` on every case, each in its own process; return {name: Finished}."""
    server = shared_server()
    work = tmp_path_factory.mktemp("cli-corpus")
    results = {}
    for name in CASES:
        if name == "unreadable" and AS_ROOT:
            continue
        results[name] = server.run(["--data", corpus[name], "--model-dir", work / "models", "--print-batch"],
                                   work / name)
    assert not (work / "models").exists()  # --print-batch writes no model
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_command_line_exits_0_or_2_with_no_traceback(cli_results, name):
    if name not in cli_results:
        pytest.skip("running as root: chmod 000 does not stop root from reading (simulated in-process above)")
    done, expect = cli_results[name], CASES[name][1]
    assert "Traceback" not in done.stderr
    if expect.error:
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and re.search(expect.error, done.stderr, re.S), done.stderr
    elif expect.kept < 20:
        assert done.returncode == 2
        assert f"has only {expect.kept} usable rows" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert f"loaded {expect.kept:,} of {expect.read:,} rows" in done.stdout
        assert "first training batch" in done.stdout


@pytest.mark.slow
def test_predict_scores_the_good_rows_and_reports_the_bad_ones_by_line(trained, corpus, tmp_path):
    model_dir, _ = trained
    done = shared_server().run(["--model-dir", model_dir, "--predict", corpus["broken_rows"],
                                "--output", tmp_path / "scores.csv"], tmp_path / "run")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "scored 38 songs" in done.stdout and "2 rows could not be scored (kept" in done.stdout
    reported = [line.split(":")[0].strip() for line in done.stdout.splitlines() if line.startswith("  line ")]
    assert reported == ["line 4", "line 9"]  # neither valence (line 31) nor track_id (line 21) is needed to score
    scores = pd.read_csv(tmp_path / "scores.csv")
    source = pd.read_csv(corpus["broken_rows"], on_bad_lines="skip", dtype=str)
    good = scores["reason"].isna()
    assert len(scores) == 40 and good.sum() == 38  # every row, the bad ones with their reason
    assert scores["predicted_valence"][good].between(0, 1).all() and scores["predicted_valence"][~good].isna().all()
    assert scores["track_id"][good].isna().sum() == 1  # line 21's, blank
    assert set(scores["track_id"].dropna()) <= set(source["track_id"])
