"""Tests of building a catalog from the command line (--build-catalog), and of killing a build midway."""
import os
import signal
import subprocess
import sys
import time

import sqlite3

import pandas as pd
import pytest

import musical_valence_predictor as cli
from conftest import empty_target
from processes import is_alive, live_children
from schema_check import response_errors
from valence.catalog.build import build_catalog
from valence.config import CLASS_NAMES, PROJ_ROOT
from valence.data.load import load_dataset
from valence.model.predictor import Predictor
from valence.model.predictor import model_version
from valence.catalog.store import connect, open_store
from valence.data.synthetic import generate_dataset, write_csv
from valence.forks import FORKS


def catalog_tracks(path):
    """Return the number of distinct track_ids of a CSV."""
    return pd.read_csv(path)["track_id"].nunique()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_build_catalog_scores_the_data_with_the_saved_models(kind, trained, catalog_csv, tmp_path, request, capsys):
    target = empty_target(kind, tmp_path, request)
    status = cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(trained[0]),
                       "--catalog", str(target)])
    out = capsys.readouterr().out
    assert status == 0
    store = open_store(target)
    assert store.model_version == model_version(trained[0])
    assert f"catalog: {store.size():,} tracks from 306 rows (skipped 0), scored with model {store.model_version}" in out
    assert store.by_track_id("DUPLICATE0000000000001")["genres"] == ["Pop", "Rock"]
    store.close()


@pytest.mark.slow  # a whole training run (about 4 s): in the slow run, which CI runs
def test_a_training_run_ends_by_scoring_its_data_into_the_catalog(demo_csv, tmp_path, capsys):
    model_dir = tmp_path / "models"
    assert cli.main(["--data", str(demo_csv), "--model-dir", str(model_dir), "--model", "both", "--epochs", "1",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    store = open_store(model_dir / "catalog.sqlite")
    assert store.model_version == model_version(model_dir) and store.size() == catalog_tracks(demo_csv)
    assert f"catalog: {store.size():,} tracks from 3,000 rows" in out
    assert store.meta["moods"] == "yes"  # scored after both models were saved
    store.close()


@pytest.mark.slow  # two builds: in the slow run, which CI runs
def test_the_frame_a_training_run_read_scores_into_the_same_catalog_as_the_file(trained, catalog_csv, tmp_path):
    # A training run hands its catalog step the clean frame it loaded, in chunks, instead of reading the file again.
    frame, report = load_dataset(catalog_csv)
    built = {}
    for name, loaded in (("file", None), ("frame", (frame, report))):
        target = tmp_path / f"{name}.sqlite"
        result = build_catalog(catalog_csv, trained[0], target, log=lambda message: None, chunk_rows=64,
                               loaded=loaded)
        assert (result.rows, result.tracks) == (306, catalog_tracks(catalog_csv))
        with sqlite3.connect(target) as connection:
            built[name] = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                           for table in ("tracks", "listings", "artists")}
            built[name]["meta"] = connection.execute("SELECT * FROM meta WHERE key != 'built_at' ORDER BY 1").fetchall()
    assert built["frame"] == built["file"] and len(built["file"]["listings"]) == 306


# Its PostgreSQL half (a new database: 2-3 s) is in the slow run, to keep the default run under a minute.
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_build_catalog_with_only_a_classifier_stores_moods_and_no_valence(kind, mood_only, catalog_csv, tmp_path,
                                                                           request, capsys):
    target = empty_target(kind, tmp_path, request)
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(mood_only),
                     "--catalog", str(target)]) == 0
    out = capsys.readouterr().out
    store = open_store(target)
    assert f"catalog: {store.size():,} tracks from 306 rows (skipped 0)" in out
    assert store.size() == catalog_tracks(catalog_csv)
    assert store.model_version == model_version(mood_only) and store.meta["moods"] == "yes"
    track = store.by_track_id("DUPLICATE0000000000001")
    assert track["prediction"] is None and track["genre_predictions"] == {"Pop": None, "Rock": None}
    # A track under two genres: the mean of its listings' mood probabilities, as with a regression model.
    rows = pd.read_csv(catalog_csv, keep_default_na=False).query("track_id == 'DUPLICATE0000000000001'")
    probabilities = Predictor.from_model_dir(mood_only).predict(rows).mood_probabilities.mean(axis=0)
    assert list(track["mood_probabilities"].values()) == pytest.approx(probabilities.tolist())
    assert track["mood"] == CLASS_NAMES[probabilities.argmax()]
    store.close()


