"""Training speed on a full-size generated data set (232,725 rows, the Kaggle file's size).

    python bench/train_speed.py [--rows 232725] [--epochs 5]

Prints load time, encoder fit time, seconds per epoch and rows per second of
the default regression network, and the wall time of the default end-to-end
run (load, train with early stopping, evaluate, save). Targets: at most 0.4 s
per epoch and under 60 s end to end on a 2-core machine.
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valence.config import TARGET  # noqa: E402
from valence.data.load import load_dataset, split_by_track  # noqa: E402
from valence.model.encoder import FeatureEncoder  # noqa: E402
from valence.training.modules import build_model, model_config_for  # noqa: E402
from valence.training.crossfit import targets  # noqa: E402
from valence.training.pipeline import run_training  # noqa: E402
from valence.training.settings import RunOptions, TrainConfig  # noqa: E402
from valence.data.synthetic import generate_dataset, write_csv  # noqa: E402
from valence.training.trainer import fit_model  # noqa: E402


def timed(function, *args, **kwargs):
    """Return (result, seconds) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=232_725, help="generated rows (default: 232725)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed for the per-epoch figure (default: 5)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.csv"
        frame, seconds = timed(generate_dataset, args.rows, seed=0)
        write_csv(frame, path)
        print(f"generated {len(frame):,} rows in {seconds:.2f} s ({path.stat().st_size / 1e6:.1f} MB)")

        (loaded, report), seconds = timed(load_dataset, path)
        print(f"load_dataset: {seconds:.2f} s ({report.rows_kept:,} rows)")
        train, val, _ = split_by_track(loaded)
        encoder = FeatureEncoder()
        arrays, seconds = timed(encoder.fit_transform, train, train[TARGET].to_numpy())
        print(f"encoder fit_transform on {len(train):,} training rows: {seconds:.2f} s")

        # Fixed epoch count (no early stop) so the per-epoch figure is over a known amount of work.
        config = dataclasses.replace(TrainConfig(), epochs=args.epochs, patience=args.epochs + 1)
        model = build_model("regression", dataclasses.asdict(model_config_for("regression", encoder)))
        history = fit_model(model, "regression", arrays, targets("regression", train),
                            encoder.transform(val), targets("regression", val), config)
        per_epoch = sorted(history.seconds)[len(history.seconds) // 2]
        print(f"default regression network: {per_epoch:.3f} s per epoch (median of {args.epochs}, "
              f"validation included), {len(train) / per_epoch:,.0f} training rows/s")

        options = RunOptions(data=path, model_dir=Path(folder) / "models", kinds=("regression",))
        run, seconds = timed(run_training, options, log=lambda message: None)
        metrics = run.models["regression"].metrics_record
        print(f"default end-to-end run (load, cross-fit {metrics['split']['folds']} fold models, test out-of-fold, "
              f"save): {seconds:.1f} s, epochs {metrics['epochs_run']} (best {metrics['best_epoch']}), "
              f"out-of-fold MAE {metrics['test_mae']:.4f} vs baseline {metrics['baseline_mae']:.4f}")


if __name__ == "__main__":
    main()
