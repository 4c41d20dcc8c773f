"""The catalog in a SQLite file: written once into a temporary file, then only read.

Readers open the file read-only and `immutable` (no locks, no journal checks): a
catalog file is never changed in place, only replaced by a rename, and an open
connection keeps reading the file it opened until it is closed.
"""
import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

import numpy as np

from valence.catalog import sql
from valence.config import NAME_RULE, ValenceError
from valence.model.bundlefile import format_number, format_problem
from valence.catalog.sql import BEST_FIRST, BUILD_HINT, CATALOG_FORMAT, LISTING_COLUMNS, TRACK_COLUMNS
from valence.catalog.sql import CatalogMissing

APP_ID = "valence-catalog"
RAREST_GRAMS = 20  # of the query's trigrams, the rarest are enough to find close names
WHOLE_CHECK_BYTES = 256 * 2**20  # a catalog file up to this size is checked whole at open (about 0.3 s)
# Checked at open whatever the file's size: they grow with the artists, not with the tracks and listings.
SMALL_TABLES = ("meta", "artists", "artist_grams_data", "artist_grams_idx", "artist_grams_docsize", "artist_grams_config")
# A listing's part of its track's row, kept in a scratch file beside the catalog until the build groups the
# listings by track: names and warnings as text, the numbers as one blob of NUMBERS (float64, NaN for none),
# bound and read back as one value instead of eight.
SCORED = ("track_id", "genre", "artist_name", "track_name", "warnings", "numbers")
READ_BATCH = 20_000  # scored listings read back at a time, sorted by track: bounds the grouping's memory
NUMBERS = ("valence", "prediction", "p_sad", "p_neutral", "p_happy", "sigma", "popularity", "unseen")
TRACKS_SCHEMA = """
CREATE TABLE tracks (
    track_id TEXT PRIMARY KEY, artist_name TEXT NOT NULL, track_name TEXT NOT NULL,
    artist_key TEXT NOT NULL, track_key TEXT NOT NULL, popularity REAL, expected REAL, prediction REAL,
    genre_predictions TEXT NOT NULL, warnings TEXT, mood TEXT, p_sad REAL, p_neutral REAL, p_happy REAL,
    interval_sigma REAL, unseen_artist INTEGER
) WITHOUT ROWID;
"""
SCHEMA = f"""{TRACKS_SCHEMA}
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE listings ({', '.join(c + (' INTEGER PRIMARY KEY' if c == 'seq' else '') for c in LISTING_COLUMNS)});
CREATE TABLE scratch.scored (seq INTEGER PRIMARY KEY, {', '.join(SCORED)});
"""
# Built once the rows are in: an index is one sort of its keys, faster than keeping it in order row by row.
LISTINGS_INDEX = "CREATE INDEX listings_by_track ON listings (track_id, seq)"
INDEXES = f"""
CREATE INDEX tracks_by_names ON tracks (artist_key, track_key, {BEST_FIRST});
CREATE INDEX tracks_by_track_name ON tracks (track_key, {BEST_FIRST});
CREATE TABLE artists (id INTEGER PRIMARY KEY, artist_key TEXT NOT NULL UNIQUE, popularity REAL);
INSERT INTO artists (artist_key, popularity)
    SELECT artist_key, max(popularity) FROM tracks GROUP BY artist_key ORDER BY artist_key;
CREATE VIRTUAL TABLE artist_grams USING fts5 (name, content='', detail='none', tokenize='trigram case_sensitive 1');
INSERT INTO artist_grams (rowid, name) SELECT id, '  ' || artist_key || ' ' FROM artists;
CREATE VIRTUAL TABLE artist_gram_counts USING fts5vocab (artist_grams, 'row');
"""


class SqliteDatabase:
    """A catalog file; open() reads the catalog it holds now."""

    def __init__(self, path):
        self.path = Path(path)
        self.shown = str(self.path)  # how messages name it

    def __repr__(self):
        return f"SqliteDatabase({str(self.path)!r})"

    def signature(self):
        """Return what identifies the file now at the path (a rebuild renames a new file over it), or None."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns

    def open(self):
        """Open the catalog file read-only; raise CatalogMissing saying what to run when it is not usable."""
        hint = f"build it with: {BUILD_HINT} --catalog {self.path}"
        for _attempt in range(5):
            signature = self.signature()
            if signature is None:
                raise CatalogMissing(f"no catalog at {self.path}; {hint}")
            if self.path.is_dir():
                raise CatalogMissing(f"{self.path} is a directory, not a catalog file")
            if signature[2] == 0:
                raise CatalogMissing(f"the catalog {self.path} is empty; {hint}")
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro&immutable=1"
            try:
                connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.Error as error:
                raise CatalogMissing(f"cannot open the catalog {self.path}: {error}") from None
            try:
                meta = read_meta(connection, self.path, signature[2], hint)
            except BaseException:
                connection.close()
                raise
            if self.signature() == signature:  # else it was replaced while opening: open the new one
                return SqliteStore(self, connection, meta, signature)
            connection.close()
        raise CatalogMissing(f"the catalog {self.path} keeps changing; try again")

    def close(self):
        """Nothing to release: each store holds its own connection."""


def read_meta(connection, path, size, hint):
    """Return a catalog file's meta table after checking that it is a whole catalog of this format."""
    try:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        if pages * page_size != size:
            raise CatalogMissing(f"the catalog {path} is damaged ({size:,} bytes, expected "
                                 f"{pages * page_size:,}: truncated?); {hint}")
        meta = dict(connection.execute("SELECT key, value FROM meta"))
        problems = check_pages(connection, size)
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")
    except sqlite3.DatabaseError as error:
        what = "the catalog {} is damaged" if "malformed" in str(error) else "{} is not a catalog of this tool"
        raise CatalogMissing(f"{what.format(path)} ({error}); {hint}") from None
    if meta.get("app") != APP_ID:
        raise CatalogMissing(f"{path} is a SQLite file but not a catalog of this tool; {hint}")
    again = f"rebuild it with: {BUILD_HINT} --catalog {path}"
    problem = format_problem(format_number(meta.get("format")), CATALOG_FORMAT, "catalog", again,
                             f"serve it with that version, or {again}")
    problem = problem or sql.name_rule_problem(meta, again)
    if problem:
        raise CatalogMissing(f"{path} {problem}")
    if int(meta.get("tracks", 0)) == 0:
        raise CatalogMissing(f"the catalog {path} holds no tracks; {hint}")
    return meta


