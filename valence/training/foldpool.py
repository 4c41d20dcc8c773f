"""Fold models trained side by side, each in a forked worker process with one torch thread.

Fold models are independent, so on a 2-core machine two processes train two of them at once:
on the real slice two fold models took 6.1 s this way against 10.4 s one after the other, while
two torch threads in one process gained nothing (small batches spend their time in Python).
Python threads would share the GIL (8.4 s), hence processes. Forking shares the parent's data
with the workers without copying or pickling it; a worker sends back its fold model's result
(numpy arrays, so that torch's shared-memory pickling never comes in) and a message per epoch.

Ctrl-C: workers ignore SIGINT (a terminal sends it to them too). The parent sets a shared stop
flag, which each worker reads once a training step; it then ends as fit_model ends on Ctrl-C, at
its best epoch so far, and sends that. A worker whose parent died is killed with it (forks.py).
"""
import contextlib
import math
import multiprocessing
import os
import signal
import threading
import traceback
from multiprocessing.connection import wait
from pathlib import Path

from valence.config import ValenceError
from valence.forks import FORKS, frozen_heap, start_forked

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # a cgroup v2 container's CPU quota: "<quota> <period>" or "max ..."


def cpu_count():
    """CPU cores this process may run on: its affinity, less a container's CPU quota (cgroup v2 cpu.max),
    so that `docker run --cpus 2` on a 64-core host gives 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def workers_for(requested, folds, device, small_batches=True):
    """Worker processes for `folds` fold models: `requested`, or (0) one per usable core on small batches
    and every fold model at once (up to two per core) on large ones; at most `folds`. One, training in
    this process, on a GPU, which forked processes must not share.

    Small batches spend their time in Python, so a torch thread per process is the most a core gives
    (two fold models on two cores: 6.1 s, against 10.4 s one after the other). Large batches keep two
    threads busy too, but a fold model's encoding and prediction are single-threaded, and one fold
    model left on its own leaves a core idle: on the 232,725-row file (batch 1024) its 3 fold models
    trained in 41.8 s all at once (one thread each) against 55.3 s one after the other (two threads)."""
    if device != "cpu" or not FORKS:  # forked workers on Linux only (forks.py)
        return 1
    cores = cpu_count()
    wanted = requested or (cores if small_batches else 2 * cores)
    return max(1, min(wanted, folds))


def train_in_workers(train_fold, folds, workers, on_epoch=None, meanwhile=None):
    """Run train_fold(j, on_epoch, should_stop) for j in range(folds) in `workers` forked processes.

    meanwhile(), when given, runs here once the first workers have started (the parent's own work, which
    would otherwise wait for them or keep them waiting); its result comes third in the answer.

    Return ({j: result}, interrupted, meanwhile's result): the results of every fold model that ended, and whether Ctrl-C
    stopped the run (then the running fold models' results are their best epochs so far, or None
    when no epoch had ended, and the folds not yet started are absent). on_epoch(epoch, record) is
    called here, in the parent, as workers report. A worker's error is raised here, with its traceback
    as a note; a worker that died without a word is a ValenceError. A second Ctrl-C raises
    KeyboardInterrupt at once, and the workers are ended.
    """
    context = multiprocessing.get_context("fork")
    stop = context.RawValue("b", 0)
    pending, running, results, beside = list(range(folds)), {}, {}, None
    with _ctrl_c_stops(stop), frozen_heap():
        try:
            while pending or running:
                while pending and len(running) < workers and not stop.value:
                    j = pending.pop(0)
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_work, args=(train_fold, j, sender, stop, os.getpid()),
                                              daemon=True)
                    process.start()
                    sender.close()
                    running[receiver] = (j, process)
                if not running:
                    break
                if meanwhile is not None:
                    beside, meanwhile = meanwhile(), None
                # A timeout, so that a stop asked for while no worker reports is seen.
                for receiver in wait(list(running), timeout=0.5):
                    j, process = running[receiver]
                    try:
                        what, payload = receiver.recv()
                    except EOFError:
                        process.join()
                        del running[receiver]
                        receiver.close()
                        raise ValenceError(
                            f"the worker process training fold model {j + 1} of {folds} ended without a result "
                            f"(exit status {process.exitcode}); out of memory? --workers 1 trains in one "
                            f"process") from None
                    if what == "epoch":
                        if on_epoch is not None:
                            on_epoch(*payload)
                        continue
                    process.join()
                    del running[receiver]
                    receiver.close()
                    if what == "error":
                        error, text = payload
                        error.add_note(f"in the worker process training fold model {j + 1}:\n{text}")
                        raise error
                    results[j] = payload
        finally:
            stop.value = stop.value or 1  # every worker still running stops (2 stays: Ctrl-C asked)
            for receiver, (_, process) in running.items():
                process.terminate()
                process.join()
                receiver.close()
    return results, bool(stop.value == 2), beside


@contextlib.contextmanager
def _ctrl_c_stops(stop):
    """While training: a first Ctrl-C asks the workers to stop (stop.value 2), a second raises
    KeyboardInterrupt. A handler, not a caught KeyboardInterrupt: that could land halfway through
    reading a worker's message. (Off the main thread no signal handler can be set, nor Ctrl-C land.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_ctrl_c(signum, frame):
        if stop.value:
            raise KeyboardInterrupt
        stop.value = 2

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _work(train_fold, j, sender, stop, parent):
    """A worker process (forks.start_forked): train fold model j, send each epoch's record and then the result."""
    start_forked(parent)
    import torch
    torch.set_num_threads(1)

    def should_stop():
        return bool(stop.value)

    try:
        result = train_fold(j, lambda epoch, record: sender.send(("epoch", (epoch, record))), should_stop)
        sender.send(("done", result))
    except KeyboardInterrupt:  # stopped before its first epoch ended: nothing to keep
        sender.send(("done", None))
    except BaseException as error:  # noqa: BLE001 -- every error goes to the parent, which raises it
        text = traceback.format_exc()
        try:
            sender.send(("error", (error, text)))
        except Exception:  # an error that does not pickle goes as its text
            sender.send(("error", (RuntimeError(f"{type(error).__name__}: {error}"), text)))
    finally:
        sender.close()
