import json

import numpy as np
import pytest

from valence.config import ValenceError, metrics_path
from valence.training.crossfit import seen_artists
from valence.training.pipeline import load_splits, run_evaluation, run_training
from valence.training.settings import FoldPlan, TrainConfig, folds_for
from valence.data.synthetic import generate_dataset, write_csv

from conftest import quick_options


def test_every_row_is_a_test_row_of_one_fold_and_a_track_never_spans_two(demo_csv):
    splits = load_splits(demo_csv, FoldPlan(folds=4, seed=3), log=lambda message: None)
    assert sorted(set(splits.fold.tolist())) == [0, 1, 2, 3]
    counts = splits.counts()
    assert counts["rows"] == counts["test_rows"] == splits.report.rows_kept == sum(counts["fold_rows"])
    assert all(500 < n < 1000 for n in counts["fold_rows"])  # 3,000 rows in 4 folds of about 750
    folds_of_track = splits.frame.assign(fold=splits.fold).groupby("track_id")["fold"].nunique()
    assert (folds_of_track == 1).all()


def test_the_fold_count_follows_the_data_size(demo_csv):
    sizes = (300, 999, 1_000, 1_500, 2_499, 2_500, 9_999, 19_828, 99_999, 100_000, 232_725)
    assert [folds_for(n) for n in sizes] == [10, 10, 20, 20, 20, 10, 10, 10, 10, 3, 3]
    assert load_splits(demo_csv, FoldPlan(), log=lambda message: None).plan.folds == 10
    assert load_splits(demo_csv, FoldPlan(folds=4), log=lambda message: None).plan.folds == 4


def test_metrics_file_has_figures_counts_and_provenance(trained):
    model_dir, run = trained
    record = json.loads(metrics_path(model_dir, "regression").read_text())
    for key in ("test_mae", "test_rmse", "test_r2", "baseline_mae", "baseline_r2", "rows", "figures_from",
                "test_rows", "data_sha256", "best_epoch", "test_mae_seen_artist", "test_mae_unseen_artist"):
        assert key in record, key
    assert record["test_rows_seen_artist"] + record["test_rows_unseen_artist"] == record["test_rows"] == 3000
    assert record["figures_from"].startswith("out-of-fold")
    assert len(record["best_epoch"]) == len(record["fold_rows"]) == record["split"]["folds"] == 3
    assert record == run.models["regression"].metrics_record
    assert record["data_sha256"] == run.splits.report.sha256
    assert record["test_mae"] < record["baseline_mae"]


@pytest.mark.slow  # the fold models refitted: in the slow run, which CI runs
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
    assert len(regression.histories) == 3 and regression.history is regression.histories[0]
    truth = run.splits.test["valence"].to_numpy()
    assert regression.metrics_record["test_mae"] == pytest.approx(np.mean(np.abs(regression.test_predictions - truth)))


def test_too_few_rows_is_a_clear_error(tmp_path):
    write_csv(generate_dataset(10, seed=1), tmp_path / "tiny.csv")
    with pytest.raises(ValenceError, match="only 10 usable rows"):
        load_splits(tmp_path / "tiny.csv", FoldPlan(), log=lambda message: None)


def test_no_thread_is_left_importing_when_the_data_is_refused(tmp_path, monkeypatch):
    # The run imports torch._dynamo in a thread while it reads the data; a fork with that thread still running
    # could leave the child an import lock held forever, so it has always ended when run_training goes on or stops.
    import threading
    import time
    import types

    from valence.training import pipeline

    monkeypatch.setattr(pipeline, "importlib", types.SimpleNamespace(import_module=lambda name: time.sleep(0.3)))
    write_csv(generate_dataset(10, seed=0), tmp_path / "tiny.csv")
    with pytest.raises(ValenceError, match="at least 20 are needed"):
        run_training(quick_options(tmp_path / "tiny.csv", tmp_path / "models"), log=lambda message: None)
    assert [t.name for t in threading.enumerate() if t.name == "import-dynamo"] == []


def test_an_artist_seen_in_training_counts_as_seen_however_it_is_spelt(demo_csv):
    splits = load_splits(demo_csv, FoldPlan(folds=3), log=lambda message: None)
    frame = splits.frame.iloc[:40].copy()
    frame["artist_name"] = frame["artist_name"].str.upper() + "  "
    held_out = np.ones(40, dtype=bool)
    assert seen_artists(frame, held_out, splits.frame).all()
    assert not seen_artists(frame, held_out, splits.frame.iloc[40:41]).all()


def _load_messages(path):
    messages = []
    load_splits(path, FoldPlan(seed=0), log=messages.append)
    return [m for m in messages if m.startswith("warning:")]


def test_a_file_of_duplicated_rows_gets_a_warning(tmp_path):
    songs = generate_dataset(1000, seed=4)
    write_csv(__import__("pandas").concat([songs, songs], ignore_index=True), tmp_path / "twice.csv")
    warnings = _load_messages(tmp_path / "twice.csv")
    assert len(warnings) == 1 and "1,000 of 2,000 rows are exact copies of an earlier row" in warnings[0]


def test_too_few_rows_for_the_figures_to_mean_much_gets_a_warning(tmp_path):
    write_csv(generate_dataset(50, seed=4), tmp_path / "small.csv")
    warnings = _load_messages(tmp_path / "small.csv")
    assert len(warnings) == 1 and "at least 100" in warnings[0]
    # Each fold model keeps 10 % of its 45 rows' tracks for early stopping; all 50 rows are test rows.
    assert "only 4 validation rows and 50 test rows" in warnings[0]


def test_a_healthy_file_gets_no_warning(demo_csv):
    assert _load_messages(demo_csv) == []


@pytest.mark.slow  # a training run: in the slow run, which CI runs
def test_messages_say_1_row_and_1_epoch(tmp_path, demo_csv):
    write_csv(generate_dataset(1, seed=4), tmp_path / "one.csv")
    with pytest.raises(ValenceError, match="has only 1 usable row; at least 20"):
        load_splits(tmp_path / "one.csv", FoldPlan(seed=0), log=lambda message: None)
    messages = []
    run_training(quick_options(demo_csv, tmp_path / "models", kinds=("regression",), epochs=1), log=messages.append)
    started = [m for m in messages if m.startswith("training the regression model")]
    assert started[0].startswith("training the regression model: 3 fold models (at most 1 epoch each, device cpu")


# ---- issue 24, point 17: the bundle records the patience a run used, not 0 (automatic) ---------------------

def test_the_bundle_records_the_patience_the_fold_models_used(trained):
    from valence.model.bundle import load_bundle_from_dir
    from valence.training.settings import patience_for

    model_dir, run = trained
    for kind, trained_model in run.models.items():
        config = load_bundle_from_dir(model_dir, kind).meta["train_config"]
        used = {history.patience for history in trained_model.histories}
        assert used <= {6, 8} and config["patience"] == used.pop() and config["patience_automatic"] is True
    assert patience_for(TrainConfig(), "regression", 4096) == 6 and patience_for(TrainConfig(), "classification",
                                                                               4096) == 8


def test_a_patience_that_was_asked_for_is_recorded_as_it_is():
    from valence.training.pipeline import used_settings
    from valence.training.trainer import History

    settings = used_settings(TrainConfig(patience=3), [History(patience=3), History(patience=3)])
    assert (settings["patience"], settings["patience_automatic"]) == (3, False)
    mixed = used_settings(TrainConfig(), [History(patience=6), History(patience=8)])
    assert (mixed["patience"], mixed["patience_automatic"]) == ([6, 8], True)