@pytest.mark.slow  # a training run and a build: in the slow run, which CI runs
def test_a_classification_only_training_run_ends_by_scoring_moods_into_the_catalog(tmp_path, capsys):
    data = write_csv(generate_dataset(200, seed=3), tmp_path / "songs.csv")
    model_dir = tmp_path / "models"
    assert cli.main(["--data", str(data), "--model-dir", str(model_dir), "--model", "classification",
                     "--epochs", "1", "--folds", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    store = open_store(model_dir / "catalog.sqlite")
    assert f"catalog: {store.size():,} tracks from 200 rows" in out and store.size() == catalog_tracks(data)
    assert store.model_version == model_version(model_dir) and store.meta["moods"] == "yes"
    track = store.by_track_id(pd.read_csv(data)["track_id"][0])
    assert track["prediction"] is None and track["mood"] in CLASS_NAMES
    store.close()


def test_build_catalog_writes_beside_the_models_by_default(trained, catalog_csv, tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    for bundle in trained[0].glob("*.safetensors"):
        (model_dir / bundle.name).write_bytes(bundle.read_bytes())
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(model_dir)]) == 0
    store = open_store(model_dir / "catalog.sqlite")
    assert store.size() == catalog_tracks(catalog_csv) and store.model_version == model_version(model_dir)
    store.close()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--build-catalog", "--predict", "x.csv"], "--build-catalog does nothing with --predict"),
    (["--build-catalog", "--skip-training"], "--build-catalog does nothing with --skip-training"),
    (["--catalog", "c.sqlite", "--predict", "x.csv"], "--catalog does nothing with --predict"),
    (["--build-catalog", "--epochs", "3"], "--epochs does nothing with --build-catalog"),
])
def test_build_catalog_refuses_options_that_do_not_go_with_it(arguments, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(arguments)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_build_catalog_without_models_or_with_an_unreachable_database_says_why(catalog_csv, tmp_path, capsys):
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(tmp_path)]) == 2
    assert "no saved model in" in capsys.readouterr().err
    url = "postgresql://someone:secret@127.0.0.1:1/catalog"
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(tmp_path),
                     "--catalog", url]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to postgresql://someone@127.0.0.1:1/catalog" in err and "secret" not in err
    assert list(tmp_path.iterdir()) == []


def start_build(data, model_dir, target):
    """Start --build-catalog in a child process of its own."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(PROJ_ROOT / "musical_valence_predictor.py"), "--build-catalog",
                             "--data", str(data), "--model-dir", str(model_dir), "--catalog", str(target)],
                            cwd=PROJ_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(child, condition, timeout=120):
    """SIGKILL the child as soon as condition() holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the build never reached the moment to kill it"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_a_build_killed_midway_leaves_the_previous_catalog_serving(kind, trained, catalog_csv, tmp_path, request):
    target = empty_target(kind, tmp_path, request)
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(trained[0]),
                     "--catalog", str(target)]) == 0
    database = connect(target)
    before = database.signature()
    big = write_csv(generate_dataset(60_000, seed=5), tmp_path / "big.csv")
    child = start_build(big, trained[0], target)
    if kind == "sqlite":
        # Killed while the new file and its scratch file of scored listings are being written beside the old one
        # (its rows, past the schema: by then the processes that predict them have started).
        workers = set()

        def writing():
            workers.update(live_children(child.pid))
            return any(p.name.endswith("-scored.tmp") and p.stat().st_size > 2**16 for p in tmp_path.iterdir())

        kill_when(child, writing)
        if FORKS:  # ... and they end with it, not left waiting for work
            assert workers
            deadline = time.monotonic() + 60
            while any(is_alive(pid) for pid in workers):
                assert time.monotonic() < deadline, f"processes {workers} of the killed build still run"
                time.sleep(0.1)
    else:
        import psycopg

        def copying():
            with psycopg.connect(target, autocommit=True) as connection:
                return connection.execute("SELECT count(*) FROM pg_stat_progress_copy").fetchone()[0] > 0

        kill_when(child, copying)  # killed during the COPY into the new generation's tables
    assert child.returncode == -signal.SIGKILL
    assert database.signature() == before
    store = database.open()
    assert store.size() == catalog_tracks(catalog_csv) and store.by_track_id("DUPLICATE0000000000001") is not None
    store.close()
    # The next build replaces it, whatever the killed one left behind.
    assert cli.main(["--build-catalog", "--data", str(catalog_csv), "--model-dir", str(trained[0]),
                     "--catalog", str(target)]) == 0
    assert database.signature() != before
    if kind == "sqlite":  # ... and removes the killed build's temporary and scratch files
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.")] == []
    database.close()


