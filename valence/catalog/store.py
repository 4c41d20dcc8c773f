"""The catalog store: one interface to a scored catalog, in a SQLite file or in PostgreSQL.

A catalog is built once (`--build-catalog`, or at the end of a training run) and
then only read: every lookup is one indexed query, so a serving process holds no
catalog in memory and starts without reading the data file.
"""
from valence.catalog.sql import is_postgres


def connect(target):
    """Return the database behind a target (a file path or a postgresql:// URL); nothing is opened yet."""
    if is_postgres(target):
        from valence.catalog.postgres import PostgresDatabase

        return PostgresDatabase(str(target))
    from valence.catalog.sqlite import SqliteDatabase

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
