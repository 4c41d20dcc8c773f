"""Tests of the catalog stores, SQLite and PostgreSQL through one interface, and of building them.

A stand-in predictor with a known rule replaces the trained model, so expected answers follow from the inputs.
"""

import os
import time

import numpy as np
import pandas as pd
import pytest

from conftest import empty_target
from valence.catalog.build import build_catalog
from valence.config import CLASS_NAMES, FEATURE_COLUMNS
from valence.model.predictor import Models
from valence.catalog.sql import CatalogMissing, normalise
from valence.catalog.store import connect, open_store
from valence.data.synthetic import generate_dataset, write_csv
from valence.forks import FORKS
from songs import RulePredictor, expected_valence, hand_made_listings

# The PostgreSQL half starts a server: in the slow run (CI runs both), keeping the default run short.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


def rule_models(moods=True, version="rule00000001"):
    return Models(RulePredictor(moods), version, ())


@pytest.fixture(scope="module")
def frame():
    """Twelve generated songs and hand-made listings: one track under three genres far apart, same-named tracks."""
    songs = generate_dataset(12, seed=2).drop_duplicates("track_id").reset_index(drop=True)
    songs["genre"] = "Pop"
    extra = hand_made_listings(songs)
    # The three listings of MULTI at the start, the middle and the end: in different chunks of 4 rows.
    parts = [extra.iloc[[0]], songs.iloc[:5], extra.iloc[[1]], songs.iloc[5:], extra.iloc[2:]]
    return pd.concat(parts, ignore_index=True)


def build(frame, target, tmp_path, models=None, chunk_rows=4):
    """Write the frame as CSV and build it into the target; return the build report."""
    path = write_csv(frame, tmp_path / "songs.csv")
    return build_catalog(path, None, target, log=lambda message: None, chunk_rows=chunk_rows,
                         models=models or rule_models())


@pytest.fixture(params=BACKENDS)
def built(request, frame, tmp_path):
    """Return (store, build report, predictor) of the frame built with the rule predictor, in each backend."""
    target = empty_target(request.param, tmp_path, request)
    models = rule_models()
    report = build(frame, target, tmp_path, models)
    store = open_store(target)
    yield store, report, models.predictor
    store.close()


def test_normalise_folds_case_and_whitespace():
    assert normalise("  The   BEATLES\t") == "the beatles"
    assert normalise("Straße") == normalise("STRASSE")  # casefold, not lower


def test_a_build_reads_in_chunks_and_records_what_it_scored(built, frame):
    store, report, predictor = built
    assert max(predictor.calls) <= 4 and sum(predictor.calls) == len(frame)  # never the whole file at once
    assert (report.rows, report.tracks) == (len(frame), frame["track_id"].nunique())
    assert store.size() == frame["track_id"].nunique() and store.model_version == "rule00000001"
    assert store.meta["rows"] == str(len(frame)) and store.meta["data"] == "songs.csv"
    assert store.is_current()


def test_a_track_under_several_genres_in_different_chunks_is_one_entry_with_the_mean(built):
    store = built[0]
    answer = store.by_track_id("MULTI")
    per_genre = {g: expected_valence(0.4, g) for g in ("Pop", "Rock", "Polka")}
    assert answer["genres"] == ["Pop", "Rock", "Polka"]
    assert answer["genre_predictions"] == pytest.approx(per_genre)
    assert answer["prediction"] == pytest.approx(sum(per_genre.values()) / 3)
    assert answer["expected"] == pytest.approx(0.25) and answer["popularity"] == 30
    assert answer["warnings"] == ["unknown genre 'Polka'"]
    weights = [np.array([1 - v, 0.5, v]) / 1.5 for v in per_genre.values()]
    assert answer["mood_probabilities"] == pytest.approx(dict(zip(CLASS_NAMES, np.mean(weights, axis=0))))
    assert answer["mood"] == "sad"  # sad 1 - 0.4 beats happy 0.4
    assert store.by_track_id("NO-SUCH-ID") is None and store.by_track_id("multi") is None


