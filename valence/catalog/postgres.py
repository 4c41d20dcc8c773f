"""The catalog in PostgreSQL: new tables per build, swapped in by one transaction; a pool per process.

Each build fills tables of its own (`valence_tracks_<generation>`, COPY) and then
points the one-row table `valence_catalog` at them in one transaction, so readers
see the old catalog or the new one, never half of one. The previous generation is
kept, so a process still serving the previous model keeps a catalog scored with it.
"""
import contextlib
import json
import logging
import os
import re
import sqlite3
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from valence.catalog import sql
from valence.config import NUMERIC_FEATURES, ValenceError
from valence.model.bundlefile import format_number, format_problem
from valence.catalog.sql import BEST_FIRST, BUILD_HINT, CATALOG_FORMAT, LISTING_COLUMNS, TRACK_COLUMNS
from valence.catalog.sql import CatalogMissing, CatalogUnavailable
from valence.catalog.sql import shown_target as safe_url

POINTER = "valence_catalog"
POOL_WAIT = 1.0  # seconds a request waits for a connection before it is answered 503
RETRY_AFTER = 1.0  # after a failure, answer 503 at once for this long, then try the server again
CONNECT_TIMEOUT = 3
STATEMENT_TIMEOUT_MS = 5000
SIMILARITY = 0.1  # pg_trgm's threshold for candidate artist names, which rapidfuzz then ranks (0.2 missed close ones)
BUILD_LOCK = 0x76616C63  # advisory lock: one build at a time per database
GENERATION = re.compile(r"^g[0-9a-f]{1,32}$")
UNREACHABLE = "the catalog database cannot be reached (the server's log says why); retrying"
log = logging.getLogger("valence.catalog")


def column_type(name):
    """Return the PostgreSQL type of a catalog column (names in bytewise order, so prefixes are index ranges)."""
    if name in ("artist_key", "track_key"):
        return 'text COLLATE "C"'
    if name == "seq":
        return "bigint"
    numeric = {"expected", "prediction", "p_sad", "p_neutral", "p_happy", "interval_sigma", *NUMERIC_FEATURES}
    if name == "unseen_artist":
        return "integer"
    return "double precision" if name in numeric else "text"


def first_line(error):
    """Return the first line of a database error's message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def tables(generation):
    """Return the quoted names of a generation's tracks, artists and listings tables."""
    assert GENERATION.match(generation), generation
    return tuple(f'"valence_{kind}_{generation}"' for kind in ("tracks", "artists", "listings"))


