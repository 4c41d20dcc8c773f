"""Unit tests of valence.training.commands: what each command-line job prints and returns.

Training and evaluation are replaced by stand-ins (the pipeline has its own tests); scoring runs the real
CSV reader with a stand-in predictor, so no model is trained here.
"""
import dataclasses
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from valence.training import commands
from valence.training import pipeline
from valence.config import ValenceError
from valence.training.crossfit import fold_rows, track_folds
from valence.data.load import load_dataset
from valence.training.pipeline import TrainedModel, TrainingRun
from valence.training.settings import FoldPlan, RunOptions, TrainConfig
from valence.data.synthetic import generate_dataset, write_csv


class FakePredictor:
    """Predict energy as the valence; moods only when asked."""

    def __init__(self, classification=None, regression=True):
        self.classification = classification
        self.regression = regression or None

    def predict(self, frame, level=0.9):
        valence = frame["energy"].to_numpy() if self.regression else None
        mood = ["happy"] * len(frame) if self.classification is not None else None
        low, high = (None, None) if valence is None else (valence * level, valence)
        return SimpleNamespace(valence=valence, mood=mood, mood_probabilities=None, warnings=[[]] * len(frame),
                               low=low, high=high)


def options(tmp_path, **changes):
    return dataclasses.replace(RunOptions(data=tmp_path / "songs.csv", model_dir=tmp_path / "models",
                                          train=TrainConfig(epochs=4), split=FoldPlan(folds=3, seed=0)), **changes)


def test_epoch_reporter_without_a_terminal_prints_one_line_per_epoch_with_the_float_metrics(capsys):
    reporter = commands.EpochReporter(max_epochs=5, quiet=True)
    assert reporter.use_bar is False
    on_epoch = reporter("regression")
    on_epoch(2, {"train_loss": 0.123456, "val_mae": 0.5, "epoch": 2, "note": "x"})
    assert capsys.readouterr().out == "regression epoch 2/5: train_loss 0.1235, val_mae 0.5000\n"
    on_epoch(3, {"train_loss": 0.5, "fold": "2/3"})
    assert capsys.readouterr().out == "regression fold 2/3 epoch 3/5: train_loss 0.5000\n"
    reporter.close()