def test_names_match_ignoring_case_and_spaces_most_popular_first_then_by_id(built):
    store = built[0]
    answer = store.by_names("TWIN artist", "same   SONG")
    assert answer["track_id"] == "SAMEHIGH"  # popularity 90
    assert answer["mood"] == "happy"  # Rock 0.3 + 0.6 / 2 = 0.6
    assert [m["track_id"] for m in answer["other_matches"]] == ["SAMELOW", "SAMETIE"]  # both 10: by track_id
    assert answer["other_matches"][0] == {"track_id": "SAMELOW", "artist_name": "Twin Artist",
                                          "track_name": "Same Song", "genres": ["Pop"]}
    assert store.by_names("Twin Artist", "Other Song") is None
    assert store.by_names("Multi Act", "Many Genres")["other_matches"] == []


def test_suggestions_find_a_misspelt_track_or_artist(built):
    store = built[0]
    assert [s["track_id"] for s in store.suggest("Multi Act", "Many Genre")] == ["MULTI"]
    assert [s["track_id"] for s in store.suggest("Muti Act", "Many Genres")] == ["MULTI"]
    assert [s["track_id"] for s in store.suggest("Nobody", "same song")] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]
    assert store.suggest("Multi Act", "Many Genre")[0] == {"track_id": "MULTI", "artist_name": "Multi Act",
                                                           "track_name": "Many Genres",
                                                           "genres": ["Pop", "Rock", "Polka"]}
    assert store.suggest("Zzzz Qqqq", "Xxxxxxxx") == []


def test_search_finds_artists_by_start_or_inside_then_tracks_by_start(built):
    store = built[0]
    assert [s["track_id"] for s in store.search("TWIN")] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]
    assert [s["track_id"] for s in store.search("ulti")] == ["MULTI"]  # inside "multi act"
    assert [s["track_id"] for s in store.search("same so")] == ["SAMEHIGH", "SAMELOW", "SAMETIE"]  # track names
    assert [s["track_id"] for s in store.search("twin", limit=2)] == ["SAMEHIGH", "SAMELOW"]
    assert store.search("   ") == [] and store.search("zzzq") == []
    assert store.search("many")[0] == {"track_id": "MULTI", "artist_name": "Multi Act", "track_name": "Many Genres",
                                       "genres": ["Pop", "Rock", "Polka"]}


def test_song_rows_are_a_tracks_listings_in_file_order(built, frame):
    rows = built[0].song_rows("MULTI")
    assert rows["genre"].tolist() == ["Pop", "Rock", "Polka"]
    assert rows["danceability"].tolist() == [0.4, 0.4, 0.4] and set(rows["artist_name"]) == {"Multi Act"}
    assert list(rows.columns) == [*FEATURE_COLUMNS, "artist_name"]
    assert rows["key"].tolist() == frame.loc[frame["track_id"] == "MULTI", "key"].tolist()
    assert built[0].song_rows("NO-SUCH-ID") is None


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_regression_only_model_gives_no_moods(kind, frame, tmp_path, request):
    target = empty_target(kind, tmp_path, request)
    build(frame, target, tmp_path, rule_models(moods=False))
    with_store = open_store(target)
    answer = with_store.by_track_id("MULTI")
    with_store.close()
    assert "mood" not in answer and "mood_probabilities" not in answer
    assert answer["prediction"] == pytest.approx(expected_valence(0.4, "Pop") / 3 + expected_valence(0.4, "Rock") / 3
                                                 + expected_valence(0.4, "Polka") / 3)


@pytest.mark.slow  # two builds: in the slow run, which CI runs
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_rebuild_swaps_in_whole_and_an_open_store_keeps_its_own_catalog(kind, frame, tmp_path, request):
    target = empty_target(kind, tmp_path, request)
    build(frame, target, tmp_path, rule_models(version="first0000000"))
    old = open_store(target)
    changed = frame.assign(danceability=frame["danceability"] / 2)
    build(changed, target, tmp_path, rule_models(version="second000000"))
    assert not old.is_current()
    # The store opened before keeps answering from the catalog it opened, scored by its model.
    assert old.model_version == "first0000000"
    assert old.by_track_id("MULTI")["genre_predictions"]["Polka"] == pytest.approx(0.2)
    new = open_store(target)
    assert new.model_version == "second000000" and new.is_current()
    assert new.by_track_id("MULTI")["genre_predictions"]["Polka"] == pytest.approx(0.1)
    old.close()
    new.close()