class PostgresDatabase:
    """A PostgreSQL database holding catalogs; its connection pool is made in the process that uses it."""

    def __init__(self, url):
        self.url, self.shown = url, safe_url(url)
        self.pool, self.pool_pid = None, None
        self.down_until, self.down_message, self.connect_error = 0.0, "", None

    def __repr__(self):
        return f"PostgresDatabase({self.shown!r})"

    def _pool(self):
        """Return this process's pool, made on first use: a pool made before a fork is not the child's."""
        if self.pool is None or self.pool_pid != os.getpid():
            options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c pg_trgm.similarity_threshold={SIMILARITY}"
            database = self

            class Connection(psycopg.Connection):
                """A connection whose failure to connect is kept: a pool that times out says only that."""

                @classmethod
                def connect(cls, *args, **kwargs):
                    try:
                        return super().connect(*args, **kwargs)
                    except psycopg.Error as error:
                        database.connect_error = first_line(error)
                        raise
            self.pool = ConnectionPool(self.url, min_size=1, max_size=4, open=False, timeout=POOL_WAIT,
                                       connection_class=Connection,
                                       kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                                               "options": options},
                                       name="valence-catalog")
            self.pool.open(wait=False)
            self.pool_pid = os.getpid()
        return self.pool

    def run(self, work):
        """Return work(connection) on a pooled connection; a server that cannot answer is a CatalogUnavailable.

        A connection the server closed (a restart) is dropped and the work tried once more
        on another; after a failure, requests are answered at once for RETRY_AFTER seconds.
        """
        if time.monotonic() < self.down_until:
            raise CatalogUnavailable(UNREACHABLE, self.down_message)
        for attempt in range(2):
            try:
                with self._pool().connection(timeout=POOL_WAIT) as connection:
                    answer = work(connection)
                self.down_message, self.connect_error = "", None
                return answer
            except psycopg.errors.UndefinedTable:
                raise
            except (PoolTimeout, psycopg.errors.QueryCanceled) as error:
                failure = error
                break
            except psycopg.Error as error:
                failure = error  # a closed connection: the pool drops it; the next one may be fresh
        self.down_until = time.monotonic() + RETRY_AFTER
        what = first_line(failure)
        if isinstance(failure, PoolTimeout):
            what = self.connect_error or "no connection within the wait"
        message = f"the catalog database {self.shown} cannot be reached ({what}); retrying"
        if message != self.down_message:  # once per reason, not once a second
            log.warning("%s", message)
        self.down_message = message
        raise CatalogUnavailable(UNREACHABLE, message)

    def signature(self):
        """Return the generation of the catalog the database serves now, or None when it has none."""
        try:
            row = self.run(lambda c: c.execute(f"SELECT generation FROM {POINTER}").fetchone())
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None

    def open(self):
        """Open the catalog the database serves now; raise CatalogMissing saying what to run when it has none."""
        hint = f"build one with: {BUILD_HINT} --catalog '{self.shown}'"
        try:
            row = self.run(lambda c: c.execute(f"SELECT generation, meta FROM {POINTER}").fetchone())
        except psycopg.errors.UndefinedTable:
            row = None
        if row is None:
            raise CatalogMissing(f"no catalog in the database {self.shown}; {hint}")
        generation, meta = row[0], json.loads(row[1])
        meta = meta if isinstance(meta, dict) else {}
        problem = format_problem(format_number(meta.get("format")), CATALOG_FORMAT, "catalog", hint,
                                 f"serve it with that version, or {hint}") or sql.name_rule_problem(meta, hint)
        if problem or not GENERATION.match(generation):
            raise CatalogMissing(f"the catalog in {self.shown} {problem or 'names no table of this tool'}")
        return PostgresStore(self, generation, meta)

    def close(self):
        """Close this process's pool."""
        if self.pool is not None and self.pool_pid == os.getpid():
            self.pool.close()
        self.pool = None


class PostgresStore(sql.SqlStore):
    """One generation of the catalog in PostgreSQL; lookups are indexed queries on its tables."""

    PARAM = "%s"

    def __init__(self, database, generation, meta):
        # The signature is what database.signature() says while this generation is served.
        super().__init__(database, meta, generation, tables(generation))

    def _rows(self, query, params=()):
        """Run a query on this generation's tables and return its rows."""
        try:
            return self.database.run(lambda c: c.execute(query, params).fetchall())
        except psycopg.errors.UndefinedTable:
            raise CatalogUnavailable("the catalog was replaced twice in a moment; reloading") from None

    def artist_candidates(self, artist_key):
        """Return the artist names pg_trgm finds most similar to `artist_key` (a shortlist)."""
        rows = self._rows(f"SELECT artist_key FROM {self.artists} WHERE artist_key %% %s "
                          f"ORDER BY similarity(artist_key, %s) DESC, artist_key LIMIT %s",
                          (artist_key, artist_key, sql.ARTIST_CANDIDATES))
        return [row[0] for row in rows]

    def artists_containing(self, text, most):
        """Return (artist, popularity of its best track) of the artists whose name contains text, by name."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._rows(f"SELECT artist_key, popularity FROM {self.artists} WHERE artist_key LIKE %s "
                          "ORDER BY artist_key LIMIT %s", (pattern, most))

    def close(self):
        """Release nothing of the shared pool, unless this store owns its database."""
        if self.owns_database:
            self.database.close()


def _connect(url):
    """Return a new autocommit connection for a build, or say why there is none."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as error:
        raise ValenceError(f"cannot connect to {safe_url(url)}: {first_line(error)}") from None


def check_writable(url):
    """Say clearly, before a long build, when the database cannot take a catalog (unreachable, no pg_trgm)."""
    with _connect(url) as connection:
        try:
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except psycopg.Error as error:
            raise ValenceError(f"{safe_url(url)} cannot hold a catalog: the pg_trgm extension is needed "
                               f"({first_line(error)})") from None


