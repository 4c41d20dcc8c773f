"""How honest the answers are: interval coverage and width, mood calibration, catalog predictions.

    python bench/honesty.py [--data FILE] [--seeds 3]

1. Intervals: on track-grouped splits (test 20 %, the tool's cross-fit on the other 80 %), the share
   of held-out songs whose valence the 90 % interval holds, overall, for songs whose artist the
   training rows have and lack, and per genre with >= 200 test rows; the mean width beside the single
   constant width (clipped to [0, 1] like ours) that reaches 90 % on the same rows (targets: 88-92 %,
   +-5 points per group, width <= 1.05x).
2. Moods: expected calibration error (15 bins of the top probability) out of fold, as the metrics file
   reports it, and of the served classifier on the held-out songs, with the accuracy.
3. Catalog: the tool trained on the whole file, 3,000 random labelled tracks predicted as the catalog
   predicts them (honest.py) and as the served model alone would: mean |prediction - valence| over
   the run's out-of-fold MAE (target >= 0.95).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from valence import config  # noqa: E402
from valence.data.load import load_dataset, split_by_track  # noqa: E402
from valence.model.intervals import Intervals  # noqa: E402
from valence.model.predictor import Predictor  # noqa: E402
from valence.training.crossfit import calibrate, cross_fit, targets  # noqa: E402
from valence.training.metrics import calibration_error, scaled, to_classes  # noqa: E402
from valence.training.modules import predict_arrays  # noqa: E402
from valence.training.pipeline import run_training  # noqa: E402
from valence.training.settings import FoldPlan, RunOptions, TrainConfig  # noqa: E402

REAL_SLICE = config.PROJ_ROOT.parent / "shared" / "data" / "spotify_features_partial.csv"
LEVEL, MIN_GENRE_ROWS, CATALOG_TRACKS = 0.9, 200, 3000


def interval_figures(labelled, test):
    """Coverage and widths of 90 % intervals on the test rows, by group."""
    fitted = cross_fit("regression", labelled, TrainConfig(), FoldPlan())
    intervals = Intervals.fit_out_of_fold(fitted.encoder, fitted.encoded, fitted.predictions,
                                          targets("regression", labelled), fitted.fold)
    arrays = fitted.encoder.transform(test)
    prediction = predict_arrays(fitted.model, arrays).astype(np.float64)
    low, high = intervals.interval(arrays, prediction, LEVEL)
    y = test[config.TARGET].to_numpy()
    inside, width = (y >= low) & (y <= high), high - low
    half = np.quantile(np.abs(y - prediction), LEVEL)  # the constant half-width that holds 90 % of these rows
    constant = np.minimum(prediction + half, 1) - np.maximum(prediction - half, 0)
    seen = arrays["numeric"][:, fitted.encoder.feature_names()["numeric"].index("artist_seen")] > 0.5
    groups = {"all": np.ones(len(y), dtype=bool), "artist seen": seen, "artist unseen": ~seen}
    for genre, rows in test.groupby("genre").indices.items():
        if len(rows) >= MIN_GENRE_ROWS:
            mask = np.zeros(len(y), dtype=bool)
            mask[rows] = True
            groups[f"genre {genre}"] = mask
    return {name: (int(mask.sum()), float(inside[mask].mean()), float(width[mask].mean())) for name, mask in
            groups.items()}, float(width.mean() / constant.mean())


def mood_figures(labelled, test):
    """ECE out of fold (temperatures cross-fitted) and of the served classifier on the test rows; accuracy."""
    fitted = cross_fit("classification", labelled, TrainConfig(), FoldPlan())
    truth = to_classes(labelled[config.TARGET].to_numpy())
    oof, temperature, _ = calibrate(fitted.predictions, truth, fitted.fold)
    served = scaled(predict_arrays(fitted.model, fitted.encoder.transform(test)), temperature)
    test_truth = to_classes(test[config.TARGET].to_numpy())
    return (calibration_error(oof, truth), calibration_error(served, test_truth),
            float((served.argmax(axis=1) == test_truth).mean()))


def catalog_figures(data):
    """Mean |prediction - valence| of 3,000 labelled tracks, honest and in-sample, over the out-of-fold MAE."""
    with tempfile.TemporaryDirectory() as folder:
        run = run_training(RunOptions(data=Path(data), model_dir=Path(folder)), log=lambda message: None)
        predictor = Predictor.from_model_dir(folder)
        oof = run.models["regression"].metrics_record["test_mae"]
    frame = run.splits.frame
    tracks = frame.drop_duplicates("track_id").sample(CATALOG_TRACKS, random_state=0)
    rows = frame[frame["track_id"].isin(tracks["track_id"])]
    y = rows[config.TARGET].to_numpy()
    honest = np.abs(predictor.predict(rows, honest=True).valence - y)
    served = np.abs(predictor.predict(rows).valence - y)
    # A track's catalog prediction is the mean of its listings': per track, as the catalog answers.
    by_track = rows.assign(honest=honest, served=served).groupby("track_id")[["honest", "served"]].mean()
    return oof, float(by_track["honest"].mean()), float(by_track["served"].mean())


def track_split(frame, seed):
    """(train, val, test) of a track-grouped split seed, as bench/quality.py splits by default."""
    return split_by_track(frame, config.SplitConfig(seed=seed))


def interval_report(frame, seeds, split=track_split, label="the data"):
    """Print the interval and mood-calibration figures over split seeds (split(frame, seed) -> train, val, test)."""
    coverage, ratios, eces = {}, [], []
    for seed in seeds:
        train, val, test = split(frame, seed)
        labelled = pd.concat([train, val], ignore_index=True)
        figures, ratio = interval_figures(labelled, test)
        for name, values in figures.items():
            coverage.setdefault(name, []).append(values)
        ratios.append(ratio)
        eces.append(mood_figures(labelled, test))
        print(f"seed {seed}: coverage {figures['all'][1]:.3f}, width ratio {ratio:.3f}, "
              f"ECE out of fold {eces[-1][0]:.4f}, held out {eces[-1][1]:.4f}", flush=True)
    print(f"\n90 % intervals on {len(seeds)} splits of {label} (mean over seeds)")
    print(f"{'group':<24} {'test rows':>9} {'coverage':>9} {'mean width':>11}")
    for name, values in coverage.items():
        rows, cover, width = np.mean(np.array(values), axis=0)
        print(f"{name:<24} {rows:>9.0f} {cover:>9.3f} {width:>11.4f}")
    print(f"mean width / constant width reaching 90 %: {np.mean(ratios):.3f} (per seed: "
          f"{', '.join(f'{r:.3f}' for r in ratios)})")
    oof_ece, test_ece, accuracy = np.mean(np.array(eces), axis=0)
    print(f"\nmood: ECE out of fold {oof_ece:.4f}, of the served classifier on held-out songs {test_ece:.4f} "
          f"(accuracy {accuracy:.4f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_SLICE, help=f"Kaggle-format CSV (default: {REAL_SLICE})")
    parser.add_argument("--seeds", type=int, default=3, help="track-grouped split seeds 0..N-1 (default: 3)")
    args = parser.parse_args(argv)
    frame, _ = load_dataset(args.data)
    interval_report(frame, list(range(args.seeds)), label=f"{args.data.name}, grouped by track")
    oof, honest, served = catalog_figures(args.data)
    print(f"\ncatalog of {args.data.name}, {CATALOG_TRACKS:,} labelled tracks: mean |prediction - valence| honest "
          f"{honest:.4f} ({honest / oof:.2f}x the out-of-fold MAE {oof:.4f}); the served model alone would show "
          f"{served:.4f} ({served / oof:.2f}x)")


if __name__ == "__main__":
    main()
