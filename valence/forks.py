"""Forked processes: a catalog build's predicting and grouping processes, training's fold workers.

On Linux only (FORKS): Windows has no fork, and on macOS a fork of a process that loaded Apple's
libraries can crash (Python itself moved there to spawn). A fork shares the parent's data without
copying or pickling it, for as long as neither side writes to its pages (frozen_heap).
"""
import contextlib
import ctypes
import gc
import os
import signal
import sys

FORKS = sys.platform.startswith("linux")
PR_SET_PDEATHSIG = 1  # prctl's option (linux/prctl.h): a signal for this process when its parent ends


@contextlib.contextmanager
def frozen_heap():
    """While forked processes start and run: every object alive now out of the cyclic collector's reach
    (gc.freeze), so that a collection in a child does not walk the parent's objects, writing to each one's
    header and so copying every page that holds one. Unfrozen after, unless something froze objects before."""
    ours = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        yield
    finally:
        if ours:
            gc.unfreeze()


def start_forked(parent_pid):
    """Start a forked process of the process `parent_pid`: Ctrl-C is left to the parent (a terminal sends it
    to every process of the group), which stops its children its own way, and the process is killed when the
    parent ends, so that a killed parent leaves no process working for nobody (Linux's prctl, through
    ctypes: no dependency of ours wraps it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent ended before prctl took effect
        os._exit(1)
