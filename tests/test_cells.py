"""Reading single cells: spreadsheet-mangled time signatures, Spotify API keys and modes, genres."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valence.data import cells
from valence.data.cells import (CLEAN, CONVERTED, REPAIRED, parse_genre, parse_key, parse_mode,
                           parse_time_signature)


@pytest.mark.parametrize("text, expected", [
    # A US-locale spreadsheet reads "N/4" as month N, day 4 and shows it d-mmm.
    ("4-Apr", "4/4"), ("4-Mar", "3/4"), ("4-May", "5/4"), ("4-Jan", "1/4"), ("4-Jun", "6/4"),
    # A day-first locale reads it as day N, month 4.
    ("03-Apr", "3/4"), ("3-Apr", "3/4"), ("05-Apr", "5/4"), ("04-Apr", "4/4"),
    # Month first, and with a year.
    ("Apr-04", "4/4"), ("Mar-04", "3/4"), ("Apr-03", "3/4"), ("4-Mar-21", "3/4"),
    ("04-Mar-2021", "3/4"), ("Mar 4, 2021", "3/4"), ("March 4", "3/4"), ("4 April 2021", "4/4"),
    # Numeric dates: ISO, both slash orders, two-digit years, a datetime at midnight.
    ("2021-03-04", "3/4"), ("2021-04-03", "3/4"), ("2021-04-05", "5/4"), ("2021-04-04", "4/4"),
    ("04/03/2021", "3/4"), ("03/04/2021", "3/4"), ("4/5/21", "5/4"), ("4.3.2021", "3/4"),
    ("2021-03-04 00:00:00", "3/4"), ("2021-05-04T00:00:00", "5/4"),
    # A date cell shown as the spreadsheet's day number: 45355 is 2024-03-04.
    ("45355", "3/4"),
    # Day-first "d/m" display of March 4.
    ("4/3", "3/4"),
])
def test_spreadsheet_dates_are_repaired_to_beats_over_four(text, expected):
    assert parse_time_signature(text) == (expected, REPAIRED)


@pytest.mark.parametrize("text, expected, how", [
    ("4/4", "4/4", CLEAN), ("3/4", "3/4", CLEAN), ("0/4", "0/4", CLEAN), ("1/4", "1/4", CLEAN),
    (" 5/4 ", "5/4", CLEAN), ("3 / 4", "3/4", REPAIRED),
    ("4", "4/4", CONVERTED), ("3", "3/4", CONVERTED), ("0", "0/4", CONVERTED), ("5.0", "5/4", CONVERTED),
])
def test_clean_and_spotify_api_time_signatures(text, expected, how):
    assert parse_time_signature(text) == (expected, how)


@pytest.mark.parametrize("text", [
    "", "abc", "6/8", "9/4", "4/4/4/4", "Apr-21", "2021-05-06", "12", "-1", "3.5", "4-Foo",
    "1e3", "99999999", "4-Apr;", "0-Apr",
])
def test_unreadable_time_signatures_are_refused(text):
    assert parse_time_signature(text)[0] is None


@pytest.mark.parametrize("text, expected, how", [
    ("C#", "C#", CLEAN), ("A", "A", CLEAN), (" G ", "G", CLEAN), ("c#", "C#", CONVERTED),
    ("Db", "C#", CONVERTED), ("0", "C", CONVERTED), ("1", "C#", CONVERTED), ("11", "B", CONVERTED),
    ("9.0", "A", CONVERTED), ("12", None, CLEAN), ("-1", None, CLEAN), ("H", None, CLEAN),
    ("", None, CLEAN),
])
def test_keys_by_name_or_spotify_pitch_class(text, expected, how):
    assert parse_key(text) == (expected, how)


@pytest.mark.parametrize("text, expected", [
    ("Major", "Major"), ("Minor", "Minor"), ("major", "Major"), (" MINOR", "Minor"),
    ("1", "Major"), ("0", "Minor"), ("1.0", "Major"), ("2", None), ("", None), ("dorian", None),
])
def test_modes_by_name_or_spotify_zero_one(text, expected):
    assert parse_mode(text)[0] == expected


def test_genres_lose_curly_apostrophes_and_surrounding_blanks():
    assert parse_genre("Children\u2019s Music") == "Children's Music"
    assert parse_genre("  Children's Music ") == "Children's Music"
    assert parse_genre("R&B") == "R&B"


# ---- issue 13: one set of spelling rules for key and mode, files and the API alike ------------

_SPELLINGS = st.text(alphabet="cCdDeEfFgGaAbBhHjmMiInNoOrR#0159+-. \t", max_size=6)


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
@given(text=_SPELLINGS)
@settings(max_examples=500, deadline=None)
def test_key_and_mode_patterns_accept_exactly_what_the_cell_parsers_read(text):
    assert (re.fullmatch(cells.KEY_PATTERN, text) is not None) == (cells.parse_key(text)[0] is not None), text
    assert (re.fullmatch(cells.MODE_PATTERN, text) is not None) == (cells.parse_mode(text)[0] is not None), text


@pytest.mark.parametrize("text", ["c#", " Db ", "bb", "B", "11", "+0", "05.0", "major", "MINOR", "1", "0.0", "-0"])
def test_spellings_the_patterns_take(text):
    read = cells.parse_key(text)[0] or cells.parse_mode(text)[0]
    assert read is not None
    assert re.fullmatch(cells.KEY_PATTERN, text) or re.fullmatch(cells.MODE_PATTERN, text)


# ---- issue 24, point 6: the time signature's pattern, for JSON bodies, reads what the cell parser reads ------

_BEATS = st.text(alphabet="0123456789/+-. \t", max_size=6)


@given(text=_BEATS)
@settings(max_examples=500, deadline=None)
def test_time_signature_pattern_takes_only_what_the_parser_reads(text):
    if re.fullmatch(cells.TIME_SIGNATURE_PATTERN, text):
        assert cells.parse_time_signature(text)[0] is not None, text


@pytest.mark.parametrize("text", ["4", " 7 ", "3.0", "+5", "0", "7/4", " 3 / 4 ", "05"])
def test_time_signature_spellings_the_pattern_takes(text):
    assert re.fullmatch(cells.TIME_SIGNATURE_PATTERN, text) and cells.parse_time_signature(text)[0] is not None


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("time_signature", 4, ("4/4", cells.CONVERTED)), ("time_signature", 7, ("7/4", cells.CONVERTED)),
    ("time_signature", 8, (None, cells.CLEAN)), ("time_signature", "4", ("4/4", cells.CONVERTED)),
    ("time_signature", "7/4", ("7/4", cells.CLEAN)), ("key", 11, ("B", cells.CONVERTED)),
    ("key", -1, (None, cells.CLEAN)), ("mode", 0, ("Minor", cells.CONVERTED)), ("mode", 1, ("Major", cells.CONVERTED)),
])
def test_parse_cell_reads_an_integer_as_its_digits(column, value, expected):
    assert cells.parse_cell(column, value) == expected == cells.parse_cell(column, str(value))
