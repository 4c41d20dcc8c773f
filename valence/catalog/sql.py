"""What both catalog databases share: the store's interface, its errors, the tables' columns, and the
lookups, suggestions and search that the same SQL answers in SQLite and PostgreSQL."""
import json
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from valence.catalog.names import (ARTIST_CUTOFF, CLOSE_ARTISTS, MAX_FUZZY, MAX_FUZZY_TRACKS, SEARCH_RESULTS, SUGGESTIONS,
                      TRACK_CUTOFF, closest, normalise, rank_pairs)
from valence.config import CATEGORICAL_FEATURES, CLASS_NAMES, FEATURE_COLUMNS, NAME_RULE, ValenceError

CATALOG_FORMAT = 4  # bump when the tables' layout changes (3: artist_key and track_key by name rule 2, recorded;
# 4: honest predictions of labelled tracks, with each one's interval parts, interval_sigma and unseen_artist)
CATALOG_FILE = "catalog.sqlite"  # <model-dir>/catalog.sqlite, the default target
SEARCH_ARTISTS = 1000  # artists a search looks at, of those starting with and those containing the text
ARTIST_CANDIDATES = 50  # artist names ranked for a suggestion: those the trigram index finds closest
BUILD_HINT = "python musical_valence_predictor.py --build-catalog"
# The columns of a catalog's track table, in both databases; the answer is built from them.
TRACK_COLUMNS = ("track_id", "artist_name", "track_name", "artist_key", "track_key", "popularity", "expected",
                 "prediction", "genre_predictions", "warnings", "mood", "p_sad", "p_neutral", "p_happy",
                 "interval_sigma", "unseen_artist")
ANSWER_COLUMNS = ("track_id", "artist_name", "track_name", "popularity", "expected", "prediction",
                  "genre_predictions", "warnings", "mood", "p_sad", "p_neutral", "p_happy", "interval_sigma",
                  "unseen_artist")
BRIEF_COLUMNS = ("track_id", "artist_name", "track_name", "genre_predictions")
# A catalog's listings (one per row of the data file): the features a track's explanation needs.
LISTING_COLUMNS = ("track_id", "seq", *FEATURE_COLUMNS, "artist_name")
BEST_FIRST = "popularity DESC, track_id"  # several tracks with one name: the most popular, then by id
assert CLASS_NAMES == ("sad", "neutral", "happy"), "the p_* columns follow the class names"


class CatalogMissing(ValenceError):
    """There is no usable catalog at the target (absent, empty, damaged or not a catalog)."""


class CatalogUnavailable(ValenceError):
    """The catalog's database cannot answer now (unreachable, restarting); asking again later may work.

    Its message is what a client may read; `detail`, the real reason (host, port, user,
    the server's words), goes to the server's log only.
    """

    def __init__(self, message, detail=None):
        super().__init__(message)
        self.detail = detail or message


class CatalogStore(Protocol):
    """One built catalog, opened for reading; it keeps answering from that catalog until closed."""

    model_version: str  # the model the catalog was scored with
    meta: dict  # tracks, rows, built_at, data file name and sha256, format

    def by_track_id(self, track_id):
        """Return the answer for a track_id, or None."""

    def by_names(self, artist_name, track_name):
        """Return the answer for the best-matching track with its other_matches, or None."""

    def suggest(self, artist_name, track_name):
        """Return up to SUGGESTIONS known tracks whose names are close to the ones asked for."""

    def search(self, query, limit):
        """Return up to `limit` songs for a partly typed artist or track name, best first."""

    def song_rows(self, track_id):
        """Return the features of a track's listings (one row per genre) as a frame, or None."""

    def size(self):
        """Return the number of distinct tracks."""

    def is_current(self):
        """Return whether the target still holds this catalog (False once another was swapped in)."""

    def close(self):
        """Release what the store holds."""