# ---- issue 24, point 8: a catalog of one's own songs, without a valence column ------------------------------

@pytest.mark.slow  # a build and a second file: in the slow run, which CI runs
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_build_catalog_without_a_valence_column_lists_no_expected_value(kind, trained, catalog_csv, tmp_path,
                                                                        request, capsys):
    unlabelled = tmp_path / "mine.csv"
    pd.read_csv(catalog_csv, keep_default_na=False).drop(columns="valence").to_csv(unlabelled, index=False)
    target = empty_target(kind, tmp_path, request)
    assert cli.main(["--build-catalog", "--data", str(unlabelled), "--model-dir", str(trained[0]),
                     "--catalog", str(target)]) == 0
    assert "catalog: " in capsys.readouterr().out
    store, labelled = open_store(target), reference_store(trained, catalog_csv, tmp_path)
    assert store.size() == catalog_tracks(catalog_csv)
    track, reference = store.by_track_id("DUPLICATE0000000000001"), labelled.by_track_id("DUPLICATE0000000000001")
    assert track["expected"] is None and reference["expected"] is not None
    assert track["prediction"] == reference["prediction"] and track["genres"] == ["Pop", "Rock"]
    store.close(), labelled.close()


def reference_store(trained, catalog_csv, tmp_path):
    """Return the catalog of the labelled file, built beside the test's."""
    target = tmp_path / "labelled.sqlite"
    build_catalog(catalog_csv, trained[0], target, log=lambda *_: None)
    return open_store(target)


def test_a_track_of_a_catalog_without_valence_is_answered_with_expected_null(make_app, trained, catalog_csv,
                                                                             tmp_path):
    unlabelled = tmp_path / "mine.csv"
    pd.read_csv(catalog_csv, keep_default_na=False).drop(columns="valence").to_csv(unlabelled, index=False)
    build_catalog(unlabelled, trained[0], tmp_path / "mine.sqlite", log=lambda *_: None)
    client = make_app(catalog=tmp_path / "mine.sqlite").test_client()
    answer = client.get("/predict?track_id=DUPLICATE0000000000001")
    assert answer.status_code == 200 and answer.json["expected"] is None
    assert response_errors(client.get("/openapi.json").json, "/predict", "GET", answer) == []


# ---- issue 26: a catalog build at the speed of the disk --------------------------------------------------------

@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_a_build_groups_and_writes_its_tracks_without_python_work_per_track(tmp_path):
    # 20,000 songs, half of them listed again under another genre further down the file: the grouping by
    # track and the rows written are numpy and SQLite's work, so the Python functions the build calls (a
    # profiler counts them) do not grow with the rows. A loop over the tracks made four calls per row.
    from valence.catalog.build import write_catalog
    from valence.model.predictor import Models
    from songs import RulePredictor

    songs = generate_dataset(20_000, seed=3).assign(genre="Pop")  # a genre the rule knows: no warnings
    again = songs.sample(frac=0.5, random_state=1).assign(genre="Rock")
    path = write_csv(pd.concat([songs, again], ignore_index=True), tmp_path / "songs.csv")
    frame, loaded = load_dataset(path)
    calls = 0

    def count(_frame, event, _arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        report = write_catalog(path, Models(RulePredictor(), "rule00000001", ()), tmp_path / "catalog.sqlite",
                               frame_and_report=(frame, loaded))
    finally:
        sys.setprofile(None)
    assert (report.rows, report.tracks) == (len(frame), frame["track_id"].nunique())
    assert calls < 0.5 * report.rows, f"{calls:,} Python calls for {report.rows:,} rows"
    store = open_store(tmp_path / "catalog.sqlite")
    twice = again["track_id"].iloc[0]
    assert store.by_track_id(twice)["genres"] == ["Pop", "Rock"]
    store.close()


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
def test_a_file_staged_for_postgresql_has_the_rows_without_the_indexes_and_trigrams_postgresql_builds(tmp_path):
    # A PostgreSQL build copies the staged file's tables and builds its own indexes: the staged file has the
    # same tracks, listings and meta data as a served file, and none of the SQLite indexes, nor the artists.
    from valence.catalog.build import write_catalog
    from valence.model.predictor import Models
    from songs import RulePredictor

    songs = generate_dataset(60, seed=5).assign(genre="Pop")
    path = write_csv(pd.concat([songs, songs.iloc[:10].assign(genre="Rock")], ignore_index=True), tmp_path / "s.csv")
    models = Models(RulePredictor(), "rule00000001", ())
    write_catalog(path, models, tmp_path / "served.sqlite")
    write_catalog(path, models, tmp_path / "staged.sqlite", staged=True)
    with sqlite3.connect(tmp_path / "served.sqlite") as served, sqlite3.connect(tmp_path / "staged.sqlite") as staged:
        counts = {}
        for table in ("tracks", "listings"):
            rows = staged.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            assert rows == served.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            counts[table] = len(rows)
        meta = dict(staged.execute("SELECT key, value FROM meta"))
        assert meta.keys() == dict(served.execute("SELECT key, value FROM meta")).keys()
        assert (counts["listings"], meta["tracks"]) == (70, str(counts["tracks"])) and counts["tracks"] > 40
        names = staged.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
                               "AND name NOT LIKE 'sqlite%'").fetchall()
        assert sorted(name for (name,) in names) == ["listings", "meta", "tracks"]
        assert {"artists", "artist_grams", "listings_by_track", "tracks_by_names"} <= {
            name for (name,) in served.execute("SELECT name FROM sqlite_master")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "served.sqlite", "staged.sqlite"]  # no scratch left


