"""Tests of what a process serves: models and catalog swapped as a pair, never one without its match."""
import shlex
import shutil

import pytest

from conftest import empty_target
from valence.catalog.build import build_catalog
from valence.config import MODEL_KINDS, bundle_path
from valence.fileio import atomic_path
from valence.model import bundlefile
from valence.api import serving as serving_module
from valence.api.serving import Serving
from valence.model.predictor import load_models, model_version
from valence.catalog.sql import shown_target

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]  # PostgreSQL: the slow run


def copy_models(source, target):
    """Copy the bundles of one model directory into another (created)."""
    target.mkdir(parents=True, exist_ok=True)
    for kind in MODEL_KINDS:
        shutil.copy(bundle_path(source, kind), bundle_path(target, kind))
    return target


def save_changed(model_dir, kind, shift=0.05):
    """Replace a bundle atomically with one whose output bias is shifted: a new model, as a retrain saves it."""
    payload = bundlefile.read(bundle_path(model_dir, kind))
    last_bias = [name for name in payload["state_dict"] if name.endswith("bias")][-1]
    payload["state_dict"][last_bias] = payload["state_dict"][last_bias] + shift
    with atomic_path(bundle_path(model_dir, kind)) as temporary:
        bundlefile.write(temporary, payload)


def build(catalog_csv, model_dir, target):
    build_catalog(catalog_csv, model_dir, target, log=lambda message: None)


@pytest.fixture(params=BACKENDS)
def setup(request, trained, catalog_csv, tmp_path):
    """Return (model dir, catalog target) with a copy of the trained models and a catalog scored with them."""
    model_dir = copy_models(trained[0], tmp_path / "models")
    target = empty_target(request.param, tmp_path, request)
    build(catalog_csv, model_dir, target)
    return model_dir, target


@pytest.mark.slow  # a retrain and a build: in the slow run, which CI runs
def test_a_new_model_is_served_only_with_a_catalog_scored_by_it(setup, catalog_csv):
    model_dir, target = setup
    serving = Serving(model_dir, target, check_seconds=0)
    first = serving.current()
    assert first.store.model_version == first.version == model_version(model_dir)
    before = first.store.by_track_id("DUPLICATE0000000000001")
    for kind in MODEL_KINDS:  # a retrain saves one bundle, then the other
        save_changed(model_dir, kind)
        held = serving.current()
        assert held is first, "a half-saved or unscored model must not be served"
        assert held.store.by_track_id("DUPLICATE0000000000001") == before
    assert any("waiting for a matching pair" in note for note in serving.notes)
    build(catalog_csv, model_dir, target)
    second = serving.current()
    assert second.version == model_version(model_dir) != first.version
    assert second.store.model_version == second.version
    after = second.store.by_track_id("DUPLICATE0000000000001")
    assert after["prediction"] != pytest.approx(before["prediction"], abs=1e-4)
    reference = second.models.predictor.predict(second.store.song_rows("DUPLICATE0000000000001"))
    assert after["prediction"] == pytest.approx(float(reference.valence.mean()), rel=1e-5)
    assert serving.notes == []
    serving.close()


def test_a_rebuilt_catalog_for_the_same_model_is_picked_up(setup, tmp_path):
    from valence.data.synthetic import generate_dataset, write_csv

    model_dir, target = setup
    serving = Serving(model_dir, target, check_seconds=0)
    first = serving.current()
    songs = generate_dataset(40, seed=99)
    build(write_csv(songs, tmp_path / "other.csv"), model_dir, target)
    second = serving.current()
    assert second.store is not first.store and second.models is first.models
    assert second.store.size() == songs["track_id"].nunique() and second.store.by_track_id("DUPLICATE0000000000001") is None
    serving.close()


def test_without_a_catalog_the_models_serve_and_lookups_say_what_to_run(trained, tmp_path):
    serving = Serving(trained[0], tmp_path / "absent.sqlite", check_seconds=0)
    pair = serving.current()
    assert pair.models is not None and pair.store is None
    assert "no catalog at" in pair.catalog_error and "--build-catalog" in pair.catalog_error
    serving.close()


def test_a_catalog_scored_by_other_models_is_not_served(setup, tmp_path):
    model_dir, target = setup
    other_models = copy_models(model_dir, tmp_path / "other-models")
    save_changed(other_models, "regression")
    serving = Serving(other_models, target, check_seconds=0)
    pair = serving.current()
    assert pair.store is None and pair.version == model_version(other_models)
    assert f"scored with model {load_models(model_dir).version}" in pair.catalog_error
    hint = f"--build-catalog --model-dir {shlex.quote(str(other_models))} --catalog {shlex.quote(shown_target(target))}"
    assert hint in pair.catalog_error  # the command that rebuilds this catalog with these models
    serving.close()


def test_without_models_nothing_is_served_and_the_error_says_so(setup, tmp_path):
    _model_dir, target = setup
    serving = Serving(tmp_path / "no-models", target, check_seconds=0)
    pair = serving.current()
    assert pair.models is None and pair.store is None and "no saved model in" in pair.model_error
    serving.close()


def test_a_deleted_catalog_file_keeps_the_pair_it_had(trained, catalog_csv, tmp_path):
    model_dir = copy_models(trained[0], tmp_path / "models")
    target = tmp_path / "catalog.sqlite"
    build(catalog_csv, model_dir, target)
    serving = Serving(model_dir, target, check_seconds=0)
    first = serving.current()
    target.unlink()
    assert serving.current() is first and first.store.by_track_id("DUPLICATE0000000000001") is not None
    assert any("no catalog at" in note for note in serving.notes)
    serving.close()


def test_checks_happen_at_most_every_check_seconds(setup, catalog_csv):
    model_dir, target = setup
    serving = Serving(model_dir, target, check_seconds=3600)
    first = serving.current()
    for kind in MODEL_KINDS:
        save_changed(model_dir, kind)
    build(catalog_csv, model_dir, target)
    assert serving.current() is first  # not looked at yet
    serving.next_check = 0
    assert serving.current().version == model_version(model_dir)
    serving.close()


def test_a_newly_served_pair_is_moved_out_of_the_cyclic_collectors_reach(setup, catalog_csv, monkeypatch):
    model_dir, target = setup
    freezes = []
    monkeypatch.setattr(serving_module, "freeze_heap", lambda: freezes.append(1))  # not gc.freeze: builds use it too
    serving = Serving(model_dir, target, check_seconds=0, freeze_heap=True)
    first = serving.current()
    assert len(freezes) == 1  # the first pair loaded
    serving.current()
    assert len(freezes) == 1  # the same models and catalog checked again: nothing new to freeze
    for kind in MODEL_KINDS:
        save_changed(model_dir, kind)
    build(catalog_csv, model_dir, target)
    assert serving.current().version != first.version and len(freezes) == 2
    serving.close()
