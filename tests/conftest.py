"""Shared fixtures: generated data in the Kaggle schema and models trained on it."""
import dataclasses
import itertools
import shutil

import pandas as pd
import pytest
import torch

from valence.api.app import create_app
from valence.api.context import service
from memory_catalog import load_catalog
from valence.catalog.build import build_catalog
from valence.config import bundle_path
from valence.training.pipeline import run_training
from valence.training.settings import FoldPlan, RunOptions, TrainConfig
from valence.model.predictor import Predictor
from valence.data.synthetic import generate_dataset, write_csv


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run torch on one thread: the tests' data are tiny, and on a busy 2-core machine two threads
    wait on each other (training the shared models took 25-46 s of wall time instead of 6-7 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_csv(tmp_path_factory):
    """Return a generated 3,000-row CSV in the exact Kaggle schema."""
    path = tmp_path_factory.mktemp("data") / "demo.csv"
    write_csv(generate_dataset(3000, seed=7), path)
    return path


def quick_options(data, model_dir, kinds=("regression", "classification"), epochs=3):
    """Return run options for a fast training run."""
    return RunOptions(data=data, model_dir=model_dir, kinds=kinds,
                      train=dataclasses.replace(TrainConfig(), epochs=epochs),
                      split=FoldPlan(folds=3, seed=0))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_csv):
    """Train both model kinds once on the demo data; return (model_dir, pipeline.TrainingRun)."""
    model_dir = tmp_path_factory.mktemp("models")
    run = run_training(quick_options(demo_csv, model_dir), log=lambda message: None)
    return model_dir, run


# Catalog rows the API tests rely on, by (genre, artist_name, track_name, track_id, popularity).
CATALOG_CASES = [
    # One track listed under two genres: one answer, the mean of two predictions.
    ("Pop", "Duo Act", "Shared Song", "DUPLICATE0000000000001", 40),
    ("Rock", "Duo Act", "Shared Song", "DUPLICATE0000000000001", 40),
    # Two different tracks with the same names (case and spaces differ): the more popular first.
    ("Pop", "Twin Artist", "Same Song", "TWINLOW000000000000001", 10),
    ("Jazz", "twin  artist", " SAME SONG ", "TWINHIGH00000000000001", 90),
    ("Pop", "Twin Artist", "Different Song", "TWINOTHER0000000000001", 50),
    # A genre the model never saw.
    ("Polka", "Oompah Band", "Beer Barrel", "POLKA00000000000000001", 5),
]


@pytest.fixture(scope="session")
def predictor(trained):
    """The Predictor of the session's trained models (both kinds)."""
    return Predictor.from_model_dir(trained[0])


@pytest.fixture(scope="session")
def catalog_csv(tmp_path_factory):
    """Return a small generated catalog CSV with the duplicate and same-name cases added."""
    frame = generate_dataset(300, seed=11)
    special = frame.iloc[:len(CATALOG_CASES)].copy()
    special.iloc[1] = special.iloc[0]  # the duplicate listing has identical features and valence
    special[["genre", "artist_name", "track_name", "track_id", "popularity"]] = CATALOG_CASES
    path = tmp_path_factory.mktemp("catalog") / "catalog.csv"
    write_csv(pd.concat([frame, special], ignore_index=True), path)
    return path


@pytest.fixture(scope="session")
def served_catalog(trained, catalog_csv, tmp_path_factory):
    """Return the small catalog scored with the trained models, as a SQLite file."""
    path = tmp_path_factory.mktemp("served") / "catalog.sqlite"
    build_catalog(catalog_csv, trained[0], path, log=lambda message: None)
    return path


@pytest.fixture(scope="session")
def reference_catalog(trained, catalog_csv):
    """Return the in-memory catalog of the small catalog CSV: the answers the served stores must give."""
    return load_catalog(catalog_csv, Predictor.from_model_dir(trained[0]))


@pytest.fixture(scope="session")
def make_app(trained, served_catalog):
    """Return a factory of test apps; keyword arguments override the catalog and model paths."""
    def make(catalog=served_catalog, model_dir=trained[0], **settings):
        return create_app({"TESTING": True, "VALENCE_CATALOG": str(catalog), "VALENCE_MODEL_DIR": str(model_dir),
                           "VALENCE_THREADS": None, "VALENCE_FREEZE_HEAP": False,
                           **settings})
    return make


@pytest.fixture(scope="session")
def mood_only(trained, tmp_path_factory):
    """Return a model folder holding only the classification model, as `--model classification` leaves one."""
    folder = tmp_path_factory.mktemp("mood_only")
    shutil.copy(bundle_path(trained[0], "classification"), folder)
    return folder


@pytest.fixture(scope="session")
def mood_app(make_app, mood_only, catalog_csv):
    """Return the app serving the classification-only folder and the small catalog scored with it."""
    build_catalog(catalog_csv, mood_only, log=lambda message: None)
    return make_app(catalog=mood_only / "catalog.sqlite", model_dir=mood_only)


# The whole API suite runs on both backends; the PostgreSQL half is in the slow run, which CI runs
# too, to keep the default run under a minute (the store's own tests cover both backends in both runs).
@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def app(request, make_app, trained, catalog_csv):
    """Return the app serving the trained models and the small catalog, from each backend (shared: do not change it)."""
    if request.param == "sqlite":
        return make_app()
    url = request.getfixturevalue("postgres_server").create_database("served")
    build_catalog(catalog_csv, trained[0], url, log=lambda message: None)
    postgres_app = make_app(catalog=url)
    request.addfinalizer(postgres_app.extensions["valence"].close)
    return postgres_app


def served(app):
    """Return the Service an app answers with now: its predictor, explainer and catalog store."""
    with app.test_request_context():
        return service()


@pytest.fixture
def client(app):
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Return a CLI runner of the app."""
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def postgres_server():
    """Start a throwaway PostgreSQL cluster on 127.0.0.1 for the session (skip, or fail under CI, without one)."""
    from postgres_server import start_server

    server = start_server()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server, request):
    """Return the URL of a new, empty database of the session's PostgreSQL server."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres_server.create_database(f"{name}_{next(DATABASE_NUMBERS)}")


DATABASE_NUMBERS = itertools.count()


def empty_target(kind, tmp_path, request):
    """Return a catalog target with nothing in it yet: a file path, or a new PostgreSQL database's URL."""
    return tmp_path / "catalog.sqlite" if kind == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def unfrozen():
    """No object frozen (gc.freeze) while the test runs: an app of an earlier test may have frozen its heap;
    what was frozen is frozen again after."""
    import gc

    frozen = gc.get_freeze_count()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if frozen:
        gc.freeze()