@pytest.mark.slow  # two builds: in the slow run, which CI runs
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_failed_build_leaves_the_previous_catalog(kind, frame, tmp_path, request, monkeypatch):
    target = empty_target(kind, tmp_path, request)
    build(frame, target, tmp_path, rule_models(version="kept00000000"))
    database = connect(target)
    before = database.signature()

    def broken(self, part_path):
        raise KeyboardInterrupt  # as if the build were stopped while it wrote the tracks

    monkeypatch.setattr("valence.catalog.sqlite.SqliteWriter.add_tracks_from", broken)
    with pytest.raises(KeyboardInterrupt):
        build(frame, target, tmp_path, rule_models(version="lost00000000"))
    assert database.signature() == before
    kept = database.open()
    assert kept.model_version == "kept00000000" and kept.by_track_id("MULTI") is not None
    if kind == "sqlite":
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".catalog")] == []
    kept.close()
    database.close()


class DyingPredictor(RulePredictor):
    """Predicts the first chunk; the process predicting the next one dies (a chunk predicted in this very
    process raises instead, so that the test process lives)."""

    def __init__(self, parent):
        super().__init__()
        self.parent = parent

    def predict(self, frame, level=0.9, honest=False):
        if "MULTI" not in frame["track_id"].tolist():
            if os.getpid() != self.parent:
                os._exit(3)  # as the kernel's OOM killer would end it: no exception, no message
            raise RuntimeError("died")
        return super().predict(frame, level, honest)


@pytest.mark.slow  # two builds: in the slow run, which CI runs
def test_without_fork_a_build_predicts_in_a_thread_and_writes_the_same_catalog(frame, tmp_path, monkeypatch):
    models = rule_models()
    forked = build(frame, tmp_path / "forked.sqlite", tmp_path, models)
    if FORKS:
        assert os.getpid() not in {pid for pid, _rows in models.predictor.reported()}  # in forked processes
    monkeypatch.setattr("valence.catalog.build.FORKS", False)  # as on Windows and macOS
    models = rule_models()
    threaded = build(frame, tmp_path / "threaded.sqlite", tmp_path, models)
    assert sorted(models.predictor.reported()) == [(os.getpid(), rows) for rows in (3, 4, 4, 4)]  # chunks of 4
    assert (forked.rows, forked.tracks) == (threaded.rows, threaded.tracks)
    one, other = open_store(tmp_path / "forked.sqlite"), open_store(tmp_path / "threaded.sqlite")
    assert [one.by_track_id(t) for t in frame["track_id"]] == [other.by_track_id(t) for t in frame["track_id"]]
    one.close()
    other.close()


@pytest.mark.slow  # two builds: in the slow run, which CI runs
@pytest.mark.skipif(not FORKS, reason="builds predict in forked processes on Linux only")
def test_a_prediction_process_that_dies_fails_the_build_and_the_previous_catalog_stays(frame, tmp_path):
    from valence.config import ValenceError

    target = tmp_path / "catalog.sqlite"
    build(frame, target, tmp_path, rule_models(version="kept00000000"))
    dying = Models(predictor=DyingPredictor(os.getpid()), version="lost00000000", signature=())
    with pytest.raises(ValenceError, match="a process predicting the catalog's rows ended without a result"):
        build(frame, target, tmp_path, dying)
    kept = open_store(target)
    assert kept.model_version == "kept00000000" and kept.by_track_id("MULTI") is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".catalog")] == []
    kept.close()


@pytest.mark.slow  # a second: in the slow run, which CI runs too
@pytest.mark.skipif(not FORKS, reason="builds group tracks in forked processes on Linux only")
def test_a_grouping_process_that_dies_fails_the_build_and_leaves_no_scratch_file(frame, tmp_path, monkeypatch):
    from valence.catalog import build as building
    from valence.config import ValenceError

    target = tmp_path / "catalog.sqlite"
    build(frame, target, tmp_path, rule_models(version="kept00000000"))
    parent, track_rows = os.getpid(), building.track_rows

    def dying(listings):
        if os.getpid() != parent and any(listing[0] == "MULTI" for listing in listings):
            os._exit(3)  # killed while it groups the listings of one range of track_ids
        return track_rows(listings)

    monkeypatch.setattr(building, "track_rows", dying)
    with pytest.raises(ValenceError, match="a process grouping the catalog's listings by track ended without"):
        build(frame, target, tmp_path, rule_models(version="lost00000000"))
    kept = open_store(target)
    assert kept.model_version == "kept00000000" and kept.by_track_id("MULTI") is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".catalog")] == []
    kept.close()


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_a_build_stopped_while_it_groups_tracks_stops_the_grouping_at_its_next_batch(frame, tmp_path, monkeypatch):
    # Ctrl-C (here raised in the build while it indexes the listings) must not wait for every range of tracks
    # to be grouped first: at 10,000,000 rows that is minutes. One listing a batch, a second each.
    from valence.catalog import build as building

    log, track_rows = tmp_path / "batches.log", building.track_rows

    def slow(listings):
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return track_rows(listings)

    def stopped(self):
        time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(building, "track_rows", slow)
    monkeypatch.setattr("valence.catalog.sqlite.READ_BATCH", 1)
    monkeypatch.setattr("valence.catalog.sqlite.SqliteWriter.index_listings", stopped)
    with pytest.raises(KeyboardInterrupt):
        build(frame, tmp_path / "catalog.sqlite", tmp_path, rule_models())
    grouped = log.read_text().splitlines()
    assert 0 < len(grouped) < len(frame) // 2  # both ranges stopped well before their end (a batch per listing)
    if FORKS:
        assert os.getpid() not in set(map(int, grouped))  # grouped in forked processes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".catalog")] == []


