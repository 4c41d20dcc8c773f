"""Tests of the API with its catalog store: model versions, swaps without a restart, bad catalogs, a database away."""
import sqlite3
import time

import pytest

from conftest import empty_target
from test_serving import build, copy_models, save_changed
from valence.config import MODEL_KINDS
from valence.model.predictor import model_version

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}
LOOKUP = "/predict?artist_name=Duo Act&track_name=Shared Song"


def test_every_answer_names_the_model_version_the_catalog_was_scored_with(client, trained):
    version = model_version(trained[0])
    health = client.get("/health").json
    assert health["model"]["version"] == health["catalog"]["model_version"] == version
    assert health["status"] == "ok" and health["catalog"]["tracks"] == 233 and health["catalog"]["rows"] == 306
    assert health["notes"] == []
    for response in (client.get(LOOKUP), client.get("/predict?track_id=NOSUCH"), client.post("/predict", json=SONG),
                     client.get("/health"), client.get("/openapi.json"), client.get("/nowhere")):
        assert response.headers["X-Model-Version"] == version


@pytest.mark.slow  # a retrain and two builds (a second or more): in the slow run, which CI runs
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_retrain_is_served_once_its_catalog_is_built_without_a_restart(kind, make_app, trained, catalog_csv,
                                                                         tmp_path, request):
    model_dir = copy_models(trained[0], tmp_path / "models")
    target = empty_target(kind, tmp_path, request)
    build(catalog_csv, model_dir, target)
    app = make_app(catalog=target, model_dir=model_dir, VALENCE_RELOAD_SECONDS=0)
    client = app.test_client()
    first = client.get(LOOKUP)
    old_version = first.headers["X-Model-Version"]
    for kind_saved in MODEL_KINDS:  # a retrain saves the bundles one after the other, then the catalog
        save_changed(model_dir, kind_saved)
        held = client.get(LOOKUP)
        assert held.status_code == 200 and held.json == first.json and held.headers["X-Model-Version"] == old_version
        assert client.post("/predict", json=SONG).headers["X-Model-Version"] == old_version
    assert any("waiting for a matching pair" in note for note in client.get("/health").json["notes"])
    build(catalog_csv, model_dir, target)
    swapped = client.get(LOOKUP)
    assert swapped.headers["X-Model-Version"] == model_version(model_dir) != old_version
    assert swapped.json["prediction"] != pytest.approx(first.json["prediction"], abs=1e-4)
    health = client.get("/health").json
    assert health["catalog"]["model_version"] == health["model"]["version"] == model_version(model_dir)
    app.extensions["valence"].close()


@pytest.mark.parametrize(("content", "error"), [
    (lambda whole: b"", "is empty"),
    (lambda whole: whole[:len(whole) // 2], "damaged"),
    (lambda whole: b"SQLite format 3\x00" + b"\x00" * 200, "not a catalog"),
    (lambda whole: b"genre,artist_name\nPop,A\n", "not a catalog"),
], ids=["empty", "truncated", "header only", "csv"])
def test_a_bad_catalog_file_degrades_health_and_lookups_answer_503(make_app, served_catalog, tmp_path, content,
                                                                   error):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(content(served_catalog.read_bytes()))
    client = make_app(catalog=path).test_client()
    health = client.get("/health").json
    assert health["status"] == "degraded" and error in health["catalog"]["error"]
    assert "--build-catalog" in health["catalog"]["error"] and str(tmp_path) not in health["catalog"]["error"]
    response = client.get(LOOKUP)
    assert response.status_code == 503 and response.mimetype == "application/json"
    assert "--build-catalog" in response.json["message"]
    assert client.post("/predict", json=SONG).status_code == 200


def test_a_catalog_scored_by_another_model_is_not_served(make_app, trained, served_catalog, tmp_path):
    model_dir = copy_models(trained[0], tmp_path / "models")
    save_changed(model_dir, "regression")
    client = make_app(catalog=served_catalog, model_dir=model_dir).test_client()
    health = client.get("/health").json
    assert health["status"] == "degraded" and f"scored with model {model_version(trained[0])}" in health[
        "catalog"]["error"]
    response = client.get(LOOKUP)
    # Both lie outside the project folder: the hint names the settings to pass, not a wrong path.
    assert response.status_code == 503 and response.json["message"].endswith(
        "; build it with: python musical_valence_predictor.py --build-catalog --model-dir DIR --catalog TARGET "
        "(DIR is the server's VALENCE_MODEL_DIR; TARGET is the server's VALENCE_CATALOG))")
    # Answers name the model folder and the catalog by name, never by the server's paths.
    for message in (health["catalog"]["error"], response.json["message"]):
        assert str(tmp_path) not in message and str(served_catalog.parent) not in message
    assert client.post("/predict", json=SONG).headers["X-Model-Version"] == model_version(model_dir)


def test_a_catalog_damaged_while_served_answers_503_not_500(make_app, trained, catalog_csv, tmp_path):
    path = tmp_path / "catalog.sqlite"
    build(catalog_csv, trained[0], path)
    app = make_app(catalog=path)
    store = app.extensions["valence"].current().store
    store.connection.close()  # as a read error would: the store cannot answer
    store.connection = sqlite3.connect(":memory:", check_same_thread=False)
    response = app.test_client().get(LOOKUP)
    assert response.status_code == 503 and response.mimetype == "application/json"
    assert "cannot be read" in response.json["message"] and str(tmp_path) not in response.json["message"]


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_an_unreachable_database_answers_503_quickly_and_health_says_why(make_app):
    client = make_app(catalog="postgresql://valence:secret@127.0.0.1:1/catalog").test_client()
    started = time.monotonic()
    health = client.get("/health").json
    assert health["status"] == "degraded" and "cannot be reached" in health["catalog"]["error"]
    assert "secret" not in health["catalog"]["error"] and health["catalog"]["backend"] == "postgresql"
    response = client.get(LOOKUP)
    assert response.status_code == 503 and "cannot be reached" in response.json["message"]
    assert time.monotonic() - started < 10
    assert client.post("/predict", json=SONG).status_code == 200