class SqlStore:
    """The lookups both databases answer alike: SQL over a catalog's tracks, artists and listings tables.

    A subclass sets PARAM (its driver's placeholder) and implements _rows(query, params), the
    trigram searches (artist_candidates, artists_containing) and close().
    """

    PARAM = "?"
    owns_database = False

    def __init__(self, database, meta, signature, tables):
        self.database, self.meta, self.signature = database, meta, signature
        self.model_version = meta["model_version"]
        self.tracks, self.artists, self.listings = tables
        self._answer = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM {self.tracks}"
        self._brief = f"SELECT {', '.join(BRIEF_COLUMNS)} FROM {self.tracks}"

    def by_track_id(self, track_id):
        """Return the answer for a track_id, or None."""
        rows = self._rows(f"{self._answer} WHERE track_id = {self.PARAM}", (track_id,))
        return answer_from_row(rows[0]) if rows else None

    def by_names(self, artist_name, track_name):
        """Return the answer for the best-matching track with its other_matches, or None."""
        p = self.PARAM
        rows = self._rows(f"{self._answer} WHERE artist_key = {p} AND track_key = {p} ORDER BY {BEST_FIRST}",
                          (normalise(artist_name), normalise(track_name)))
        return names_answer(rows)

    def suggest(self, artist_name, track_name):
        """Return up to SUGGESTIONS known tracks whose names are close to the ones asked for."""
        return suggest(self, artist_name, track_name)

    def search(self, query, limit=SEARCH_RESULTS):
        """Return up to `limit` songs for a partly typed artist or track name, best first."""
        return search(self, query, limit)

    def same_track_name(self, track_key, limit):
        """Return rows of BRIEF_COLUMNS of the tracks with this name, best first."""
        p = self.PARAM
        return self._rows(f"{self._brief} WHERE track_key = {p} ORDER BY {BEST_FIRST} LIMIT {p}", (track_key, limit))

    def artist_tracks(self, artist_key, limit):
        """Return rows of BRIEF_COLUMNS of an artist's tracks, best first."""
        p = self.PARAM
        return self._rows(f"{self._brief} WHERE artist_key = {p} ORDER BY {BEST_FIRST} LIMIT {p}", (artist_key, limit))

    def has_artist(self, artist_key):
        """Return whether the catalog has a track by this (normalised) artist."""
        return bool(self._rows(f"SELECT 1 FROM {self.artists} WHERE artist_key = {self.PARAM}", (artist_key,)))

    def song_rows(self, track_id):
        """Return the features of a track's listings (one row per genre) as a frame, or None."""
        return song_frame(self._rows(f"SELECT {', '.join(LISTING_COLUMNS)} FROM {self.listings} "
                                     f"WHERE track_id = {self.PARAM} ORDER BY seq", (track_id,)))

    def artists_starting(self, prefix, most):
        """Return (artist, popularity of its best track) of the artists whose name starts with prefix, by name."""
        p = self.PARAM
        return self._rows(f"SELECT artist_key, popularity FROM {self.artists} WHERE artist_key >= {p} "
                          f"AND artist_key < {p} ORDER BY artist_key LIMIT {p}", (prefix, prefix_end(prefix), most))

    def tracks_starting(self, prefix, limit):
        """Return rows of BRIEF_COLUMNS of the tracks whose name starts with prefix, by name then best first."""
        p = self.PARAM
        return self._rows(f"{self._brief} WHERE track_key >= {p} AND track_key < {p} "
                          f"ORDER BY track_key, {BEST_FIRST} LIMIT {p}", (prefix, prefix_end(prefix), limit))

    def size(self):
        """Return the number of distinct tracks."""
        return int(self.meta["tracks"])

    def is_current(self):
        """Return whether the target still holds this catalog (False once another was swapped in)."""
        return self.database.signature() == self.signature


def name_rule_problem(meta, again):
    """Return why a catalog's names cannot be matched by this version (its meta's name_rule is not
    config.NAME_RULE: its artist_key and track_key were folded by another rule), or None."""
    found = meta.get("name_rule", "1")  # a catalog that records none folded names by rule 1
    if found == str(NAME_RULE):
        return None
    return (f"matches names by name rule {str(found)[:40]!r}, not rule {NAME_RULE} that this version uses "
            f"(Unicode NFKC, case folded, whitespace collapsed), so names spelt another way would silently miss: "
            f"{again}")


def is_postgres(target):
    """Return whether a catalog target is a PostgreSQL URL (else it is a file path)."""
    return str(target).startswith(("postgresql://", "postgres://"))


def shown_target(target):
    """Return a target as the command line's messages and the server's log show it: a URL without its password
    (neither in its user part nor as a password=... parameter); answers to clients never show a URL."""
    target = str(target)
    if not is_postgres(target):
        return target
    parts = urlsplit(target)
    query = "&".join(pair for pair in parts.query.split("&") if pair and pair.split("=", 1)[0].lower() != "password")
    netloc = parts.netloc
    if parts.password is not None:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def trigrams(text):
    """Return the set of three-character pieces of a padded string."""
    padded = f"  {text} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def answer_from_row(row):
    """Return the JSON-able lookup answer of a row of ANSWER_COLUMNS."""
    track_id, artist, track, popularity, expected, prediction, genres, warnings, mood, *moods, sigma, unseen = row
    genre_predictions = json.loads(genres)
    answer = {"track_id": track_id, "artist_name": artist, "track_name": track,
              "genres": list(genre_predictions), "popularity": popularity, "expected": expected,
              "prediction": prediction, "genre_predictions": genre_predictions,
              "warnings": json.loads(warnings) if warnings else []}
    if prediction is not None:  # what the interval at a caller's level is made of (Intervals.bounds)
        answer["interval_parts"] = (float(sigma), int(unseen))
    if mood is not None:
        answer["mood"] = mood
        answer["mood_probabilities"] = dict(zip(CLASS_NAMES, moods))
    return answer


