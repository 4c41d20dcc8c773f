"""Fold models trained in worker processes: the same models, progress and errors seen here, Ctrl-C kept."""
import dataclasses
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from valence.training import crossfit
from valence.config import PROJ_ROOT, ValenceError
from valence.training.crossfit import cross_fit
from valence.training.foldpool import cpu_count, train_in_workers, workers_for
from valence.training.pipeline import run_training
from valence.training.settings import FoldPlan, RunOptions, TrainConfig
from valence.data.synthetic import generate_dataset, write_csv

QUICK = dataclasses.replace(TrainConfig(), epochs=3)
PLAN = FoldPlan(folds=3)


@pytest.fixture(scope="module")
def songs():
    return generate_dataset(600, seed=5)


@pytest.fixture
def one_thread():
    """Train here with one torch thread, as a worker does, so that both give the same floats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
def test_workers_train_the_same_fold_models_as_one_process(songs, one_thread):
    here = cross_fit("regression", songs, dataclasses.replace(QUICK, workers=1), PLAN)
    seen = []
    there = cross_fit("regression", songs, dataclasses.replace(QUICK, workers=2), PLAN,
                      on_epoch=lambda epoch, record: seen.append((record["fold"], epoch)))
    assert np.array_equal(here.predictions, there.predictions) and np.array_equal(here.seen, there.seen)
    for key, value in here.model.state_dict().items():
        assert torch.equal(value, there.model.state_dict()[key]), key
    assert [h.val_loss for h in here.histories] == [h.val_loss for h in there.histories]
    # Every epoch of every fold model was reported here, in the parent, with its fold.
    expected = {(f"{j + 1}/3", epoch) for j, h in enumerate(there.histories) for epoch in range(1, len(h.val_loss) + 1)}
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected)
    assert multiprocessing.active_children() == []


def test_workers_follow_the_cores_the_folds_and_the_device(monkeypatch):
    monkeypatch.setattr("valence.training.foldpool.cpu_count", lambda: 2)
    assert workers_for(0, 5, "cpu") == 2 and workers_for(0, 1, "cpu") == 1
    assert workers_for(8, 3, "cpu") == 3 and workers_for(1, 5, "cpu") == 1
    assert workers_for(0, 3, "cpu", small_batches=False) == 3  # large batches: every fold model at once
    assert workers_for(0, 10, "cpu", small_batches=False) == 4 and workers_for(1, 3, "cpu", False) == 1
    assert workers_for(0, 5, "cuda") == 1  # forked processes must not share a GPU
    monkeypatch.setattr("valence.training.foldpool.FORKS", False)  # Windows (no fork), macOS (an unsafe one)
    assert workers_for(0, 5, "cpu") == 1 and workers_for(4, 5, "cpu") == 1


def test_a_containers_cpu_quota_caps_the_cores(monkeypatch, tmp_path):
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr("valence.training.foldpool.CPU_MAX", quota)
    cores = len(os.sched_getaffinity(0))
    assert cpu_count() == cores  # no cgroup file: the affinity
    quota.write_text("max 100000\n")
    assert cpu_count() == cores
    quota.write_text("50000 100000\n")  # half a core still gets one worker
    assert cpu_count() == 1
    quota.write_text(f"{(cores + 8) * 100000} 100000\n")  # a quota above the affinity leaves the affinity
    assert cpu_count() == cores


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_in_a_later_fold_model_ends_the_run(tmp_path, workers):
    path = tmp_path / "songs.csv"
    write_csv(generate_dataset(600, seed=5), path)
    options = RunOptions(data=path, model_dir=tmp_path / "models", kinds=("regression", "classification"),
                         train=dataclasses.replace(TrainConfig(), workers=workers), split=FoldPlan(folds=3),
                         save_on_interrupt=True)
    run = run_training(options, log=lambda message: None, on_epoch=lambda kind: ctrl_c_at(3, 2))
    # Fold models 1 and 2 ended by early stopping (or, side by side, one of them at Ctrl-C); the run ends in fold 3.
    assert run.interrupted == "regression" and list(run.models) == ["regression"]
    record = run.models["regression"].metrics_record
    assert record["interrupted"] is True and record["interrupted_fold"] == 3 and len(record["epochs_run"]) == 3
    assert not (tmp_path / "models" / "classification.safetensors").exists()


def test_a_workers_error_is_raised_here_with_its_traceback(songs, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("the loss went NaN")
    monkeypatch.setattr(crossfit, "fit_model", broken)  # fork: the workers run the patched function
    with pytest.raises(ValueError, match="the loss went NaN") as caught:
        cross_fit("regression", songs, dataclasses.replace(QUICK, workers=2), PLAN)
    note = "\n".join(caught.value.__notes__)
    assert "in the worker process training fold model" in note and "broken" in note
    assert multiprocessing.active_children() == []


def test_a_worker_that_dies_is_a_clear_error(songs, monkeypatch):
    monkeypatch.setattr(crossfit, "fit_model", lambda *args, **kwargs: os._exit(3))
    with pytest.raises(ValenceError, match=r"fold model \d of 3 ended without a result \(exit status 3\)"):
        cross_fit("regression", songs, dataclasses.replace(QUICK, workers=2), PLAN)
    assert multiprocessing.active_children() == []


def test_workers_start_with_the_parents_objects_frozen_and_the_parent_unfreezes_them(unfrozen):
    done, interrupted, _ = train_in_workers(lambda j, report, should_stop: gc.get_freeze_count(), 2, 2)
    assert not interrupted and set(done) == {0, 1}
    # In each worker the parent's objects are out of the collector's reach: its collections leave their pages shared.
    assert all(count > 0 for count in done.values())
    assert gc.get_freeze_count() == 0


def test_objects_frozen_before_stay_frozen(unfrozen):
    from valence.forks import frozen_heap

    gc.freeze()
    frozen = gc.get_freeze_count()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() >= frozen > 0  # another's freeze (a serving worker's) is not undone


def ctrl_c_at(fold, epoch):
    """An epoch callback that sends this process SIGINT when fold model `fold` reports `epoch`."""
    def on_epoch(at, record):
        if record["fold"].startswith(f"{fold}/") and at == epoch:
            os.kill(os.getpid(), signal.SIGINT)
    return on_epoch


def test_ctrl_c_keeps_each_running_fold_model_at_its_best_epoch(songs):
    config = dataclasses.replace(TrainConfig(), epochs=10_000, patience=10_000, workers=2)
    fitted = cross_fit("regression", songs, config, PLAN, on_epoch=ctrl_c_at(1, 3), stop_on_interrupt=True)
    histories = fitted.histories
    assert 1 <= len(histories) <= 2 and histories[-1].interrupted  # folds 1 and 2 ran side by side; 3 never began
    assert 3 <= len(histories[0].val_loss) < 10_000  # fold model 1 ran past the epoch that sent Ctrl-C
    for h in histories:
        assert h.best_epoch == 1 + int(np.argmin(h.val_loss))  # the weights kept are the best epoch's
    assert len(fitted.model.members) == len(histories)
    covered = fitted.fold < len(histories)
    assert (fitted.predictions[covered] > 0).all() and (fitted.predictions[~covered] == 0).all()
    assert multiprocessing.active_children() == []


def test_ctrl_c_without_keeping_raises_and_leaves_no_worker(songs):
    config = dataclasses.replace(TrainConfig(), epochs=10_000, patience=10_000, workers=2)
    with pytest.raises(KeyboardInterrupt):
        cross_fit("regression", songs, config, PLAN, on_epoch=ctrl_c_at(1, 2))
    assert multiprocessing.active_children() == []


WORKER_PIDS = """
import dataclasses, sys
from valence.training.crossfit import cross_fit
from valence.training.settings import FoldPlan, TrainConfig
from valence.data.synthetic import generate_dataset
config = dataclasses.replace(TrainConfig(), epochs=10_000, patience=10_000, workers=2)
def on_epoch(epoch, record):
    if epoch == 2:
        print("training", flush=True)
cross_fit("regression", generate_dataset(600, seed=5), config, FoldPlan(folds=3), on_epoch=on_epoch)
"""


def children(pid):
    """Pids of a process's children, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += (task / "children").read_text().split()
    return [int(p) for p in found]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_workers_end_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", WORKER_PIDS], cwd=PROJ_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline() == "training\n"
        workers = children(parent.pid)
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
