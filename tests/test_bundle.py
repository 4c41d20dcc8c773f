import json
import shutil

import numpy as np
import pytest
import safetensors.numpy
import torch

from valence.model import bundle as bundle_module
from valence.model import bundlefile
from valence.model.bundle import load_bundle, load_bundle_from_dir
from valence.model.predictor import Predictor
from valence.config import BUNDLE_FORMAT, ValenceError, bundle_path
from valence.data.load import load_dataset
from valence.training.metrics import scaled
from valence.training.modules import predict_arrays, state_arrays, torch_module


def test_bundle_is_a_safetensors_file_with_its_metadata_as_json(trained):
    model_dir, run = trained
    path = bundle_path(model_dir, "regression")
    assert path.name == "regression.safetensors"
    tensors = safetensors.numpy.load_file(path)
    with safetensors.safe_open(str(path), framework="np") as handle:
        payload = json.loads(handle.metadata()[bundlefile.METADATA_KEY])
    assert payload["format"] == BUNDLE_FORMAT and payload["kind"] == "regression"
    assert payload["class_edges"] == [0.35, 0.65]
    assert len(payload["data"]["sha256"]) == 64
    assert payload["versions"]["torch"] == torch.__version__
    assert set(payload["metrics"]) >= {"test_mae", "test_rmse", "test_r2", "baseline_mae"}
    # Every array is a tensor: the weights and the encoder's tables; the JSON holds none.
    weights = state_arrays(run.models["regression"].model)
    assert {f"state_dict/{key}" for key in weights} < set(tensors)
    assert {"encoder/artist_table/rows", "encoder/song_table/rows", "encoder/reference/artist_codes",
            "encoder/reference/values", "encoder/normal_scores", "encoder/quantiles/energy"} < set(tensors)
    assert tensors["encoder/reference/artist_codes"].dtype == np.int32
    assert payload["encoder"]["artist_table"]["names"] and "rows" not in payload["encoder"]["artist_table"]
    for key, value in weights.items():
        assert np.array_equal(tensors[f"state_dict/{key}"], value), key


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_round_trip_rebuilds_the_same_predictions(trained, demo_csv, kind):
    model_dir, run = trained
    frame, _ = load_dataset(demo_csv)
    original = run.models[kind].encoder.transform(frame)
    expected = predict_arrays(run.models[kind].model, original)
    loaded = load_bundle_from_dir(model_dir, kind)
    arrays = loaded.encoder.transform(frame)
    for key in ("numeric", "categorical"):
        assert np.array_equal(arrays[key], original[key]) and arrays[key].dtype == original[key].dtype
    module = torch_module(loaded)
    np.testing.assert_allclose(predict_arrays(module, arrays), expected, rtol=0, atol=1e-6)
    if kind == "classification":  # the served probabilities: the logits divided by the calibrated temperature
        assert loaded.network.temperature == loaded.meta["temperature"] != 1.0
        expected = scaled(expected, loaded.network.temperature)
    np.testing.assert_allclose(loaded.network.predict(arrays), expected, rtol=0, atol=1e-5)
    assert not module.training


def test_both_kinds_share_one_encoder_when_their_states_are_equal(trained):
    model_dir, _ = trained
    predictor = Predictor.from_model_dir(model_dir)
    assert predictor.regression.encoder is predictor.classification.encoder


