"""Training speed on a full-size generated data set (232,725 rows, the Kaggle file's size).

    python bench/train_speed.py [--rows 232725] [--epochs 5] [--rounds 2] [--threads N] [--skip-run]

Prints load time, encoder fit time, seconds per epoch and rows per second of
the default regression network (fit_model: validation included), and beside it,
in the same run, a bare PyTorch loop of the same network (the same widths,
batch, optimizer and loss, its input already one float tensor, no validation):
--rounds alternating rounds of --epochs epochs each, the medians and their ratio
(target: at most 1.2). Then the wall time of the default end-to-end run (load,
cross-fit, out-of-fold figures, save; bench/run_speed.py times it with the
catalog, against LightGBM).
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
from valence.training.trainer import _encoded, batch_size_for, fit_model, learning_rate_for  # noqa: E402
from valence.training.modules import as_tensors  # noqa: E402


def timed(function, *args, **kwargs):
    """Return (result, seconds) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def bare_loop(model, arrays, y, config, epochs):
    """Seconds of each epoch of the plainest loop over the same network: a shuffled index, row slices of
    the encoded input, L1 loss, the same AdamW; no validation, no bookkeeping."""
    x, y = _encoded(model, *as_tensors(arrays, "cpu")), torch.as_tensor(y)
    net = model.members[0]
    batch = batch_size_for(config, len(y))
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate_for(config, batch),
                                  weight_decay=config.weight_decay, fused=True)
    loss_fn, seconds = torch.nn.L1Loss(), []
    for _ in range(epochs):
        started = time.perf_counter()
        for idx in torch.randperm(len(y)).split(batch):
            loss = loss_fn(net(x[idx]).squeeze(1), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=232_725, help="generated rows (default: 232725)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed for the per-epoch figure (default: 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and the bare loop (default: 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default (default: 0)")
    parser.add_argument("--skip-run", action="store_true", help="leave out the end-to-end run (default: off)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        validation, y, ours, bare = encoder.transform(val), targets("regression", train), [], []
        for _ in range(args.rounds):
            model = build_model("regression", dataclasses.asdict(model_config_for("regression", encoder)))
            ours += fit_model(model, "regression", arrays, y, validation, targets("regression", val), config).seconds
            model = build_model("regression", dataclasses.asdict(model_config_for("regression", encoder)))
            bare += bare_loop(model, arrays, y, config, args.epochs)
        per_epoch, floor = sorted(ours)[len(ours) // 2], sorted(bare)[len(bare) // 2]
        print(f"default regression network: {per_epoch:.3f} s per epoch (median of {len(ours)}, "
              f"validation included), {len(train) / per_epoch:,.0f} training rows/s")
        print(f"bare PyTorch loop of the same network: {floor:.3f} s per epoch (median of {len(bare)}); "
              f"ratio {per_epoch / floor:.2f} (target: at most 1.2)")
        if args.skip_run:
            return

        options = RunOptions(data=path, model_dir=Path(folder) / "models", kinds=("regression",))
        run, seconds = timed(run_training, options, log=lambda message: None)
        metrics = run.models["regression"].metrics_record
        print(f"default end-to-end run (load, cross-fit {metrics['split']['folds']} fold models, test out-of-fold, "
              f"save): {seconds:.1f} s, epochs {metrics['epochs_run']} (best {metrics['best_epoch']}), "
              f"out-of-fold MAE {metrics['test_mae']:.4f} vs baseline {metrics['baseline_mae']:.4f}")


if __name__ == "__main__":
    main()
