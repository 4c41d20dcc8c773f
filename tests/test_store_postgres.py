"""Tests of the PostgreSQL store when its server goes away and comes back (a server of their own)."""
import time

import pytest

from postgres_server import start_server
from test_store import build
from valence.catalog import postgres as store_postgres
from valence.catalog.sql import CatalogUnavailable
from valence.catalog.store import connect

pytestmark = pytest.mark.slow  # a server of its own, stopped and started: CI runs it in the slow run


@pytest.fixture
def server():
    """Start a server of this test's own, which it may stop and start."""
    server = start_server()
    yield server
    server.remove()


def test_lookups_answer_unavailable_while_the_server_is_down_and_recover(server, tmp_path, monkeypatch):
    from valence.data.synthetic import generate_dataset

    monkeypatch.setattr(store_postgres, "RETRY_AFTER", 0.5)
    frame = generate_dataset(50, seed=3)
    url = server.create_database("outage")
    build(frame, url, tmp_path)
    database = connect(url)
    store = database.open()
    track_id = frame["track_id"][0]
    assert store.by_track_id(track_id)["track_id"] == track_id
    server.stop()
    for _attempt in range(2):  # the pooled connection is dead, then no new one can be made
        started = time.monotonic()
        with pytest.raises(CatalogUnavailable, match="cannot be reached"):
            store.by_track_id(track_id)
        assert time.monotonic() - started < store_postgres.POOL_WAIT + 1.5
    # After a failure, answered at once without asking the server again: the pool is not asked for a connection.
    monkeypatch.setattr(store_postgres, "RETRY_AFTER", 600)  # a window no slow machine outlasts
    database.down_until = 0.0
    with pytest.raises(CatalogUnavailable, match="cannot be reached"):
        store.by_track_id(track_id)
    with monkeypatch.context() as patched:
        patched.setattr(database, "_pool", lambda: pytest.fail("the pool was asked while the server is down"))
        with pytest.raises(CatalogUnavailable, match="cannot be reached"):
            store.is_current()
    database.down_until = 0.0  # the window ends: the next request tries the server
    monkeypatch.setattr(store_postgres, "RETRY_AFTER", 0.5)
    server.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = store.by_track_id(track_id)
            break
        except CatalogUnavailable:
            assert time.monotonic() < deadline, "the store did not reconnect"
            time.sleep(0.2)
    assert answer["track_id"] == track_id and store.is_current()
    database.close()


def test_a_published_catalog_survives_a_crash_and_its_big_tables_need_no_vacuum(server, tmp_path):
    # Issue 26: the tables are loaded frozen (COPY FREEZE in the transaction that creates them), so every
    # page is all-visible at once and no VACUUM rewrites them later; the build's commits do not wait for the
    # disk, but the swap's does, so a crash right after it keeps the catalog that was swapped in.
    import psycopg
    from valence.data.synthetic import generate_dataset

    frame = generate_dataset(3000, seed=4)
    url = server.create_database("frozen")
    build(frame, url, tmp_path, chunk_rows=1000)
    server.stop()  # immediate: no checkpoint, as a crash
    server.start()
    store = connect(url).open()
    track_id = frame["track_id"][0]
    assert store.by_track_id(track_id)["track_id"] == track_id and store.size() == frame["track_id"].nunique()
    with psycopg.connect(url) as connection:
        pages = dict(((name.split("_")[1], (total, visible)) for name, total, visible in connection.execute(
            "SELECT relname, relpages, relallvisible FROM pg_class WHERE relname ~ '^valence_(tracks|listings)_g' "
            "AND relkind = 'r'")))
    assert set(pages) == {"tracks", "listings"} and all(total > 10 for total, _ in pages.values())
    assert all(visible == total for total, visible in pages.values()), pages
    store.database.close()