def test_epoch_reporter_on_a_terminal_draws_one_bar_per_kind(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert commands.EpochReporter(3, quiet=True).use_bar is False  # --quiet wins over the terminal
    reporter = commands.EpochReporter(3, quiet=False)
    on_epoch = reporter("regression")
    on_epoch(1, {"val_mae": 0.25, "fold": "1/3"})
    first = reporter.bar
    assert first.n == 1 and first.total is None and first.desc == "regression"
    # Fold models side by side report in turn: the bar counts every epoch and shows the latest.
    on_epoch(1, {"val_mae": 0.2, "fold": "2/3"})
    on_epoch(2, {"val_mae": 0.15, "fold": "1/3"})
    assert first.n == 3 and first.desc == "regression"
    assert first.postfix == "fold 1/3 epoch 2/3: val_mae 0.1500"
    reporter("classification")  # a new kind closes the old bar
    assert reporter.bar is not first and reporter.bar.n == 0
    reporter.close()
    assert reporter.bar is None
    assert capsys.readouterr().out == ""  # the bar goes to stderr, nothing to stdout


def test_train_returns_0_and_writes_figures_only_when_asked(tmp_path, monkeypatch, capsys):
    seen = []
    splits = SimpleNamespace(frame="the loaded frame", report="its load report")
    monkeypatch.setattr(pipeline, "run_training", lambda opts, log, on_epoch: seen.append(opts) or TrainingRun(splits))
    monkeypatch.setattr(commands, "write_training_figures", lambda run, folder: [folder / "a.png", folder / "b.png"])
    # The catalog step scores the frame the run loaded, not the file read again.
    monkeypatch.setattr(commands, "build_catalog",
                        lambda opts, target, loaded: print("catalog", *loaded) or 0)
    assert commands.train(options(tmp_path)) == 0
    assert capsys.readouterr().out == "catalog the loaded frame its load report\n"  # a run ends by scoring its data
    assert commands.train(options(tmp_path, plots_dir=tmp_path / "figs")) == 0
    assert capsys.readouterr().out == (f"wrote {tmp_path / 'figs' / 'a.png'}\nwrote {tmp_path / 'figs' / 'b.png'}\n"
                                       "catalog the loaded frame its load report\n")
    assert len(seen) == 2


def test_an_interrupted_training_returns_130_and_says_what_was_kept(tmp_path, monkeypatch, capsys):
    record = {"best_epoch": [4, 3], "interrupted_fold": 2, "interrupted_at_epoch": 5}
    run = TrainingRun(None, {"classification": TrainedModel("classification", None, None, None, record, None)},
                      interrupted="classification")
    monkeypatch.setattr(pipeline, "run_training", lambda opts, log, on_epoch: run)
    assert commands.train(options(tmp_path, plots_dir=tmp_path / "figs")) == 130
    err = capsys.readouterr().err
    assert ("saved the classification model's fold models so far (2; the last at its best epoch, 3, "
            "interrupted during epoch 5)") in err
    assert not (tmp_path / "figs").exists()


def test_make_demo_writes_the_generated_rows(tmp_path, capsys):
    path = tmp_path / "demo.csv"
    commands.make_demo(path, 1234, seed=3)
    assert capsys.readouterr().out == f"wrote 1,234 generated songs (not real data) to {path}\n"
    written = pd.read_csv(path)
    expected = generate_dataset(1234, seed=3)
    assert len(written) == 1234 and written["track_id"].tolist() == expected["track_id"].tolist()


def test_print_batch_shows_the_first_batch_and_its_columns(tmp_path, capsys):
    path = write_csv(generate_dataset(200, seed=1), tmp_path / "songs.csv")
    frame = load_dataset(path)[0]
    plan = FoldPlan(folds=3, seed=0)
    train, _ = fold_rows(frame, track_folds(frame, 3, seed=0), 0, plan)
    assert commands.print_batch(options(tmp_path, train=TrainConfig(batch_size=16))) == 0
    out = capsys.readouterr().out
    assert "first training batch of fold model 1 of 3: 16 rows; numeric (16, " in out and "categorical (16, " in out
    assert "numeric columns: " in out and "danceability" in out
    assert f"valence[:5] = {train['valence'].to_numpy()[:5]}" in out
    # A batch larger than the training split shows the whole split.
    commands.print_batch(options(tmp_path, train=TrainConfig(batch_size=10_000)))
    assert f"first training batch of fold model 1 of 3: {len(train)} rows" in capsys.readouterr().out


def scoring_file(tmp_path, n_bad):
    """Write 10 good songs then n_bad songs with a non-numeric energy; return (path, bad line numbers)."""
    songs = generate_dataset(10 + n_bad, seed=6).drop(columns="valence")
    songs["energy"] = songs["energy"].astype(object)
    songs.loc[10:, "energy"] = "loud"
    path = write_csv(songs, tmp_path / "songs.csv")
    return path, [12 + i for i in range(n_bad)]  # line 1 is the header


def test_score_writes_next_to_the_input_by_default_and_lists_bad_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(commands.Predictor, "from_model_dir", classmethod(lambda cls, folder, **kinds: FakePredictor()))
    path, bad_lines = scoring_file(tmp_path, 2)
    assert commands.score(path, None, options(tmp_path)) == 0
    output = tmp_path / "songs.predictions.csv"
    scored = pd.read_csv(output)
    assert len(scored) == 12 and "predicted_mood" not in scored  # the bad rows keep their places
    np.testing.assert_allclose(scored["predicted_valence"][:10], pd.read_csv(path)["energy"][:10].astype(float),
                               atol=1e-4)
    assert scored["predicted_valence"][10:].isna().all() and scored["reason"][:10].isna().all()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"scored 10 songs from {path} into {output}"
    assert out[1] == "2 rows could not be scored (kept in the output with an empty prediction and the reason):"
    assert out[2:] == [f"  line {line}: row with a non-numeric feature: energy='loud'" for line in bad_lines]


def test_score_shows_only_the_first_bad_rows_and_says_moods(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(commands.Predictor, "from_model_dir",
                        classmethod(lambda cls, folder, **kinds: FakePredictor(classification=object())))
    n_bad = commands.BAD_ROWS_SHOWN + 3
    path, bad_lines = scoring_file(tmp_path, n_bad)
    commands.score(path, tmp_path / "out.csv", options(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"into {tmp_path / 'out.csv'} (with moods)")
    assert out[1] == f"{n_bad} rows could not be scored (kept in the output with an empty prediction and the reason):"
    assert len(out) == 2 + commands.BAD_ROWS_SHOWN + 1
    assert out[-2].startswith(f"  line {bad_lines[commands.BAD_ROWS_SHOWN - 1]}:")
    assert out[-1] == "  ... and 3 more"
    assert set(pd.read_csv(tmp_path / "out.csv")["predicted_mood"].dropna()) == {"happy"}


def test_score_refuses_to_overwrite_its_input_before_loading_a_model(tmp_path, monkeypatch):
    def no_model(cls, folder, **kinds):
        raise AssertionError("the model must not be loaded")
    monkeypatch.setattr(commands.Predictor, "from_model_dir", classmethod(no_model))
    path, _ = scoring_file(tmp_path, 0)
    before = path.read_bytes()
    with pytest.raises(ValenceError, match=r"--output .*songs\.csv is the input file"):
        commands.score(path, tmp_path / "." / "songs.csv", options(tmp_path))
    assert path.read_bytes() == before


@pytest.mark.parametrize("kinds, loads", [
    (None, {"required": (), "optional": ("regression", "classification")}),
    (("classification",), {"required": ("classification",), "optional": ()}),
])
def test_score_loads_the_asked_for_models_or_every_saved_one(tmp_path, monkeypatch, capsys, kinds, loads):
    seen = []
    monkeypatch.setattr(commands.Predictor, "from_model_dir", classmethod(
        lambda cls, folder, **asked: seen.append((folder, asked)) or FakePredictor(classification=object(),
                                                                                   regression=False)))
    path, _ = scoring_file(tmp_path, 0)
    assert commands.score(path, tmp_path / "out.csv", options(tmp_path), kinds=kinds) == 0
    assert seen == [(tmp_path / "models", loads)]
    assert capsys.readouterr().out.splitlines()[0].endswith("(moods only: no regression model)")
    scored = pd.read_csv(tmp_path / "out.csv")
    assert "predicted_valence" not in scored and set(scored["predicted_mood"]) == {"happy"}
