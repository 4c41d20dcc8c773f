import json

import numpy as np
import pytest

from valence.config import SplitConfig, ValenceError, metrics_path
from valence.encoding import FeatureEncoder
from valence.models import ENSEMBLE_BELOW_ROWS, ENSEMBLE_MEMBERS
from valence.pipeline import load_splits, new_model, predict_test_split, run_evaluation, run_training
from valence.trainer import TrainConfig
from valence.synthetic import generate_dataset, write_csv

from conftest import quick_options


def test_splits_share_no_track_and_cover_every_row(demo_csv):
    splits = load_splits(demo_csv, SplitConfig(seed=3), log=lambda message: None)
    ids = [set(part["track_id"]) for part in (splits.train, splits.val, splits.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    counts = splits.counts()
    assert counts["train_rows"] + counts["val_rows"] + counts["test_rows"] == splits.report.rows_kept
    assert 0.15 < counts["test_tracks"] / sum(len(i) for i in ids) < 0.25


def test_metrics_file_has_figures_counts_and_provenance(trained):
    model_dir, run = trained
    record = json.loads(metrics_path(model_dir, "regression").read_text())
    for key in ("test_mae", "test_rmse", "test_r2", "baseline_mae", "baseline_r2", "train_rows",
                "test_rows", "data_sha256", "best_epoch", "test_mae_seen_artist", "test_mae_unseen_artist"):
        assert key in record, key
    assert record["test_rows_seen_artist"] + record["test_rows_unseen_artist"] == record["test_rows"]
    assert record == run.models["regression"].metrics_record
    assert record["data_sha256"] == run.splits.report.sha256
    assert record["test_mae"] < record["baseline_mae"]


def test_evaluation_of_saved_models_repeats_the_training_figures(trained, demo_csv):
    model_dir, run = trained
    again = run_evaluation(quick_options(demo_csv, model_dir), log=lambda message: None)
    for kind in ("regression", "classification"):
        for key, value in again[kind].items():
            if key.startswith("test_") and isinstance(value, float):
                assert value == pytest.approx(run.models[kind].metrics_record[key], abs=1e-6), key


def test_the_run_carries_each_models_test_predictions(trained):
    _, run = trained
    regression, classification = run.models["regression"], run.models["classification"]
    assert run.interrupted is None and list(run.models) == ["regression", "classification"]
    assert regression.test_predictions.shape == (len(run.splits.test),)
    assert classification.test_predictions.shape == (len(run.splits.test), 3)
    np.testing.assert_allclose(regression.test_predictions,
                               predict_test_split(regression.model, regression.encoder, run.splits), atol=1e-6)
    truth = run.splits.test["valence"].to_numpy()
    assert regression.metrics_record["test_mae"] == pytest.approx(np.mean(np.abs(regression.test_predictions - truth)))


def test_too_few_rows_is_a_clear_error(tmp_path):
    write_csv(generate_dataset(10, seed=1), tmp_path / "tiny.csv")
    with pytest.raises(ValenceError, match="only 10 usable rows"):
        load_splits(tmp_path / "tiny.csv", SplitConfig(), log=lambda message: None)


@pytest.mark.parametrize("members, n_rows, expected", [
    (0, ENSEMBLE_BELOW_ROWS - 1, ENSEMBLE_MEMBERS), (0, ENSEMBLE_BELOW_ROWS, 1), (2, 10, 2), (1, 10, 1)])
def test_default_ensemble_size_follows_the_training_rows(members, n_rows, expected):
    frame = generate_dataset(300, seed=1)
    encoder = FeatureEncoder().fit(frame, frame["valence"].to_numpy())
    model, model_args = new_model("regression", encoder, TrainConfig(members=members), n_rows)
    assert len(model.members) == expected and model_args["n_members"] == expected


def test_an_artist_seen_in_training_counts_as_seen_however_it_is_spelt(trained, demo_csv):
    from valence.bundle import load_bundle_from_dir
    from valence.pipeline import Splits, test_split_metrics

    bundle = load_bundle_from_dir(trained[0], "regression")
    splits = load_splits(demo_csv, SplitConfig(seed=0), log=lambda message: None)
    test = splits.train.iloc[:40].copy()
    test["artist_name"] = test["artist_name"].str.upper() + "  "
    shouted = Splits(report=splits.report, train=splits.train, val=splits.val, test=test)
    metrics = test_split_metrics("regression", predict_test_split(bundle.model, bundle.encoder, shouted), shouted)
    assert (metrics["test_rows_seen_artist"], metrics["test_rows_unseen_artist"]) == (40, 0)


def _load_messages(path):
    messages = []
    load_splits(path, SplitConfig(seed=0), log=messages.append)
    return [m for m in messages if m.startswith("warning:")]


def test_a_file_of_duplicated_rows_gets_a_warning(tmp_path):
    songs = generate_dataset(1000, seed=4)
    write_csv(__import__("pandas").concat([songs, songs], ignore_index=True), tmp_path / "twice.csv")
    warnings = _load_messages(tmp_path / "twice.csv")
    assert len(warnings) == 1 and "1,000 of 2,000 rows are exact copies of an earlier row" in warnings[0]


def test_too_few_rows_for_the_figures_to_mean_much_gets_a_warning(tmp_path):
    write_csv(generate_dataset(50, seed=4), tmp_path / "small.csv")
    counts = load_splits(tmp_path / "small.csv", SplitConfig(seed=0), log=lambda message: None).counts()
    assert counts["val_rows"] < 10 and counts["test_rows"] < 20
    warnings = _load_messages(tmp_path / "small.csv")
    assert len(warnings) == 1 and "at least 100" in warnings[0]
    assert f"only {counts['val_rows']} validation rows and {counts['test_rows']} test rows" in warnings[0]


def test_a_healthy_file_gets_no_warning(demo_csv):
    assert _load_messages(demo_csv) == []


def test_messages_say_1_row_and_1_epoch(tmp_path, demo_csv):
    write_csv(generate_dataset(1, seed=4), tmp_path / "one.csv")
    with pytest.raises(ValenceError, match="has only 1 usable row; at least 20"):
        load_splits(tmp_path / "one.csv", SplitConfig(seed=0), log=lambda message: None)
    messages = []
    run_training(quick_options(demo_csv, tmp_path / "models", kinds=("regression",), epochs=1), log=messages.append)
    assert "training the regression model (at most 1 epoch, device cpu)" in messages