def test_a_tracks_warnings_are_the_sorted_union_of_its_listings_as_json():
    # Listings' warnings are encoded once per distinct list: the texts must still be json.dumps's, and a
    # track listed with different warnings (here an unknown genre in one listing only) gets their union.
    import json
    import numpy as np
    from valence.catalog.build import _json_lists, track_rows
    from valence.catalog.sqlite import NUMBERS

    lists = [[], ["b", "a"], ["a", "b"], ["é \"quoted\"", "b", "b"], ["日本"], ["b", "a"], ["tab\tand\\"]]
    assert _json_lists(lists) == [json.dumps(sorted(set(strings)), separators=(",", ":")) if strings else None
                                  for strings in lists]
    blob = np.zeros(len(NUMBERS), dtype="<f8").tobytes()
    unseen = '["unseen artist \\"Ünï\\""]'
    listings = [("A", "Pop", "X", "x", None, blob), ("A", "Polka", "X", "x", '["unknown genre Polka"]', blob),
                ("B", "Pop", "Y", "y", unseen, blob), ("B", "Rock", "Y", "y", unseen, blob),
                ("C", "Polka", "Z", "z", '["b","unknown genre Polka"]', blob),
                ("C", "Zydeco", "Z", "z", '["a","b","unknown genre Zydeco"]', blob), ("D", "Pop", "W", "w", None, blob)]
    warnings = {row[0]: row[9] for row in track_rows(listings)}
    assert warnings == {"A": '["unknown genre Polka"]', "B": unseen, "D": None,
                        "C": '["a","b","unknown genre Polka","unknown genre Zydeco"]'}


def blas_threads():
    """The thread count of each BLAS library loaded in this process."""
    import threadpoolctl

    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


class _ProcessState:
    """A stand-in predictor whose 'prediction' of a chunk is the state of the process it runs in: gc's count of
    frozen objects and its BLAS threads."""

    def predict(self, chunk, honest=False):
        import gc

        return gc.get_freeze_count(), blas_threads()


@pytest.mark.skipif(not FORKS, reason="the build forks its predicting processes on Linux")
def test_the_predicting_processes_start_frozen_with_one_blas_thread_each(unfrozen):
    import gc

    from valence.catalog import build

    threads_here = blas_threads()
    chunks = [pd.DataFrame({"x": range(3)}) for _ in range(3)]
    states = [state for _chunk, state in build.predicted(iter(chunks), _ProcessState())]
    assert len(states) == 3
    # A collection there leaves the build's pages shared; two processes of one BLAS thread each keep two cores busy.
    assert all(frozen > 0 and threads == [1] * len(threads_here) for frozen, threads in states)
    assert gc.get_freeze_count() == 0
    assert blas_threads() == threads_here  # the build's own process keeps its threads