def check_pages(connection, size):
    """Return SQLite's quick_check of a catalog's pages: ["ok"], or the first problems found.

    Pages overwritten inside a file whose header is intact: a file of up to WHOLE_CHECK_BYTES has
    every b-tree walked at open (0.13 s for 100 MB once cached), so it is never served damaged. A
    larger one would make each worker's start and each swap wait seconds (the walk grows with the
    file), so only its small tables (meta, artists and their trigram index) are walked; the build
    walks the whole file before renaming it into place, and a page of the large tables damaged
    later fails the first query that reads it: that store answers 503 and the process is not ready
    until the catalog is replaced (SqliteStore._rows).
    """
    if size <= WHOLE_CHECK_BYTES:
        return [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    problems = []
    for table in SMALL_TABLES:
        problems += [row[0] for row in connection.execute(f"PRAGMA quick_check({table})") if row[0] != "ok"]
    return problems or ["ok"]


class SqliteStore(sql.SqlStore):
    """A catalog file opened read-only: lookups are indexed queries, suggestions use its trigram index."""

    def __init__(self, database, connection, meta, signature):
        super().__init__(database, meta, signature, ("tracks", "artists", "listings"))
        self.connection = connection
        self.lock = threading.Lock()  # one connection, shared by the threads of a threaded worker
        self.broken = None  # why a query on this file failed: the file cannot answer, and is not served again

    def _rows(self, sql, params=()):
        """Run a query and return its rows; a damaged file is a CatalogMissing."""
        with self.lock:
            try:
                return self.connection.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                self.broken = f"the catalog {self.database.path} cannot be read ({error}); rebuild it with: {BUILD_HINT}"
                raise CatalogMissing(self.broken) from None

    def artist_candidates(self, artist_key):
        """Return the artist names that share the most of the rarest trigrams of `artist_key` (a shortlist)."""
        grams = sorted(sql.trigrams(artist_key))
        counts = dict(self._rows(f"SELECT term, doc FROM artist_gram_counts WHERE term IN "
                                 f"({', '.join('?' * len(grams))})", grams))
        rarest = sorted(counts, key=counts.get)[:RAREST_GRAMS]
        if not rarest:
            return []
        ids = [self._rows("SELECT rowid FROM artist_grams WHERE artist_grams MATCH ?", (_phrase(gram),))
               for gram in rarest]
        found, hits = np.unique(np.array([row[0] for rows in ids for row in rows]), return_counts=True)
        top = found[np.lexsort((found, -hits))][:sql.ARTIST_CANDIDATES].tolist()
        return [row[0] for row in self._rows(f"SELECT artist_key FROM artists WHERE id IN "
                                             f"({', '.join('?' * len(top))})", top)]

    def artists_containing(self, text, most):
        """Return (artist, popularity of its best track) of the artists whose name contains text, by name."""
        grams = " AND ".join(_phrase(text[i:i + 3]) for i in range(len(text) - 2))
        return self._rows("SELECT artist_key, popularity FROM artists WHERE id IN (SELECT rowid FROM artist_grams "
                          "WHERE artist_grams MATCH ?) AND instr(artist_key, ?) > 0 ORDER BY id LIMIT ?",
                          (grams, text, most))

    def close(self):
        """Close the connection."""
        self.connection.close()


def _phrase(gram):
    """Return an FTS5 query that matches one trigram exactly."""
    return '"' + gram.replace('"', '""') + '"'


def scratch_path(path, part):
    """Return the path of a build's scratch file `part` beside the file it writes, named as that file's temporary
    is (fileio.atomic_path), so that a killed build's scratch is removed with its temporary."""
    path = Path(path)
    return path.with_name(f"{path.name.removesuffix('.tmp')}-{part}.tmp")


def _bulk_connection(path):
    """Open a new file for bulk writes: it is renamed into place or read by the build once complete, so no
    journal and no syncs (the rename's caller syncs the catalog)."""
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -65536"):
        connection.execute(f"PRAGMA {pragma}")
    return connection


class SqliteWriter:
    """Write a new catalog file: listings as they come, then one row per track, then indexes.

    The listings' scored parts go to a scratch file beside it (scored_path), which the processes that group
    them by track read once it is complete (end_listings); their tracks come back as files of their own,
    copied in order by add_tracks_from.

    A `staged` file is read once, table by table, by the copy into PostgreSQL, which builds its own indexes
    (postgres.publish): it gets neither indexes nor the trigram table, and its pages are not checked (about
    1 s of a 232,725-row build's 6 to 7 s)."""

    def __init__(self, path, staged=False):
        self.path = Path(path)
        self.staged = staged
        self.shown = str(self.path)  # how messages name it
        self.scored_path = scratch_path(self.path, "scored")
        self.connection = _bulk_connection(self.path)
        try:
            self.connection.execute("ATTACH DATABASE ? AS scratch", (str(self.scored_path),))
            for pragma in ("journal_mode = OFF", "synchronous = OFF"):
                self.connection.execute(f"PRAGMA scratch.{pragma}")
            self.connection.executescript(SCHEMA)
            self.connection.execute("BEGIN")  # one transaction for the bulk inserts
        except BaseException:
            self.close()
            raise

    def add_listings(self, listings, scored):
        """Store a chunk's listings (rows of LISTING_COLUMNS) and their scored parts (seq, then SCORED)."""
        self.connection.executemany(f"INSERT INTO listings VALUES ({', '.join('?' * len(LISTING_COLUMNS))})",
                                    listings)
        self.connection.executemany(f"INSERT INTO scored VALUES ({', '.join('?' * (1 + len(SCORED)))})", scored)

    def end_listings(self):
        """Write the listings and their scored parts out: the scored file is complete for its readers."""
        self.connection.execute("COMMIT")

    def index_listings(self):
        """Index the listings by track (a staged file: nothing)."""
        if not self.staged:
            self.connection.executescript(f"BEGIN; {LISTINGS_INDEX}; COMMIT;")

    def add_tracks_from(self, part_path):
        """Copy in the tracks of a file that write_tracks wrote (each file's tracks after the last's)."""
        self.connection.execute("ATTACH DATABASE ? AS part", (str(part_path),))
        try:
            self.connection.executescript("BEGIN; INSERT INTO main.tracks SELECT * FROM part.tracks; COMMIT;")
        finally:
            self.connection.execute("DETACH DATABASE part")

    def finish(self, meta):
        """Index the tracks, record the meta data, check the file and close it (a staged file: the meta data)."""
        self.connection.execute("DETACH DATABASE scratch")
        self.scored_path.unlink()
        meta = {"app": APP_ID, "format": str(CATALOG_FORMAT), "name_rule": str(NAME_RULE), **meta}
        self.connection.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        if self.staged:
            self.close()
            return
        self.connection.executescript(f"BEGIN; {INDEXES}; COMMIT;")
        self.connection.execute("PRAGMA optimize")
        # Readers of a large file check only its small tables at open (check_pages): the whole file is
        # checked here, once, before it can be renamed into place.
        problems = [row[0] for row in self.connection.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise ValenceError(f"the catalog written to {self.path} fails SQLite's check ({problems[0]}); "
                               "it is not used")
        self.close()

    def close(self):
        """Close the connection and remove the scored file (an unfinished catalog is the caller's to delete)."""
        self.connection.close()
        self.scored_path.unlink(missing_ok=True)


def scored_by_track(scored_path, low=None, high=None):
    """Yield lists of the scored listings (rows of SCORED) whose track_id is from `low` (None: the first) up to,
    not including, `high` (None: the last), grouped by track_id and in file order within a track; a track's
    listings may continue in the next list."""
    bounds = [(low, "track_id >= ?"), (high, "track_id < ?")]
    where = " AND ".join(test for bound, test in bounds if bound is not None) or "1"
    uri = f"file:{urllib.parse.quote(str(Path(scored_path).resolve()))}?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        cursor = connection.execute(f"SELECT {', '.join(SCORED)} FROM scored WHERE {where} ORDER BY track_id, seq",
                                    [bound for bound, _ in bounds if bound is not None])
        while rows := cursor.fetchmany(READ_BATCH):
            yield rows
    finally:
        connection.close()


def write_tracks(part_path, batches):
    """Write the tracks (rows of TRACK_COLUMNS, in track_id order) of each batch to a new file; return how many."""
    connection = _bulk_connection(part_path)
    try:
        connection.executescript(TRACKS_SCHEMA)
        connection.execute("BEGIN")
        count = 0
        for rows in batches:
            connection.executemany(f"INSERT INTO tracks VALUES ({', '.join('?' * len(TRACK_COLUMNS))})", rows)
            count += len(rows)
        connection.execute("COMMIT")
    finally:
        connection.close()
    return count