@pytest.mark.slow  # a second each: in the slow run, which CI runs too
@pytest.mark.parametrize("processes", [1, 3, 20])
def test_tracks_grouped_in_ranges_of_track_ids_make_the_same_catalog(frame, tmp_path, monkeypatch, processes):
    # Ranges split at sampled track_ids: as many as asked (up to the sample's size), each track in one range.
    whole = build(frame, tmp_path / "whole.sqlite", tmp_path, rule_models())
    monkeypatch.setattr("valence.catalog.build.GROUPING_PROCESSES", processes)
    monkeypatch.setattr("valence.catalog.build.SAMPLE_EVERY", 1)
    parts = build(frame, tmp_path / "parts.sqlite", tmp_path, rule_models())
    assert (parts.rows, parts.tracks) == (whole.rows, whole.tracks) == (len(frame), frame["track_id"].nunique())
    one, other = open_store(tmp_path / "whole.sqlite"), open_store(tmp_path / "parts.sqlite")
    assert [one.by_track_id(t) for t in frame["track_id"]] == [other.by_track_id(t) for t in frame["track_id"]]
    one.close()
    other.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_empty_target_has_no_catalog_and_says_what_to_run(kind, tmp_path, request):
    target = empty_target(kind, tmp_path, request)
    database = connect(target)
    assert database.signature() is None
    with pytest.raises(CatalogMissing, match="--build-catalog"):
        database.open()
    database.close()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"track_id,valence\nabc,0.5\n" * 100, "not a catalog"),
])
def test_a_catalog_file_that_is_not_one_is_refused(tmp_path, content, message):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(content)
    with pytest.raises(CatalogMissing, match=message):
        open_store(path)


def test_a_foreign_or_truncated_sqlite_file_is_refused(frame, tmp_path):
    import sqlite3

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    with pytest.raises(CatalogMissing, match="not a catalog of this tool"):
        open_store(foreign)
    good = tmp_path / "catalog.sqlite"
    build(frame, good, tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CatalogMissing, match="damaged"):
        open_store(truncated)


def test_a_build_refuses_targets_it_would_destroy(frame, tmp_path):
    from valence.config import ValenceError

    csv_path = write_csv(frame, tmp_path / "songs.csv")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for target, message in ((tmp_path, "is a directory"), (csv_path, "is the data file"),
                            (notes, "is not a catalog")):
        with pytest.raises(ValenceError, match=message):
            build_catalog(csv_path, None, target, log=lambda m: None, models=rule_models())
    assert notes.read_text() == "my notes"


def test_a_data_file_without_usable_rows_builds_nothing(frame, tmp_path):
    from valence.config import ValenceError

    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(frame.columns) + "\n")
    with pytest.raises(ValenceError, match="no usable rows"):
        build_catalog(empty, None, tmp_path / "catalog.sqlite", log=lambda m: None, models=rule_models())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv"]