def brief_from_row(row):
    """Return the short form of a track (a row of BRIEF_COLUMNS) used in match and suggestion lists."""
    track_id, artist, track, genres = row
    return {"track_id": track_id, "artist_name": artist, "track_name": track, "genres": list(json.loads(genres))}


def names_answer(rows):
    """Return the answer of the first of the rows (ANSWER_COLUMNS, best first) with the others as other_matches."""
    if not rows:
        return None
    answer = answer_from_row(rows[0])
    answer["other_matches"] = [brief_from_row((row[0], row[1], row[2], row[6])) for row in rows[1:]]
    return answer


def suggest(store, artist_name, track_name):
    """Return a store's suggestions, as the in-memory catalog ranks them (valence.catalog.names's closest, rank_pairs).

    The same track name by other artists, then the close track names of the artist (or of
    the artists closest to a misspelt one, among the candidates the store's trigram index
    finds); closest pair of names first.
    """
    artist, track = normalise(artist_name)[:MAX_FUZZY], normalise(track_name)[:MAX_FUZZY]
    same = store.same_track_name(track, SUGGESTIONS)  # right song, other artist
    found, rows = [row[0] for row in same], {row[0]: row for row in same}
    if store.has_artist(artist):
        artists = [artist]
    else:
        candidates = sorted(store.artist_candidates(artist))  # ties go to the first name, as in the catalog
        close = closest(artist, [name[:MAX_FUZZY] for name in candidates], CLOSE_ARTISTS, ARTIST_CUTOFF)
        artists = [candidates[position] for position in close]
    for close_artist in artists:
        first = {}  # one track per name: the most popular
        for row in store.artist_tracks(close_artist, MAX_FUZZY_TRACKS):
            first.setdefault(normalise(row[2])[:MAX_FUZZY], row)
        names = list(first)
        for position in closest(track, names, SUGGESTIONS, TRACK_CUTOFF):
            found.append(first[names[position]][0])
            rows[found[-1]] = first[names[position]]
    found = list(dict.fromkeys(found))
    pairs = [(normalise(rows[t][1])[:MAX_FUZZY], normalise(rows[t][2])[:MAX_FUZZY]) for t in found]
    return [brief_from_row(rows[found[position]]) for position in rank_pairs(artist, track, pairs)[:SUGGESTIONS]]


def search(store, query, limit=SEARCH_RESULTS):
    """Return up to `limit` songs for a partly typed artist or track name, as the in-memory catalog's search.

    Artists whose name starts with the query come first, then those containing it (three
    characters or more), the more popular first; their songs one artist after another; then
    tracks whose name starts with it.
    """
    text = normalise(query)[:MAX_FUZZY]
    if not text:
        return []
    artists = store.artists_starting(text, SEARCH_ARTISTS)
    if len(text) >= 3:
        artists += [row for row in store.artists_containing(text, SEARCH_ARTISTS) if not row[0].startswith(text)]
    artists.sort(key=lambda row: (not row[0].startswith(text), -row[1]))
    lists = [store.artist_tracks(name, limit) for name, _popularity in artists[:limit]]
    found = [rows[depth] for depth in range(limit) for rows in lists if depth < len(rows)][:limit]
    seen = {row[0] for row in found}
    for row in store.tracks_starting(text, limit + len(found)):
        if len(found) >= limit:
            break
        if row[0] not in seen:
            found.append(row)
            seen.add(row[0])
    return [brief_from_row(row) for row in found[:limit]]


def prefix_end(prefix):
    """Return the least string after every string that starts with `prefix` (codepoint order)."""
    last = ord(prefix[-1]) + 1
    if last > 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(0xE000 if 0xD800 <= last < 0xE000 else last)  # surrogates cannot be stored


def song_frame(rows):
    """Return a track's listings (rows of LISTING_COLUMNS) as the features frame a predictor takes, or None."""
    if not rows:
        return None
    import pandas as pd

    frame = pd.DataFrame([row[2:] for row in rows], columns=[*FEATURE_COLUMNS, "artist_name"])
    return frame.astype({column: str for column in (*CATEGORICAL_FEATURES, "artist_name")})