def test_save_interrupted_mid_write_keeps_the_previous_bundle(trained, tmp_path, monkeypatch):
    model_dir, run = trained
    path = tmp_path / "regression.safetensors"
    path.write_bytes(bundle_path(model_dir, "regression").read_bytes())
    before = path.read_bytes()

    def dies_half_way(tensors, target, metadata=None):
        with open(target, "wb") as handle:
            handle.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{half a header")
        raise KeyboardInterrupt

    monkeypatch.setattr(bundlefile, "save_file", dies_half_way)
    trained_model = run.models["regression"]
    with pytest.raises(KeyboardInterrupt):
        bundle_module.save_bundle(path, "regression", state_arrays(trained_model.model), {}, trained_model.encoder,
                                  metrics={}, train_config={}, data={}, split={},
                                  intervals=load_bundle(path, "regression").intervals)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regression.safetensors"]
    assert load_bundle(path, "regression").kind == "regression"


def test_missing_bundle_says_how_to_train(tmp_path):
    with pytest.raises(ValenceError, match="train one first .*--model classification"):
        load_bundle_from_dir(tmp_path, "classification")


@pytest.mark.parametrize("content", [b"", b"not a bundle at all", b"PK\x03\x04truncated"])
def test_damaged_files_are_refused(tmp_path, content):
    path = tmp_path / "regression.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(path)


def test_truncated_real_bundle_is_refused(trained, tmp_path):
    model_dir, _ = trained
    data = bundle_path(model_dir, "regression").read_bytes()
    path = tmp_path / "regression.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(path)


def test_other_format_version_is_refused(trained, tmp_path):
    model_dir, _ = trained
    payload = bundlefile.read(bundle_path(model_dir, "regression"))
    payload["format"] = BUNDLE_FORMAT + 1
    path = tmp_path / "regression.safetensors"
    bundlefile.write(path, payload)
    with pytest.raises(ValenceError, match="bundle format"):
        load_bundle(path)


def test_wrong_kind_is_refused(trained):
    model_dir, _ = trained
    with pytest.raises(ValenceError, match="holds a classification model"):
        load_bundle(bundle_path(model_dir, "classification"), "regression")


def test_a_missing_bundle_says_once_how_to_train_it_into_the_folder_asked_for(tmp_path):
    folder = tmp_path / "my models"
    with pytest.raises(ValenceError) as info:
        load_bundle_from_dir(folder, "classification")
    message = str(info.value)
    assert message.count("musical_valence_predictor.py") == 1
    assert message.endswith(f"train one first with `python musical_valence_predictor.py --model classification "
                            f"--model-dir '{folder}'`")


def earlier_bundle(model_dir, path, legacy=False):
    """Write the regression bundle as the earlier version saved it: torch.save of one dict."""
    payload = bundlefile.read(bundle_path(model_dir, "regression"))
    payload["state_dict"] = {key: torch.from_numpy(value.copy()) for key, value in payload["state_dict"].items()}
    payload["format"] = 4
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_bundle_of_the_earlier_version_is_refused_in_one_line_that_says_how_to_train(trained, tmp_path, legacy):
    path = earlier_bundle(trained[0], tmp_path / "regression.safetensors", legacy)
    with pytest.raises(ValenceError) as refused:
        load_bundle_from_dir(tmp_path, "regression")
    assert str(refused.value) == (
        f"{path} was saved by an earlier version of this tool in a format this version no longer reads (nothing in "
        f"it was loaded); train again with `python musical_valence_predictor.py --model regression "
        f"--model-dir {tmp_path}`")


def test_a_folder_with_only_the_earlier_versions_files_says_so(trained, tmp_path):
    earlier = earlier_bundle(trained[0], tmp_path / "regression.pt")
    with pytest.raises(ValenceError, match=r"^\S*regression\.pt was saved by an earlier version .*no longer reads.*"
                                           r"--model regression --model-dir") as refused:
        load_bundle_from_dir(tmp_path, "regression")
    assert "\n" not in str(refused.value)
    shutil.copy(earlier, tmp_path / "classification.pt")
    with pytest.raises(ValenceError, match=r"regression\.pt and \S*classification\.pt were saved by an earlier "
                                           r"version .* `python musical_valence_predictor.py --model both --model-dir"):
        Predictor.from_model_dir(tmp_path)
    # A current bundle beside an earlier one is served; the earlier file is left alone.
    shutil.copy(bundle_path(trained[0], "regression"), bundle_path(tmp_path, "regression"))
    assert Predictor.from_model_dir(tmp_path).classification is None


# ---- issue 24, point 18: a file of a newer version is refused naming both format versions ------------------

@pytest.mark.parametrize("tree", [
    {"format": BUNDLE_FORMAT + 1, "kind": "regression", "network": {"weights": np.zeros(3)}},  # keys renamed
    {"format": BUNDLE_FORMAT + 1, "kind": "regression", "model_args": [], "state_dict": "packed", "encoder": 3},
])
def test_a_bundle_of_a_newer_version_is_refused_naming_both_formats(tmp_path, tree):
    bundlefile.write(tmp_path / "regression.safetensors", tree)
    with pytest.raises(ValenceError) as error:
        load_bundle(tmp_path / "regression.safetensors", "regression")
    assert str(error.value) == (
        f"{tmp_path / 'regression.safetensors'} was written by a newer version of this tool, in bundle format "
        f"{BUNDLE_FORMAT + 1}; this version reads format {BUNDLE_FORMAT}: use that version, or train the model "
        f"again with this one")


def test_the_served_folder_with_a_newer_bundle_says_so_in_health(make_app, tmp_path):
    bundlefile.write(tmp_path / "regression.safetensors", {"format": BUNDLE_FORMAT + 1, "kind": "regression"})
    health = make_app(model_dir=tmp_path, catalog=tmp_path / "none.sqlite").test_client().get("/health").json
    assert f"newer version of this tool, in bundle format {BUNDLE_FORMAT + 1}" in health["model"]["error"]
