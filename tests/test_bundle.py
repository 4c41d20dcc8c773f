import os

import numpy as np
import pandas as pd
import pytest
import torch

from valence.model import bundle as bundle_module
from valence.model.bundle import load_bundle, load_bundle_from_dir
from valence.config import BUNDLE_FORMAT, ValenceError, bundle_path
from valence.data.load import load_dataset
from valence.training.modules import predict_arrays


def test_bundle_loads_with_weights_only_and_is_self_describing(trained):
    model_dir, _ = trained
    payload = torch.load(bundle_path(model_dir, "regression"), weights_only=True)
    assert payload["format"] == BUNDLE_FORMAT and payload["kind"] == "regression"
    assert payload["class_edges"] == [0.35, 0.65]
    assert len(payload["data"]["sha256"]) == 64
    assert payload["versions"]["torch"] == torch.__version__
    assert set(payload["metrics"]) >= {"test_mae", "test_rmse", "test_r2", "baseline_mae"}


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_round_trip_rebuilds_the_same_predictions(trained, demo_csv, kind):
    model_dir, run = trained
    frame, _ = load_dataset(demo_csv)
    original = predict_arrays(run.models[kind].model, run.models[kind].encoder.transform(frame))
    loaded = load_bundle_from_dir(model_dir, kind)
    rebuilt = predict_arrays(loaded.model, loaded.encoder.transform(frame))
    np.testing.assert_allclose(rebuilt, original, rtol=0, atol=1e-6)
    assert not loaded.model.training


def test_save_interrupted_mid_write_keeps_the_previous_bundle(trained, tmp_path, monkeypatch):
    model_dir, run = trained
    path = tmp_path / "regression.pt"
    path.write_bytes(bundle_path(model_dir, "regression").read_bytes())
    before = path.read_bytes()

    def dies_half_way(payload, target):
        with open(target, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    trained_model = run.models["regression"]
    with pytest.raises(KeyboardInterrupt):
        bundle_module.save_bundle(path, "regression", trained_model.model, {}, trained_model.encoder,
                                  metrics={}, train_config={}, data={}, split={})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regression.pt"]
    assert load_bundle(path, "regression").kind == "regression"


def test_missing_bundle_says_how_to_train(tmp_path):
    with pytest.raises(ValenceError, match="train one first .*--model classification"):
        load_bundle_from_dir(tmp_path, "classification")


@pytest.mark.parametrize("content", [b"", b"not a bundle at all", b"PK\x03\x04truncated"])
def test_damaged_files_are_refused(tmp_path, content):
    path = tmp_path / "regression.pt"
    path.write_bytes(content)
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(path)


def test_truncated_real_bundle_is_refused(trained, tmp_path):
    model_dir, _ = trained
    data = bundle_path(model_dir, "regression").read_bytes()
    path = tmp_path / "regression.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(path)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "regression.pt"
    torch.save({"format": BUNDLE_FORMAT, "kind": "regression", "payload": Exploit(marker)}, path)
    with pytest.raises(ValenceError, match="not a valid model bundle"):
        load_bundle(path)
    assert not marker.exists()


def test_other_format_version_is_refused(trained, tmp_path):
    model_dir, _ = trained
    payload = torch.load(bundle_path(model_dir, "regression"), weights_only=True)
    payload["format"] = BUNDLE_FORMAT + 1
    path = tmp_path / "regression.pt"
    torch.save(payload, path)
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


def test_a_bundle_in_torch_legacy_format_loads_and_predicts_as_the_zip_one(trained, tmp_path, demo_csv):
    """torch.save's older, non-zip format goes through torch.load(weights_only=True); the bundle serves alike."""
    model_dir, _ = trained
    payload = torch.load(bundle_path(model_dir, "regression"), weights_only=True)
    path = tmp_path / "regression.pt"
    torch.save(payload, path, _use_new_zipfile_serialization=False)
    legacy, current = load_bundle(path), load_bundle(bundle_path(model_dir, "regression"))
    arrays = current.encoder.transform(pd.read_csv(demo_csv).head(50))
    assert np.array_equal(legacy.network.predict(arrays), current.network.predict(arrays))
    assert np.array_equal(predict_arrays(legacy.model, arrays), predict_arrays(current.model, arrays))