def publish(staged, url, log=print):
    """Copy a built catalog file into new tables and swap them in with one transaction."""
    shown = safe_url(url)
    with _connect(url) as connection, contextlib.closing(sqlite3.connect(staged)) as source:
        try:
            _publish(connection, source, shown, log)
        except psycopg.Error as error:
            raise ValenceError(f"writing the catalog into {shown} failed ({first_line(error)}); "
                               "the previous catalog, if any, still serves") from None


def _load(connection, source, table, columns):
    """Create a table and COPY a staged table's rows into it, in binary (floats exactly as stored), frozen:
    created in the same transaction, its rows need no later visibility writes (COPY FREEZE)."""
    types = [column_type(name).split(" COLLATE")[0] for name in columns]
    staged = table.split("_")[1]  # "valence_tracks_g..." -> tracks
    with connection.transaction():
        connection.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {column_type(n)}' for n in columns)})")
        with connection.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN "
                                      "WITH (FORMAT BINARY, FREEZE)") as copy:
            copy.set_types(types)
            for row in source.execute(f"SELECT {', '.join(columns)} FROM {staged}"):
                copy.write_row(row)


def _publish(connection, source, shown, log):
    """Fill a new generation's tables from the staged file, swap them in, drop the generations before the last."""
    if not connection.execute("SELECT pg_try_advisory_lock(%s)", (BUILD_LOCK,)).fetchone()[0]:
        raise ValenceError(f"another build is writing a catalog into {shown}; try again when it has finished")
    connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {POINTER} (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                       "generation text NOT NULL, previous text, model_version text NOT NULL, meta text NOT NULL, "
                       "swapped_at timestamptz NOT NULL DEFAULT now())")
    generation = f"g{time.time_ns():x}"
    tracks, artists, listings = tables(generation)
    started = time.perf_counter()
    # The build's own session: its index builds sort in memory, and its commits wait for no flush until
    # the swap's, which is synchronous and so flushes everything written before it too.
    connection.execute("SET maintenance_work_mem = '256MB'")
    connection.execute("SET synchronous_commit = off")
    for table, columns, key in ((tracks, TRACK_COLUMNS, "track_id"), (listings, LISTING_COLUMNS, "track_id, seq")):
        _load(connection, source, table, columns)
        connection.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key})")  # one sort, after the rows are in
    for statement in (f"CREATE INDEX ON {tracks} (artist_key, track_key, {BEST_FIRST})",
                      f"CREATE INDEX ON {tracks} (track_key, {BEST_FIRST})",
                      f"CREATE TABLE {artists} AS SELECT artist_key, max(popularity) AS popularity FROM {tracks} "
                      "GROUP BY artist_key",
                      f"ALTER TABLE {artists} ADD PRIMARY KEY (artist_key)",
                      f"CREATE INDEX ON {artists} USING gin (artist_key gin_trgm_ops)",
                      f"ANALYZE {tracks}", f"ANALYZE {artists}", f"ANALYZE {listings}"):
        connection.execute(statement)
    meta = dict(source.execute("SELECT key, value FROM meta"))
    with connection.transaction():
        connection.execute("SET LOCAL synchronous_commit = on")
        old = connection.execute(f"SELECT generation FROM {POINTER} FOR UPDATE").fetchone()
        connection.execute(f"DELETE FROM {POINTER}")
        connection.execute(f"INSERT INTO {POINTER} (generation, previous, model_version, meta) VALUES (%s, %s, %s, %s)",
                           (generation, old[0] if old else None, meta["model_version"], json.dumps(meta)))
    keep = {generation, old[0] if old else None}
    for (name,) in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                      "AND tablename ~ '^valence_(tracks|artists|listings)_g[0-9a-f]+$'").fetchall():
        if name.split("_", 2)[2] not in keep:
            connection.execute(f'DROP TABLE IF EXISTS "{name}"')
    connection.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))
    log(f"copied {meta['tracks']} tracks into {shown} in {time.perf_counter() - started:.1f} s "
        f"and swapped them in (generation {generation})")
