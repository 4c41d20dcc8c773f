"""Killing or interrupting a training run never costs the saved model, nor leaves half a file.

SIGKILL arrives at random moments of a run, and at three chosen moments of the save
(a hook pauses the child there: mid-write, written but not yet renamed, renamed but
the metrics not yet written). Ctrl-C is a real SIGINT to a real `python
musical_valence_predictor.py` process, with and without --save-on-interrupt.
The runs in real processes are marked slow; the in-process checks of the save run by default.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from valence.model.bundle import load_bundle, load_bundle_from_dir
from valence.config import PROJ_ROOT, bundle_path, metrics_path
from valence.fileio import STALE_SECONDS, atomic_path, remove_stale_temporaries, write_text_atomic
from valence.training.crossfit import fold_encoder, fold_model
from valence.training.pipeline import load_splits
from valence.training.settings import FoldPlan
from valence.model.predictor import Predictor
from valence.data.synthetic import generate_dataset, write_csv
from valence.training.modules import predict_arrays, torch_module

from cli_runner import shared_server, wait_until

ROWS = 300
EPOCH_LINE = re.compile(r"^regression fold 1/\d+ epoch (\d+)/\d+: .* mae ([0-9.]+),", re.M)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash-data") / "songs.csv"
    write_csv(generate_dataset(ROWS, seed=2), path)
    return path


def train_args(data, model_dir, *extra, epochs=40, seed=0):
    return ["--data", data, "--model-dir", model_dir, "--epochs", epochs, "--patience", 1000, "--folds", 2,
            "--seed", seed, "--quiet", *extra]


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def temporaries(folder):
    return [name for name in listing(folder) if name.endswith(".tmp")]


# ---- SIGKILL --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def previous(songs, tmp_path_factory):
    """A model directory holding a complete earlier run (seed 0); return (folder, bundle bytes)."""
    folder = tmp_path_factory.mktemp("previous")
    done = shared_server().run(train_args(songs, folder), tmp_path_factory.mktemp("previous-run"))
    assert done.returncode == 0, done.stderr
    return folder, bundle_path(folder, "regression").read_bytes()


def killed_copy(previous, tmp_path, name):
    """Return a fresh copy of the previous model directory for one kill."""
    folder = tmp_path / name
    shutil.copytree(previous[0], folder)
    return folder


def check_survivor(folder, previous_bytes):
    """The bundle in `folder` loads, and is the previous one or a whole new one (seed 1)."""
    path = bundle_path(folder, "regression")
    bundle = load_bundle(path, "regression")  # raises if damaged
    if path.read_bytes() != previous_bytes:
        assert bundle.meta["train_config"]["seed"] == 1
    json.loads(metrics_path(folder, "regression").read_text())  # old or new, never half
    assert Predictor.from_model_dir(folder).regression.kind == "regression"  # temporaries are not read
    return path.read_bytes() == previous_bytes


@pytest.mark.slow
@pytest.mark.parametrize("moment, kept_previous", [("mid-write", True), ("before-replace", True),
                                                   ("after-replace", False)])
def test_sigkill_inside_the_save_leaves_a_loadable_bundle(songs, previous, tmp_path, moment, kept_previous):
    folder = killed_copy(previous, tmp_path, moment)
    server = shared_server()
    child = server.start(train_args(songs, folder, seed=1), tmp_path / "run", hook=moment)
    wait_until(child.paused, timeout=60)
    os.kill(child.pid, signal.SIGKILL)
    assert server.wait(child).returncode == -signal.SIGKILL
    assert check_survivor(folder, previous[1]) is kept_previous
    # A killed save leaves its temporary (nothing can delete it); it is hidden, named *.tmp
    # and never read as a model. After rename, no temporary remains.
    assert len(temporaries(folder)) == (1 if kept_previous else 0)
    assert all(name.startswith(".regression.safetensors.") for name in temporaries(folder))


@pytest.mark.slow
def test_sigkill_at_random_moments_of_training_leaves_a_loadable_bundle(songs, previous, tmp_path):
    """Kill runs a random moment after their start, after loading, while encoding, after random epochs."""
    server, rng = shared_server(), np.random.default_rng(5)
    moments = [("start", rng.uniform(0.0, 0.02)), ("loaded ", 0.0), ("training the regression model", 0.0)]
    moments += [(f"regression fold 1/2 epoch {epoch}/", delay) for epoch, delay in
                zip(rng.integers(1, 250, 4), rng.uniform(0.0, 0.01, 4))]
    for i, (event, delay) in enumerate(moments):
        folder = killed_copy(previous, tmp_path, f"kill-{i}")
        child = server.start(train_args(songs, folder, epochs=300, seed=1), tmp_path / f"run-{i}")
        if event != "start":
            wait_until(lambda: event in child.output(), timeout=60)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        finished = server.wait(child)
        assert finished.returncode == -signal.SIGKILL, (event, finished)  # killed mid-run, not after it
        assert check_survivor(folder, previous[1]), event  # the old model, untouched
        assert temporaries(folder) == []  # killed before the save began: nothing left behind


def test_the_next_save_removes_stale_temporaries_and_spares_young_ones(tmp_path):
    path = tmp_path / "regression.safetensors"
    stale = tmp_path / ".regression.safetensors.abc123.tmp"
    young = tmp_path / ".regression.safetensors.def456.tmp"  # another process may be writing it now
    other = tmp_path / ".classification.safetensors.ghi789.tmp"
    for stray in (stale, young, other):
        stray.write_bytes(b"PK\x03\x04 half a zip")
    hour_ago = time.time() - STALE_SECONDS - 60
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(other, (hour_ago, hour_ago))
    write_text_atomic(path, "new")
    assert listing(tmp_path) == sorted([".classification.safetensors.ghi789.tmp", ".regression.safetensors.def456.tmp",
                                        "regression.safetensors"])
    assert remove_stale_temporaries(path, older_than=0) == 1 and listing(tmp_path) == sorted(
        [".classification.safetensors.ghi789.tmp", "regression.safetensors"])


# ---- Ctrl-C -----------------------------------------------------------------------------------

def start_real_process(args):
    """Start the tool as a user would, in its own process (one torch thread: tiny data)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(PROJ_ROOT / "musical_valence_predictor.py"), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interrupt_at_epoch(process, epoch):
    """Send SIGINT once the run has printed `epoch`; return (exit status, stdout, stderr)."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("regression fold 1/") and f" epoch {epoch}/" in line:
            process.send_signal(signal.SIGINT)
            break
    # Read on from the same buffered streams (communicate() would skip what they hold).
    out, err = process.stdout.read(), process.stderr.read()
    process.wait(timeout=60)
    return process.returncode, "".join(seen) + out, err


@pytest.fixture(scope="module")
def interrupted(songs, previous, tmp_path_factory):
    """Interrupt two real runs at epoch 5 (started together), without and with --save-on-interrupt."""
    runs = {}
    for flag in ("", "--save-on-interrupt"):
        folder = tmp_path_factory.mktemp("interrupted")
        shutil.copytree(previous[0], folder, dirs_exist_ok=True)
        extra = [flag] if flag else []
        runs[flag] = (folder, start_real_process(train_args(songs, folder, *extra, epochs=100_000, seed=1)))
    return {flag: (folder, *interrupt_at_epoch(process, 5)) for flag, (folder, process) in runs.items()}


@pytest.mark.slow
def test_ctrl_c_without_the_flag_saves_nothing_and_exits_130(interrupted, previous):
    folder, code, out, err = interrupted[""]
    assert code == 130 and "Traceback" not in err
    assert err.strip() == ("interrupted: stopped the regression model without saving it; its saved model, "
                           "if any, is as it was (--save-on-interrupt keeps the best epoch so far)")
    assert bundle_path(folder, "regression").read_bytes() == previous[1]
    assert listing(folder) == ["catalog.sqlite", "regression.metrics.json", "regression.safetensors"]  # the previous run's
    assert "saved " not in out


@pytest.mark.slow
def test_ctrl_c_with_the_flag_saves_the_best_epoch_so_far(interrupted, songs):
    folder, code, out, err = interrupted["--save-on-interrupt"]
    assert code == 130 and "Traceback" not in err
    record = json.loads(metrics_path(folder, "regression").read_text())
    assert record["interrupted"] is True and record["train_seconds"] > 0
    # The 2 fold models train side by side (one worker process each): both stop, each at its best epoch so far.
    folds = record["interrupted_fold"]
    assert folds in (1, 2) and len(record["epochs_run"]) == len(record["best_epoch"]) == folds
    ran, last = record["epochs_run"][0], record["epochs_run"][-1]
    assert ran >= 5 and record["interrupted_at_epoch"] == last + 1
    logged = {int(epoch): float(mae) for epoch, mae in EPOCH_LINE.findall(out)}
    assert set(logged) >= set(range(1, ran)) and max(logged) <= ran
    best = record["best_epoch"][0]
    assert logged[best] == min(logged.values())
    assert err.strip() == (f"interrupted: saved the regression model's fold models so far ({folds}; the last at its "
                           f"best epoch, {record['best_epoch'][-1]}, interrupted during epoch {last + 1}); nothing "
                           f"else was trained")
    assert listing(folder) == ["catalog.sqlite", "regression.metrics.json", "regression.safetensors"]  # the previous run's
    # The saved weights are the best epoch's: fold model 1 of the saved bundle gives its validation MAE again.
    bundle = load_bundle_from_dir(folder, "regression")
    assert bundle.meta["metrics"]["interrupted_at_epoch"] == last + 1
    assert bundle.meta["train_config"]["seed"] == 1 and bundle.meta["split"]["folds_trained"] == folds
    splits = load_splits(songs, FoldPlan(folds=2, seed=1), log=lambda message: None)
    _, val, encoder, _ = fold_encoder(splits.frame, splits.fold, 0, splits.plan, bundle.encoder)
    first = fold_model("regression", bundle.meta["model_args"], torch_module(bundle).state_dict(), 0, 1)
    predicted = predict_arrays(first, encoder.transform(val))
    mae = float(np.mean(np.abs(predicted - val["valence"].to_numpy())))
    assert mae == pytest.approx(logged[best], abs=1e-4)


@pytest.mark.slow
def test_ctrl_c_during_the_save_leaves_the_previous_bundle_whole(songs, previous, tmp_path):
    folder = killed_copy(previous, tmp_path, "ctrl-c-in-save")
    server = shared_server()
    child = server.start(train_args(songs, folder, "--save-on-interrupt", seed=1), tmp_path / "run",
                         hook="mid-write")
    wait_until(child.paused, timeout=60)  # half the bundle is in the temporary file now
    os.kill(child.pid, signal.SIGINT)
    done = server.wait(child)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.startswith("interrupted: stopped the regression model without saving it")
    assert bundle_path(folder, "regression").read_bytes() == previous[1]
    assert listing(folder) == ["catalog.sqlite", "regression.metrics.json", "regression.safetensors"]  # the temporary: gone


@pytest.mark.slow
def test_ctrl_c_in_the_second_model_names_the_first_as_saved(songs, tmp_path):
    server = shared_server()
    child = server.start(train_args(songs, tmp_path / "models", "--model", "both", epochs=200), tmp_path / "run")
    wait_until(lambda: "classification fold 1/2 epoch 2/" in child.output(), timeout=60)
    os.kill(child.pid, signal.SIGINT)
    done = server.wait(child)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "interrupted: stopped the classification model without saving it; its saved model, if any, is as "
        "it was (--save-on-interrupt keeps the best epoch so far); saved before the interrupt: "
        f"{tmp_path / 'models' / 'regression.safetensors'}")
    assert listing(tmp_path / "models") == ["regression.metrics.json", "regression.safetensors"]


def test_atomic_path_removes_its_temporary_on_ctrl_c(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise KeyboardInterrupt
    assert listing(tmp_path) == ["model.pt"] and path.read_text() == "old"