def assert_same(answer, expected):
    """Assert two answers are equal, numbers to a float32 rounding (a batch's size can change the last bit)."""
    assert type(answer) is type(expected), (answer, expected)
    if isinstance(expected, dict):
        assert list(answer) == list(expected)
        for key, value in expected.items():
            assert_same(answer[key], value)
    elif isinstance(expected, (list, tuple)):
        assert len(answer) == len(expected)
        for item, value in zip(answer, expected):
            assert_same(item, value)
    elif isinstance(expected, float):
        assert answer == pytest.approx(expected, rel=1e-6)
    else:
        assert answer == expected


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
@pytest.mark.parametrize("kind", BACKENDS)
def test_the_trained_models_answer_as_the_in_memory_catalog_did(kind, trained, catalog_csv, tmp_path, request):
    from memory_catalog import load_catalog
    from valence.model.predictor import load_models

    target = empty_target(kind, tmp_path, request)
    models = load_models(trained[0])
    build_catalog(catalog_csv, trained[0], target, log=lambda m: None)
    reference = load_catalog(catalog_csv, models.predictor)
    store = open_store(target)
    assert store.model_version == models.version and store.size() == len(reference)
    same_suggestions = 0
    for i, track_id in enumerate(reference.track_ids):
        artist, track = reference.artist_names[i], reference.track_names[i]
        assert_same(store.by_track_id(track_id), reference.by_track_id(track_id))
        assert_same(store.by_names(artist.upper(), f" {track} "), reference.by_names(artist.upper(), f" {track} "))
        for query in ((artist[:-1], track), (artist, track[1:] + "x")):
            same_suggestions += store.suggest(*query) == reference.suggest(*query)
        for text in (artist[:2], artist[1:5], track[:4]):
            assert store.search(text) == reference.search(text), text
        expected_rows = reference.song_rows(track_id)
        pd.testing.assert_frame_equal(store.song_rows(track_id)[list(expected_rows.columns)], expected_rows)
    store.close()
    queries = 2 * len(reference)
    # The in-memory catalog ranks every artist name; a store ranks the candidates its trigram
    # index finds, which miss only names close in letters but not in trigrams (a few in 1,000).
    assert same_suggestions >= (0.98 if kind == "sqlite" else 0.9) * queries


# ---- issue 24, point 18: a catalog of a newer version is refused naming both format versions ----------------

def test_a_catalog_of_a_newer_version_is_refused_naming_both_formats(tmp_path):
    import sqlite3

    from valence.catalog.sql import CATALOG_FORMAT, CatalogMissing
    from valence.catalog.store import open_store

    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as connection:  # a later layout: only what every version's meta table says
        connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.executemany("INSERT INTO meta VALUES (?, ?)", [("app", "valence-catalog"),
                                                                   ("format", str(CATALOG_FORMAT + 1))])
    connection.close()
    with pytest.raises(CatalogMissing) as error:
        open_store(path)
    assert str(error.value).startswith(
        f"{path} was written by a newer version of this tool, in catalog format {CATALOG_FORMAT + 1}; this version "
        f"reads format {CATALOG_FORMAT}: serve it with that version, or rebuild it with: ")


# ---- issue 26: opening a large catalog stays fast ------------------------------------------------------------

def damage_root_page(path, table):
    """Overwrite the root page of a table of a SQLite file, the header left intact; return the page size."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        root = connection.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
        page = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * page)
        file.write(b"\xa5" * page)


@pytest.mark.parametrize("table", ["tracks", "artists"])
def test_a_large_catalog_checks_its_small_tables_at_open_and_its_large_ones_at_their_first_read(frame, tmp_path,
                                                                                                  monkeypatch, table):
    # Walking every page at open grows with the file (seconds at 10,000,000 tracks, at every worker's
    # start): above WHOLE_CHECK_BYTES only the small tables are walked, and a damaged page of the large
    # ones fails the first query that reads it instead.
    from valence.catalog import sqlite as catalog_sqlite

    target = tmp_path / "catalog.sqlite"
    build(frame, target, tmp_path)
    damage_root_page(target, table)
    monkeypatch.setattr(catalog_sqlite, "WHOLE_CHECK_BYTES", 0)  # every file is a large one
    if table == "artists":
        with pytest.raises(CatalogMissing, match="is damaged"):
            open_store(target)
        return
    store = open_store(target)  # opens: its tracks are not walked
    with pytest.raises(CatalogMissing, match="cannot be read"):
        store.by_track_id("MULTI")
    store.close()
    monkeypatch.setattr(catalog_sqlite, "WHOLE_CHECK_BYTES", 256 * 2**20)  # a small file is walked whole
    with pytest.raises(CatalogMissing, match="is damaged"):
        open_store(target)
