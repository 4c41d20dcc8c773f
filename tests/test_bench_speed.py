"""bench/train_speed.py and bench/run_speed.py print the ratios the training targets are stated in."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_train_speed_times_a_bare_loop_of_the_same_network_beside_fit_model():
    out = run("bench/train_speed.py", "--rows", "3000", "--epochs", "2", "--rounds", "1", "--skip-run", "--threads", "1")
    ours = float(re.search(r"default regression network: ([\d.]+) s per epoch \(median of 2,", out).group(1))
    bare = float(re.search(r"bare PyTorch loop of the same network: ([\d.]+) s per epoch \(median of 2\)", out).group(1))
    ratio = float(re.search(r"ratio ([\d.]+) \(target: at most 1.2\)", out).group(1))
    assert ours > 0 and bare > 0 and abs(ratio - ours / bare) < 0.01 + ratio * 0.02
    assert "end-to-end" not in out  # --skip-run


@pytest.mark.slow
def test_run_speed_times_the_default_run_against_one_lightgbm_fit():
    if not os.environ.get("CI"):  # CI installs bench/requirements.txt, so there the anchor always runs
        pytest.importorskip("lightgbm")
    out = run("bench/run_speed.py", "--rows", "1500", "--epochs", "1", "--trees", "10")
    anchor = float(re.search(r"one fit: ([\d.]+) s", out).group(1))
    whole = float(re.search(r"catalog included\): ([\d.]+) s", out).group(1))
    ratio = float(re.search(r"ratio run / anchor: ([\d.]+)", out).group(1))
    assert abs(ratio - whole / anchor) < 0.01 + ratio * 0.1
    assert "catalog:" in out and "out-of-fold" in out  # the run's own log, the catalog written
