"""Read one categorical cell (key, mode, time signature, genre) in the spellings users' files have.

Each parser takes one string and is applied to a column's distinct values only,
so the cost does not grow with the number of rows.
"""
import datetime
import re

from valence.config import KEYS

# Clean (already in the Kaggle spelling), repaired (a spreadsheet's date), converted (Spotify API).
CLEAN, REPAIRED, CONVERTED = "clean", "repaired", "converted"

_KEY_NAMES = {k.lower(): k for k in KEYS} | {"db": "C#", "eb": "D#", "gb": "F#", "ab": "G#", "bb": "A#"}
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
# Day-first locales read "3/4" as the 3rd of April, so April is the one month name
# that appears in other languages (French, Spanish, Portuguese, Italian; Dutch and German
# spell it as English does).
_APRIL = {"avr", "avril", "abr", "abril", "aprile"}
_WEEKDAY = re.compile(r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", re.IGNORECASE)
_MIDNIGHT = re.compile(r"(?:[T ]0?0:00(?::00(?:\.0+)?)?|\s+12:00(?::00)?\s*AM)$", re.IGNORECASE)
_EXCEL_EPOCH = datetime.date(1899, 12, 30)
_EXCEL_SERIALS = range(30_000, 60_000)  # spreadsheet day numbers of the years 1982 to 2064
_MAX_BEATS = 7  # Spotify: "time signatures of 3/4 to 7/4" (plus 0 and 1 in the Kaggle data)


def _any_case(word):
    """Return a regular expression matching `word` in any case, without flags (JSON Schema has none)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)  # "#" is no metacharacter


# What parse_key and parse_mode read, as patterns: the API checks a song's key and mode with them,
# so a JSON body and a CSV cell follow one set of spelling rules (blanks only as spaces or tabs).
# A number is Spotify's: key 0 (C) to 11 (B), mode 1 (Major) or 0 (Minor).
_ZERO, _POINT = r"[+-]?0+", r"(?:\.0*)?"
# The end: blanks, then any newlines. A JSON Schema validator in Python reads "$" as "at the end or before a
# final newline", pydantic (Rust) as "at the end"; with the newlines matched, both take the same strings (and
# the parsers strip them).
_END = r"[ \t]*\n*$"
KEY_PATTERN = (r"^[ \t]*(?:" + "|".join(sorted(map(_any_case, _KEY_NAMES), key=len, reverse=True))
               + rf"|(?:{_ZERO}|\+?0*(?:1[01]|[1-9])){_POINT}){_END}")
MODE_PATTERN = rf"^[ \t]*(?:{_any_case('major')}|{_any_case('minor')}|(?:{_ZERO}|\+?0*1){_POINT}){_END}"
# The time signature as a program writes it: "N/4", or Spotify's beat count as text ("4", "4.0"). A
# spreadsheet's date rendering of "N/4" (4-Mar, 03/04/2021) is a file's accident, repaired in files only.
TIME_SIGNATURE_PATTERN = rf"^[ \t]*(?:[0-7][ \t]*/[ \t]*4|(?:{_ZERO}|\+?0*[1-7]){_POINT}){_END}"
# Spotify's own JSON numbers: key 0 (C) to 11 (B; -1 is its "no key detected", which no model can read),
# mode 1 (Major) or 0 (Minor), time_signature 3 to 7 (the Kaggle data also has 0 and 1). A JSON integer is
# read as the CSV cell of its digits is, so both paths take the same values.
NUMBER_RANGES = {"key": (0, 11), "mode": (0, 1), "time_signature": (0, 7)}


def _integer(text):
    """Return `text` as an int when it spells one ("3", "3.0"), else None."""
    return int(float(text)) if _INTEGER.fullmatch(text) else None


def parse_key(text):
    """Return (key name in config.KEYS or None, how it was read)."""
    text = text.strip()
    name = _KEY_NAMES.get(text.lower())
    if name is not None:
        return name, CLEAN if name == text else CONVERTED
    number = _integer(text)
    if number is not None and 0 <= number < len(KEYS):
        return KEYS[number], CONVERTED  # Spotify's API: pitch class 0 = C ... 11 = B
    return None, CLEAN


def parse_mode(text):
    """Return ("Major" / "Minor" or None, how it was read); Spotify's API says 1 = Major."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("major", "minor"):
        name = lowered.capitalize()
        return name, CLEAN if name == text else CONVERTED
    return {1: ("Major", CONVERTED), 0: ("Minor", CONVERTED)}.get(_integer(text), (None, CLEAN))


def parse_genre(text):
    """Return the genre with surrounding blanks removed and curly apostrophes made straight."""
    return text.strip().replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")


def _month(token):
    """Return the month number a (possibly abbreviated) month name means, or None."""
    token = token.lower()
    if len(token) < 3:
        return None
    if token in _APRIL:
        return 4
    return next((i for i, name in enumerate(_MONTHS, 1) if name.startswith(token)), None)


def _beats(a, b):
    """Return the beat count of a date whose month and day are a and b (either order), or None.

    A spreadsheet reads "N/4" as a date: month N, day 4 (US) or day N, month 4
    (day-first). Either way one of the pair is the denominator 4 and the other the beats.
    """
    if not (1 <= a <= 31 and 1 <= b <= 31):
        return None
    beats = b if a == 4 else a if b == 4 else None
    return beats if beats is not None and beats <= _MAX_BEATS else None


def _date_beats(text):
    """Return the beat count of a spreadsheet date rendering of "N/4", or None."""
    text = _WEEKDAY.sub("", _MIDNIGHT.sub("", text))  # a datetime at midnight; a long date's weekday
    if re.fullmatch(r"\d{1,2}\.\d{1,2}\.", text):  # 4.3. (a German short date, no year)
        return _beats(*map(int, text[:-1].split(".")))
    if re.fullmatch(r"(19|20)\d{6}", text):  # 20210304 (yyyymmdd)
        return _beats(int(text[4:6]), int(text[6:]))
    if re.search(r"[^A-Za-z0-9/\-., ]", text):
        return None
    words = re.findall(r"[A-Za-z]+", text)
    numbers = re.findall(r"\d+", text)
    if len(words) == 1:  # 4-Apr, 03-Apr, Apr-04, 4-Mar-21, Apr 4, 2021
        month = _month(words[0])
        day = next((i for i, n in enumerate(numbers) if len(n) <= 2), None)
        years = numbers[:day] + numbers[day + 1:] if day is not None else numbers
        if month is None or day is None or len(years) > 1 or any(len(y) not in (2, 4) for y in years):
            return None
        return _beats(month, int(numbers[day]))
    if words or len(numbers) not in (2, 3):
        return None
    if len(numbers) == 2:  # 4/3 (a day-first rendering of 3/4)
        return _beats(*map(int, numbers)) if re.fullmatch(r"\d{1,2}\s*[/-]\s*\d{1,2}", text) else None
    if len(numbers[0]) == 4:  # 2021-03-04
        return _beats(int(numbers[1]), int(numbers[2]))
    if len(numbers[2]) in (2, 4):  # 03/04/2021, 4.3.21
        return _beats(int(numbers[0]), int(numbers[1]))
    return None


def parse_time_signature(text):
    """Return ("N/4" or None, how it was read)."""
    text = text.strip()
    clean = re.fullmatch(r"(\d)\s*/\s*4", text)
    if clean and int(clean[1]) <= _MAX_BEATS:
        canonical = f"{clean[1]}/4"
        return canonical, CLEAN if canonical == text else REPAIRED
    number = _integer(text)
    if number is not None:
        if 0 <= number <= _MAX_BEATS:
            return f"{number}/4", CONVERTED  # Spotify's API: time_signature 3 means 3/4
        if number in _EXCEL_SERIALS:  # a date cell shown as its day number
            date = _EXCEL_EPOCH + datetime.timedelta(days=number)
            beats = _beats(date.month, date.day)
            return (f"{beats}/4", REPAIRED) if beats else (None, CLEAN)
    beats = _date_beats(text)
    return (f"{beats}/4", REPAIRED) if beats else (None, CLEAN)


PARSERS = {"key": parse_key, "mode": parse_mode, "time_signature": parse_time_signature}


def parse_cell(column, value):
    """Return (key, mode or time signature in the Kaggle spelling, or None; how it was read).

    `value` is a cell's text or a JSON integer (Spotify's numbers); an integer is read as its digits.
    """
    return PARSERS[column](str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
