"""The whole default training run against one fit of the LightGBM anchor, on the same file, in one command.

    pip install -r bench/requirements.txt
    python bench/run_speed.py [--rows 232725] [--epochs 20] [--rounds 1] [--lgb-threads 1] [--data FILE]

Writes a generated file in the Kaggle schema (232,725 rows, the Kaggle file's size) unless --data names
one, then, --rounds times, alternately: one fit of bench/quality.py's LightGBM anchor (its `lightgbm`
function: 2,000 trees, L1 objective, the audio features with the categoricals as LightGBM categories;
--lgb-threads threads, quality.py's default 1) on every row of the file, timed from the loaded frame to
the fitted model; and the tool's default run as a user starts it,
`python musical_valence_predictor.py --data FILE --epochs 20 --quiet` in a fresh interpreter (load,
cross-fit of the fold models, out-of-fold figures, intervals, save, the catalog), timed end to end.
Prints each time, their medians and the ratio (target: at most 1); the run's own log lines follow it.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import lightgbm  # noqa: E402
from valence.data.load import load_dataset  # noqa: E402
from valence.data.synthetic import generate_dataset, write_csv  # noqa: E402


def anchor_fit(frame, trees, threads):
    """Seconds of one LightGBM anchor fit on every row of `frame` (predicting one row, so the fit is the time)."""
    started = time.perf_counter()
    lightgbm("regression", frame, frame.iloc[:1], trees, False, threads)
    return time.perf_counter() - started


def default_run(path, model_dir, epochs):
    """Seconds of the command line's default run on `path`, and its output."""
    command = [sys.executable, str(ROOT / "musical_valence_predictor.py"), "--data", str(path),
               "--model-dir", str(model_dir), "--epochs", str(epochs), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the default run failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=232_725, help="generated rows (default: 232725)")
    parser.add_argument("--data", type=Path, default=None, help="a Kaggle-format CSV instead of generated rows "
                                                                "(default: generated)")
    parser.add_argument("--epochs", type=int, default=20, help="the run's --epochs (default: 20)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both (default: 1)")
    parser.add_argument("--trees", type=int, default=2000, help="LightGBM trees (default: 2000)")
    parser.add_argument("--lgb-threads", type=int, default=1, help="LightGBM threads (default: 1, as bench/quality.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.data
        if path is None:
            path = Path(folder) / "generated.csv"
            write_csv(generate_dataset(args.rows, seed=0), path)
        frame, report = load_dataset(path)
        print(f"{path}: {report.rows_kept:,} rows")
        anchors, runs, output = [], [], ""
        for round_ in range(1, args.rounds + 1):
            anchors.append(anchor_fit(frame, args.trees, args.lgb_threads))
            seconds, output = default_run(path, Path(folder) / "models", args.epochs)
            runs.append(seconds)
            print(f"round {round_}: LightGBM fit {anchors[-1]:.1f} s, default run {runs[-1]:.1f} s "
                  f"(ratio {runs[-1] / anchors[-1]:.2f})", flush=True)
        anchor, run = statistics.median(anchors), statistics.median(runs)
        print(f"LightGBM anchor ({args.trees} trees, L1, {args.lgb_threads} thread(s)), one fit: {anchor:.1f} s")
        print(f"default run, --epochs {args.epochs}, end to end (catalog included): {run:.1f} s")
        print(f"ratio run / anchor: {run / anchor:.2f} (target: at most 1)")
        print("the last run's log:\n" + output)


if __name__ == "__main__":
    main()
