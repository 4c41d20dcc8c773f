"""The catalog store: one interface to a scored catalog, in a SQLite file or in PostgreSQL.

A catalog is built once (`--build-catalog`, or at the end of a training run) and
then only read: every lookup is one indexed query, so a serving process holds no
catalog in memory and starts without reading the data file.
"""
import difflib
import heapq
import json
from typing import Protocol

from .config import CLASS_NAMES, ValenceError

CATALOG_FORMAT = 1  # bump when the tables' layout changes
CATALOG_FILE = "catalog.sqlite"  # <model-dir>/catalog.sqlite, the default target
SUGGESTIONS = 5
MAX_FUZZY = 60  # characters of a name compared when suggesting
MAX_FUZZY_TRACKS = 1000  # of one artist's tracks, most popular first
MAX_DIFFLIB = 20  # names difflib ranks, of those sharing the most trigrams (its ratio is slow on long names)
CLOSE_ARTISTS = 3
ARTIST_CANDIDATES = 50  # artist names ranked by difflib, of those sharing the most rare trigrams
BUILD_HINT = "python musical_valence_predictor.py --build-catalog"
# The columns of a catalog's track table, in both databases; the answer is built from them.
TRACK_COLUMNS = ("track_id", "artist_name", "track_name", "artist_key", "track_key", "popularity", "expected",
                 "prediction", "genre_predictions", "warnings", "mood", "p_sad", "p_neutral", "p_happy")
ANSWER_COLUMNS = ("track_id", "artist_name", "track_name", "popularity", "expected", "prediction",
                  "genre_predictions", "warnings", "mood", "p_sad", "p_neutral", "p_happy")
BRIEF_COLUMNS = ("track_id", "artist_name", "track_name", "genre_predictions")
BEST_FIRST = "popularity DESC, track_id"  # several tracks with one name: the most popular, then by id
assert CLASS_NAMES == ("sad", "neutral", "happy"), "the p_* columns follow the class names"


class CatalogMissing(ValenceError):
    """There is no usable catalog at the target (absent, empty, damaged or not a catalog)."""


class CatalogUnavailable(ValenceError):
    """The catalog's database cannot answer now (unreachable, restarting); asking again later may work."""


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

    def size(self):
        """Return the number of distinct tracks."""

    def is_current(self):
        """Return whether the target still holds this catalog (False once another was swapped in)."""

    def close(self):
        """Release what the store holds."""


def is_postgres(target):
    """Return whether a catalog target is a PostgreSQL URL (else it is a file path)."""
    return str(target).startswith(("postgresql://", "postgres://"))


def connect(target):
    """Return the database behind a target (a file path or a postgresql:// URL); nothing is opened yet."""
    if is_postgres(target):
        from .store_postgres import PostgresDatabase

        return PostgresDatabase(str(target))
    from .store_sqlite import SqliteDatabase

    return SqliteDatabase(target)


def open_store(target):
    """Open the catalog a target holds now; closing the store closes its database too."""
    database = connect(target)
    try:
        store = database.open()
    except BaseException:
        database.close()
        raise
    store.owns_database = True
    return store


def normalise(text):
    """Fold case and collapse surrounding and repeated whitespace, for matching names."""
    return " ".join(text.split()).casefold()


def trigrams(text):
    """Return the set of three-character pieces of a padded string."""
    padded = f"  {text} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def answer_from_row(row):
    """Return the JSON-able lookup answer of a row of ANSWER_COLUMNS."""
    track_id, artist, track, popularity, expected, prediction, genres, warnings, mood, *moods = row
    genre_predictions = json.loads(genres)
    answer = {"track_id": track_id, "artist_name": artist, "track_name": track,
              "genres": list(genre_predictions), "popularity": popularity, "expected": expected,
              "prediction": prediction, "genre_predictions": genre_predictions,
              "warnings": json.loads(warnings) if warnings else []}
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


def suggestion_keys(artist_name, track_name):
    """Return the normalised (artist, track) a suggestion search compares, cut to MAX_FUZZY characters."""
    return normalise(artist_name)[:MAX_FUZZY], normalise(track_name)[:MAX_FUZZY]


def close_artists(artist, candidates):
    """Return up to CLOSE_ARTISTS of the candidate artist names close to `artist`, best first."""
    return difflib.get_close_matches(artist, candidates, n=CLOSE_ARTISTS, cutoff=0.6)


def close_tracks(track, candidates):
    """Return the track_ids of up to SUGGESTIONS candidates close to `track`, best first.

    `candidates` are (track name, track_id) pairs of one artist, most popular first.
    """
    names = {normalise(name)[:MAX_FUZZY]: track_id for name, track_id in reversed(candidates)}  # popular wins
    grams = trigrams(track)
    shortlist = heapq.nlargest(MAX_DIFFLIB, names, key=lambda name: len(grams & trigrams(name)))
    return [names[name] for name in difflib.get_close_matches(track, shortlist, n=SUGGESTIONS, cutoff=0.5)]


def suggest(store, artist_name, track_name):
    """Return the suggestions of a store: same track name first, then close tracks of close artists."""
    artist, track = suggestion_keys(artist_name, track_name)
    same = store.same_track_name(track, SUGGESTIONS)  # right song, other artist
    found, briefs = [row[0] for row in same], {row[0]: row for row in same}
    artists = [artist] if store.has_artist(artist) else store.close_artists(artist)
    for close in artists:
        # The artist's most popular tracks are enough to find a misspelt one.
        tracks = store.artist_tracks(close, MAX_FUZZY_TRACKS)
        found.extend(close_tracks(track, [(row[2], row[0]) for row in tracks]))
        briefs.update((row[0], row) for row in tracks)
    unique = list(dict.fromkeys(found))[:SUGGESTIONS]
    return [brief_from_row(briefs[track_id]) for track_id in unique]
