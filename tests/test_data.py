"""Loading messy CSVs into the clean frame, chunked reading, and the split by track."""
import codecs
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valence.data import load as data
from valence.config import KAGGLE_COLUMNS, KAGGLE_URL, NUMERIC_FEATURES, SplitConfig, ValenceError
from valence.data.load import iter_feature_chunks, load_dataset, split_by_track
from valence.data.synthetic import generate_dataset

REAL_SLICE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spotify_features_partial.csv"
HEADER = ",".join(KAGGLE_COLUMNS)


@pytest.fixture
def songs():
    """Twelve generated songs, every column as text, as a user's file would hold them."""
    return generate_dataset(12, seed=1).astype(str)


def write(tmp_path, content, name="songs.csv"):
    """Write str (UTF-8) or bytes to a file and return its path."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def csv_text(frame):
    return frame.to_csv(index=False, lineterminator="\n")


def consistent(report):
    """Every row read was kept or skipped for a counted reason."""
    return report.rows_read == report.rows_kept + sum(report.skipped.values())


def test_clean_file_loads_every_row_with_its_values_and_line(tmp_path, songs):
    path = write(tmp_path, csv_text(songs))
    frame, report = load_dataset(path)
    assert list(frame.columns) == [*KAGGLE_COLUMNS, "line"]
    assert frame["line"].tolist() == list(range(2, 14))
    assert frame["track_id"].tolist() == songs["track_id"].tolist()
    assert frame["energy"].tolist() == songs["energy"].astype(float).tolist()
    assert all(frame[c].dtype == np.float64 for c in NUMERIC_FEATURES)
    assert (report.rows_read, report.rows_kept, report.skipped) == (12, 12, {})
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.encoding == "utf-8" and report.notes == []
    assert report.summary() == f"loaded 12 of 12 rows from {path} (skipped: none)"


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_byte_order_mark_and_line_ends_change_nothing(tmp_path, songs, bom, line_end):
    text = csv_text(songs).replace("\n", line_end)
    frame, report = load_dataset(write(tmp_path, bom + text.encode("utf-8")))
    assert frame["track_id"].tolist() == songs["track_id"].tolist()
    assert frame["line"].tolist() == list(range(2, 14))
    assert frame["valence"].tolist() == songs["valence"].astype(float).tolist()


def test_cp1252_bytes_are_decoded_and_said_so(tmp_path, songs):
    songs.loc[3, "artist_name"] = "Beyoncé – Live"
    path = write(tmp_path, csv_text(songs).encode("cp1252"))
    frame, report = load_dataset(path)
    assert frame.loc[3, "artist_name"] == "Beyoncé – Live"
    assert report.encoding == "cp1252"
    assert report.notes == [f"{path} is not valid UTF-8; decoded 1 line as cp1252"]


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path, songs):
    raw = csv_text(songs).encode("utf-8").replace(songs.loc[0, "track_name"].encode(), b"Caf\xe9 \x81")
    frame, report = load_dataset(write(tmp_path, raw))
    assert report.encoding == "latin-1"
    assert frame.loc[0, "track_name"] == "Café \x81"


@pytest.mark.parametrize("codec, bom", [("utf-16-le", codecs.BOM_UTF16_LE),
                                        ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-16-le", b"")])
def test_utf16_files_are_decoded(tmp_path, songs, codec, bom):
    text = csv_text(songs).replace("\n", "\r\n")
    frame, report = load_dataset(write(tmp_path, bom + text.encode(codec)))
    assert frame["track_id"].tolist() == songs["track_id"].tolist()
    assert frame["line"].tolist() == list(range(2, 14))
    assert report.encoding.startswith("utf-16") and "UTF-16" in report.notes[0]


def test_nul_bytes_are_removed_and_counted(tmp_path, songs):
    raw = csv_text(songs).encode().replace(b"Major", b"Ma\x00jor").replace(b"Minor", b"Mi\x00nor")
    frame, report = load_dataset(write(tmp_path, raw))
    assert len(frame) == 12 and set(frame["mode"]) <= {"Major", "Minor"}
    assert report.notes == [f"removed {raw.count(0)} NUL bytes"]


@pytest.mark.parametrize("rendering, expected", [
    ("4-Apr", "4/4"), ("4-Mar", "3/4"), ("4-May", "5/4"), ("4-Jan", "1/4"), ("03-Apr", "3/4"),
    ("Apr-04", "4/4"), ("2021-03-04", "3/4"), ("04/03/2021", "3/4"), ("3/4", "3/4"), ("4", "4/4"),
])
def test_time_signature_renderings_are_repaired_and_counted(tmp_path, songs, rendering, expected):
    songs["time_signature"] = "4/4"
    songs.loc[[2, 5], "time_signature"] = rendering
    frame, report = load_dataset(write(tmp_path, csv_text(songs)))
    assert frame.loc[[2, 5], "time_signature"].tolist() == [expected, expected]
    repaired = 2 if rendering not in ("3/4", "4") else 0
    assert report.repaired_time_signatures == repaired
    assert report.converted == ({"time_signature": 2} if rendering == "4" else {})


def test_unreadable_time_signature_skips_the_row(tmp_path, songs):
    songs.loc[4, "time_signature"] = "6/8"
    frame, report = load_dataset(write(tmp_path, csv_text(songs)))
    assert report.skipped == {"row with an unreadable time_signature": 1}
    assert report.bad_lines == [(6, "row with an unreadable time_signature: time_signature='6/8'")]
    assert 6 not in frame["line"].tolist() and len(frame) == 11


def test_curly_and_straight_childrens_music_are_one_genre(tmp_path, songs):
    songs["genre"] = ["Children\u2019s Music", "Children's Music", " Children's Music ", "Pop"] * 3
    frame, _ = load_dataset(write(tmp_path, csv_text(songs)))
    assert frame["genre"].value_counts().to_dict() == {"Children's Music": 9, "Pop": 3}


def test_truncated_last_row_is_skipped_with_its_line(tmp_path, songs):
    text = csv_text(songs)
    path = write(tmp_path, text[: text.rindex(",", 0, len(text) - 40)])  # cut mid-row
    frame, report = load_dataset(path)
    assert len(frame) == 11 and report.rows_read == 12
    assert report.skipped == {"truncated row": 1}
    assert report.bad_lines[0][0] == 13 and report.bad_lines[0][1].startswith("truncated row: ")
    assert report.summary() == f"loaded 11 of 12 rows from {path} (skipped: 1 truncated row)"


def test_rows_with_too_many_or_too_few_fields_are_skipped(tmp_path, songs):
    lines = csv_text(songs).splitlines()
    lines[3] += ",extra"
    lines[6] = lines[6].replace(",", "", 2)
    frame, report = load_dataset(write(tmp_path, "\n".join(lines)))
    assert report.skipped == {"row with too many fields": 1, "truncated row": 1}
    assert report.bad_lines == [(4, "row with too many fields: 19 of 18"),
                                (7, "truncated row: 16 of 18 fields")]
    assert frame["line"].tolist() == [2, 3, 5, 6, 8, 9, 10, 11, 12, 13]


@pytest.mark.parametrize("column, value, reason", [
    ("energy", "loud", "row with a non-numeric feature"),
    ("tempo", "", "row with a missing feature"),
    ("loudness", "nan", "row with NaN or inf"),
    ("duration_ms", "inf", "row with NaN or inf"),
    ("danceability", "1e500", "row with NaN or inf"),
    ("energy", "-0.2", "row with an out-of-range value"),
    ("tempo", "1e9", "row with an out-of-range value"),
    ("popularity", "101", "row with an out-of-range value"),
    ("key", "H", "row with an unknown key"),
    ("mode", "Dorian", "row with an unknown mode"),
    ("track_id", " ", "row without track_id"),
    ("genre", "", "row without genre"),
    ("valence", "", "row without valence"),
    ("valence", "1.5", "row with valence outside [0, 1]"),
    ("valence", "-0.01", "row with valence outside [0, 1]"),
    ("valence", "happy", "row with a non-numeric valence"),
])
def test_a_bad_cell_skips_its_row_and_says_why(tmp_path, songs, column, value, reason):
    songs.loc[7, column] = value
    frame, report = load_dataset(write(tmp_path, csv_text(songs)))
    assert len(frame) == 11 and 9 not in frame["line"].tolist()
    assert report.skipped == {reason: 1} and consistent(report)
    assert report.bad_lines[0][0] == 9 and report.bad_lines[0][1].startswith(reason)


def test_nan_inf_negative_and_huge_numbers_in_every_numeric_column(tmp_path):
    good = generate_dataset(10, seed=2).astype(str)
    bad = []
    for column in (*NUMERIC_FEATURES, "valence"):
        for value in ("NaN", "-inf", "-1e300", "1e300"):
            bad.append(good.iloc[[0]].assign(**{column: value}))
    frame, report = load_dataset(write(tmp_path, csv_text(pd.concat([good, *bad]))))
    assert len(frame) == 10 and report.rows_read == 54 and consistent(report)
    assert report.skipped == {"row with NaN or inf": 20, "row with an out-of-range value": 20,
                              "row with a non-numeric valence": 2,
                              "row with valence outside [0, 1]": 2}


def test_number_cells_in_any_float_spelling_are_read(tmp_path, songs):
    songs.loc[0, "instrumentalness"] = "8.19E-06"
    songs.loc[1, "energy"] = " 0.5 "
    songs.loc[2, "popularity"] = "+7"
    frame, report = load_dataset(write(tmp_path, csv_text(songs)))
    assert frame.loc[:2, ["instrumentalness", "energy", "popularity"]].to_numpy().diagonal().tolist() \
        == [8.19e-06, 0.5, 7.0]
    assert report.skipped == {}


def test_scoring_input_keeps_rows_whose_valence_is_missing_or_bad(tmp_path, songs):
    songs.loc[1, "valence"] = ""
    songs.loc[2, "valence"] = "7"
    frame, report = load_dataset(write(tmp_path, csv_text(songs)), require_valence=False)
    assert len(frame) == 12 and report.skipped == {}
    assert frame["valence"].isna().tolist() == [False, True, True] + [False] * 9


def test_file_without_valence_column_loads_for_scoring_only(tmp_path, songs):
    path = write(tmp_path, csv_text(songs.drop(columns="valence")))
    frame, _ = load_dataset(path, require_valence=False)
    assert list(frame.columns) == [c for c in KAGGLE_COLUMNS if c != "valence"] + ["line"]
    with pytest.raises(ValenceError, match=r"missing required column\(s\): valence"):
        load_dataset(path)


def test_missing_columns_are_named_with_the_file(tmp_path, songs):
    path = write(tmp_path, csv_text(songs.drop(columns=["energy", "tempo"])))
    with pytest.raises(ValenceError) as error:
        load_dataset(path)
    assert str(path) in str(error.value) and "energy, tempo" in str(error.value)


def test_missing_file_says_where_to_download_and_about_demo(tmp_path):
    with pytest.raises(ValenceError) as error:
        load_dataset(tmp_path / "spotify_features.csv")
    message = str(error.value)
    assert "spotify_features.csv" in message and KAGGLE_URL in message and "--demo" in message


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (codecs.BOM_UTF8 + b"\r\n\n  \n", "is empty"),
    (HEADER.encode() + b"\n", "no usable rows in .*header but no data rows"),
    (HEADER.replace(",", ";").encode() + b"\nPop;x\n", "expected comma-separated.*semicolon"),
    (HEADER.replace(",", "\t").encode() + b"\n", "expected comma-separated.*tab"),
    (b"Genre; Artist_Name\nPop; x\n", "expected comma-separated.*semicolon"),
    (b"genre;x\nPop;x\n", "missing required column"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "missing required column"),
])
def test_files_with_nothing_to_load_stop_with_one_clear_message(tmp_path, content, message):
    with pytest.raises(ValenceError, match=message):
        load_dataset(write(tmp_path, content))


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ValenceError, match="is a directory"):
        load_dataset(tmp_path)


def test_an_unreadable_file_is_refused(tmp_path, songs, monkeypatch):
    path = write(tmp_path, csv_text(songs))

    def denied(*args, **kwargs):  # chmod 0 does not stop root, so refuse the open itself
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(data, "open", denied, raising=False)
    with pytest.raises(ValenceError, match=f"cannot read {path}: Permission denied"):
        load_dataset(path)


def test_all_rows_bad_is_an_error_that_shows_the_first_problem(tmp_path, songs):
    songs["valence"] = "2"
    with pytest.raises(ValenceError, match=r"no usable rows in .*12 rows with valence outside.*"
                                           r"first problem: line 2: "):
        load_dataset(write(tmp_path, csv_text(songs)))


def test_columns_in_another_order_with_extras_are_matched_by_name(tmp_path, songs):
    shuffled = songs[list(reversed(KAGGLE_COLUMNS))].assign(comment="hi, there", year="2019")
    frame, report = load_dataset(write(tmp_path, csv_text(shuffled)))
    expected, _ = load_dataset(write(tmp_path, csv_text(songs), "plain.csv"))
    pd.testing.assert_frame_equal(frame, expected)
    assert report.notes == ["ignored 2 extra column(s): comment, year",
                            "columns are in a different order from the Kaggle file; matched by name"]


def test_spotify_api_schema_is_converted(tmp_path, songs):
    songs["key"] = [str(i) for i in range(12)]
    songs["mode"] = ["1", "0"] * 6
    songs["time_signature"] = "3"
    frame, report = load_dataset(write(tmp_path, csv_text(songs.rename(columns={"track_id": "id"}))))
    assert frame["key"].tolist() == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    assert frame["mode"].tolist() == ["Major", "Minor"] * 6
    assert set(frame["time_signature"]) == {"3/4"}
    assert report.converted == {"key": 12, "mode": 12, "time_signature": 12}
    assert "using column 'id' as track_id" in report.notes


def test_repeated_header_lines_are_skipped_and_counted(tmp_path, songs):
    lines = csv_text(songs).splitlines()
    lines[5:5] = [HEADER]
    lines[9:9] = [HEADER]
    frame, report = load_dataset(write(tmp_path, "\n".join(lines)))
    assert report.skipped == {"repeated header line": 2} and len(frame) == 12
    assert [line for line, _ in report.bad_lines] == [6, 10]
    assert frame["line"].tolist() == [2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 15]


def test_quoted_commas_newlines_and_stray_quotes(tmp_path, songs):
    songs.loc[1, "track_name"] = 'Hello, "World"'
    songs.loc[2, "track_name"] = "Two\nlines\r\nthree"
    songs.loc[4, "track_name"] = 'Blue Monday 12" Mix'
    text = csv_text(songs).replace('"Blue Monday 12"" Mix"', 'Blue Monday 12" Mix')
    frame, report = load_dataset(write(tmp_path, text))
    assert frame.loc[1:4, "track_name"].tolist() == [
        'Hello, "World"', "Two\nlines\nthree", songs.loc[3, "track_name"], 'Blue Monday 12" Mix']
    assert frame["line"].tolist() == [2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert report.skipped == {}


def test_an_unterminated_quote_at_the_end_skips_that_row(tmp_path, songs):
    text = csv_text(songs)
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    text = text.replace(last, last.replace(",", ',"', 1))
    frame, report = load_dataset(write(tmp_path, text))
    assert len(frame) == 11 and report.skipped == {"row with an unterminated quote": 1}
    assert report.bad_lines[0][0] == 13


def test_blank_and_comma_only_lines_are_not_rows(tmp_path, songs):
    lines = csv_text(songs).splitlines()
    lines[3:3] = ["", ",,,,,,,,,,,,,,,,,", "   "]
    frame, report = load_dataset(write(tmp_path, "\n".join(lines) + "\n\n"))
    assert report.rows_read == 12 and len(frame) == 12
    assert frame["line"].tolist() == [2, 3, *range(7, 17)]


def test_a_long_line_is_one_bad_row(tmp_path, songs):
    lines = csv_text(songs).splitlines()
    lines[2:2] = ["x" * 1_000_000, ",".join(["1"] * 100_000)]
    frame, report = load_dataset(write(tmp_path, "\n".join(lines)))
    assert len(frame) == 12
    assert report.skipped == {"truncated row": 1, "row with too many fields": 1}
    assert report.bad_lines == [(3, "truncated row: 1 of 18 fields"),
                                (4, "row with too many fields: 100000 of 18")]


def damaged_file(tmp_path):
    """A 300-row file with quoted newlines, bad rows and a truncated end."""
    songs = generate_dataset(300, seed=4).astype(str)
    songs.loc[::37, "track_name"] = "A\nsong, on two lines"
    songs.loc[50, "energy"] = "n/a"
    songs.loc[151, "valence"] = "9"
    text = csv_text(songs)
    return write(tmp_path, "\ufeff" + text.replace("\n", "\r\n")[:-60])


# chunksize 1 (300 one-row chunks) takes seconds: it runs with the slow suite.
@pytest.mark.parametrize("chunksize", [pytest.param(1, marks=pytest.mark.slow), 7, 64, 1000])
def test_chunks_add_up_to_the_whole_load_with_right_line_numbers(tmp_path, monkeypatch, chunksize):
    path = damaged_file(tmp_path)
    monkeypatch.setattr(data, "BLOCK_BYTES", 512)  # many blocks, cut mid-row and mid-quote
    whole, report = load_dataset(path, require_valence=False)
    chunks = list(iter_feature_chunks(path, chunksize=chunksize))
    assert all(len(chunk) <= chunksize for chunk, _ in chunks)
    joined = pd.concat([chunk for chunk, _ in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole)
    bad = [row for _, rows in chunks for row in rows]
    assert [line for line, _ in bad] == [line for line, _ in report.bad_lines]
    assert bad[0][1].startswith("row with a non-numeric feature: energy='n/a'")
    assert bad[-1][1].startswith("truncated row")


def test_chunk_report_is_filled_in_and_header_only_gives_one_empty_chunk(tmp_path):
    path = damaged_file(tmp_path)
    report = data.LoadReport(path=str(path))
    rows = sum(len(chunk) for chunk, _ in iter_feature_chunks(path, chunksize=50, report=report))
    assert rows == report.rows_kept == 298 and report.rows_read == 300 and consistent(report)
    chunks = list(iter_feature_chunks(write(tmp_path, HEADER + "\n", "empty.csv")))
    assert len(chunks) == 1 and len(chunks[0][0]) == 0
    assert list(chunks[0][0].columns) == [*KAGGLE_COLUMNS, "line"]


def test_line_numbers_survive_a_utf16_file_read_in_blocks(tmp_path, monkeypatch, songs):
    monkeypatch.setattr(data, "BLOCK_BYTES", 101)  # odd: blocks split characters and CRLFs
    text = csv_text(songs).replace("\n", "\r\n")
    path = write(tmp_path, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    lines = [chunk["line"].tolist() for chunk, _ in iter_feature_chunks(path, chunksize=5)]
    assert lines == [[2, 3, 4, 5, 6], [7, 8, 9, 10, 11], [12, 13]]


def test_split_by_track_keeps_each_track_in_one_split():
    frame = generate_dataset(3000, seed=2)
    train, val, test = split_by_track(frame, SplitConfig(seed=5))
    ids = [set(part["track_id"]) for part in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(train) + len(val) + len(test) == len(frame)
    tracks = frame["track_id"].nunique()
    assert [len(i) for i in ids] == [tracks - round(0.1 * tracks) - round(0.2 * tracks),
                                     round(0.1 * tracks), round(0.2 * tracks)]
    again = split_by_track(frame.sample(frac=1, random_state=1), SplitConfig(seed=5))
    assert [set(p["track_id"]) for p in again] == ids  # same seed, same split, any row order
    other = split_by_track(frame, SplitConfig(seed=6))
    assert set(other[2]["track_id"]) != ids[2]


def test_split_by_track_on_tiny_data_and_bad_fractions():
    frame = generate_dataset(5, seed=0)
    train, val, test = split_by_track(frame)
    assert len(set(train["track_id"])) >= 1 and len(set(val["track_id"])) == 1
    assert len(set(test["track_id"])) == 1
    with pytest.raises(ValenceError, match="add up to less than 1"):
        split_by_track(frame, SplitConfig(val_fraction=0.5, test_fraction=0.5))
    with pytest.raises(ValenceError, match="at least 3 distinct tracks"):
        split_by_track(frame.iloc[:1])


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300), where=st.integers(min_value=0))
def test_any_damage_loads_with_exact_counts_or_one_clear_error(tmp_path, garbage, where):
    text = csv_text(generate_dataset(6, seed=0)).encode()
    where %= len(text)
    path = write(tmp_path, text[:where] + garbage + text[where:])
    try:
        frame, report = load_dataset(path)
    except ValenceError:
        return
    assert consistent(report) and len(frame) == report.rows_kept <= 6 + garbage.count(b"\n")
    assert frame["line"].is_monotonic_increasing


@pytest.mark.skipif(not REAL_SLICE.exists(), reason="real data slice not present")
def test_real_slice_loads_with_exact_counts():
    frame, report = load_dataset(REAL_SLICE)
    assert report.sha256 == "74ac7fccaa6433e9b2b1c0af8a805a9b14278be7247b7dd88f9733880cfea416"
    assert (report.rows_read, report.rows_kept) == (19_829, 19_828)
    assert report.skipped == {"truncated row": 1}
    assert report.bad_lines == [(19_830, "truncated row: 11 of 18 fields")]
    assert report.repaired_time_signatures == 19_827
    assert frame["time_signature"].value_counts().to_dict() == {
        "4/4": 18_434, "3/4": 1_112, "5/4": 205, "1/4": 76, "0/4": 1}
    assert frame["genre"].value_counts().to_dict() == {
        "Alternative": 8_635, "Dance": 6_360, "Country": 4_162, "Movie": 408, "R&B": 144,
        "A Capella": 119}
    assert frame["track_id"].duplicated(keep=False).sum() > 0
    assert frame["line"].iloc[-1] == 19_829
    assert report.summary() == (f"loaded 19,828 of 19,829 rows from {REAL_SLICE} (skipped: "
                                f"1 truncated row; repaired 19,827 time signatures)")


# ---- issue 13: scoring input needs only the model's features ---------------------------------

def test_scoring_input_needs_only_the_features(tmp_path, songs):
    from valence.config import FEATURE_COLUMNS

    path = write(tmp_path, csv_text(songs[list(FEATURE_COLUMNS)]))
    (chunk, bad), = iter_feature_chunks(path)
    assert bad == [] and len(chunk) == 12
    assert list(chunk.columns) == [*FEATURE_COLUMNS, "line"]
    assert chunk["energy"].tolist() == songs["energy"].astype(float).tolist()
    with pytest.raises(ValenceError, match="missing required column"):  # training still needs them all
        load_dataset(path)


def test_scoring_input_carries_the_name_columns_it_has_and_allows_empty_ones(tmp_path, songs):
    from valence.config import FEATURE_COLUMNS

    songs = songs.copy()
    songs.loc[3, "artist_name"] = ""
    songs.loc[4, "track_id"] = ""
    path = write(tmp_path, csv_text(songs[["artist_name", *FEATURE_COLUMNS, "track_id"]]))
    (chunk, bad), = iter_feature_chunks(path)
    assert bad == [] and len(chunk) == 12
    assert list(chunk.columns) == ["genre", "artist_name", "track_id", *FEATURE_COLUMNS[1:], "line"]
    assert chunk["artist_name"].tolist()[3] == "" and chunk["track_id"].tolist()[4] == ""
    frame, report = load_dataset(write(tmp_path, csv_text(songs), "all.csv"))
    assert report.skipped == {"row without track_id": 1}  # training: a track_id is needed to split by track


def test_scoring_input_without_track_id_still_skips_repeated_header_lines(tmp_path, songs):
    from valence.config import FEATURE_COLUMNS

    text = csv_text(songs[list(FEATURE_COLUMNS)])
    lines = text.splitlines()
    path = write(tmp_path, "\n".join([*lines[:4], lines[0], *lines[4:]]) + "\n")
    (chunk, bad), = iter_feature_chunks(path)
    assert len(chunk) == 12 and bad == [(5, "repeated header line")]


def test_load_summary_says_1_row_not_1_rows():
    assert data.LoadReport(path="x.csv", rows_read=1, rows_kept=1).summary() == "loaded 1 of 1 row from x.csv (skipped: none)"
    assert data.LoadReport(path="x.csv", rows_read=2, rows_kept=1).summary().startswith("loaded 1 of 2 rows")


@pytest.mark.parametrize("column", ["energy", "track_id"])
def test_a_repeated_column_is_refused_naming_it(tmp_path, songs, column):
    lines = csv_text(songs).splitlines()
    text = "\n".join([lines[0] + f",{column}"] + [line + ",0.5" for line in lines[1:]]) + "\n"
    path = write(tmp_path, text)
    with pytest.raises(ValenceError, match=rf"{path}: column\(s\) {column} appear more than once"):
        load_dataset(path)
    with pytest.raises(ValenceError, match=rf"column\(s\) {column} appear more than once"):
        next(iter_feature_chunks(path))


def test_a_repeated_extra_column_is_only_ignored(tmp_path, songs):
    text = csv_text(songs.assign(comment="a", other="b")).replace(",other\n", ",comment\n", 1)
    frame, report = load_dataset(write(tmp_path, text))
    assert len(frame) == 12 and report.notes == ["ignored 2 extra column(s): comment, comment"]
