"""The command-line tool's jobs as plain functions: train, test and save models; evaluate saved ones."""
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .bundle import load_bundle_from_dir, save_bundle
from .config import (DEFAULT_DATA, MODELS_DIR, TARGET, SplitConfig, ValenceError, bundle_path, counted, metrics_path,
                     normalise_name)
from .data import data_warnings, load_dataset, split_by_track
from .encoding import FeatureEncoder
from .explain import typical_song
from .fileio import write_text_atomic
from .metrics import classification_test_metrics, format_metrics, regression_test_metrics, to_classes
from .models import build_model, default_members, model_config_for, predict_arrays
from .trainer import History, TrainConfig, fit_model


@dataclass
class RunOptions:
    """Everything one run of the tool needs, as the entry file parsed it."""

    data: Path = DEFAULT_DATA
    model_dir: Path = MODELS_DIR
    kinds: tuple = ("regression",)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    plots_dir: Path | None = None
    quiet: bool = False
    save_on_interrupt: bool = False  # Ctrl-C keeps the best epoch so far (saved normally) instead of nothing


@dataclass
class Splits:
    """The loaded data, split by track, with the loader's report."""

    report: object
    train: object
    val: object
    test: object

    def counts(self):
        """Return rows and tracks per split."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        counts = {f"{name}_rows": int(len(part)) for name, part in parts.items()}
        counts.update({f"{name}_tracks": int(part["track_id"].nunique()) for name, part in parts.items()})
        return counts


@dataclass
class TrainedModel:
    """One trained model kind: the network, its encoder, how training went and its test figures."""

    kind: str
    model: torch.nn.Module
    encoder: FeatureEncoder
    history: History
    metrics_record: dict  # what <kind>.metrics.json holds
    test_predictions: np.ndarray  # valence (regression) or class probabilities (classification), row for row


@dataclass
class TrainingRun:
    """What a training run produced: the splits and each trained model kind."""

    splits: Splits
    models: dict = field(default_factory=dict)  # kind -> TrainedModel
    interrupted: str | None = None  # the kind Ctrl-C stopped and --save-on-interrupt saved


def load_splits(data_path, split, log=print):
    """Load the data set, report what was kept and repaired, and split it by track."""
    frame, report = load_dataset(data_path)
    log(report.summary())
    for note in report.notes:
        log(f"note: {note}")
    if len(frame) < 20:
        raise ValenceError(f"{data_path} has only {counted(len(frame), 'usable row')}; at least 20 are needed to train and test")
    train, val, test = split_by_track(frame, split)
    splits = Splits(report=report, train=train, val=val, test=test)
    counts = splits.counts()
    log(f"split by track_id (seed {split.seed}): train {counts['train_rows']:,} rows, "
        f"validation {counts['val_rows']:,}, test {counts['test_rows']:,}")
    for warning in data_warnings(frame, val, test):
        log(f"warning: {warning}")
    return splits


def targets(kind, frame):
    """Return the training target of a model kind: valence, or its class index."""
    valence = frame[TARGET].to_numpy(dtype=np.float32)
    return valence if kind == "regression" else to_classes(valence)


def predict_test_split(model, encoder, splits):
    """Return a model's predictions for the test split's rows."""
    return predict_arrays(model, encoder.transform(splits.test))


def test_split_metrics(kind, predicted, splits):
    """Return the test-split metrics of a model's predictions beside its baseline."""
    y_train, y_test = splits.train[TARGET].to_numpy(), splits.test[TARGET].to_numpy()
    if kind == "classification":
        return classification_test_metrics(y_train, y_test, predicted)
    metrics = regression_test_metrics(y_train, y_test, predicted)
    # Songs by artists the model saw in training are easier; report both groups.
    trained_on = set(splits.train["artist_name"].map(normalise_name))
    seen = splits.test["artist_name"].map(normalise_name).isin(trained_on).to_numpy()
    for name, mask in (("seen", seen), ("unseen", ~seen)):
        metrics[f"test_rows_{name}_artist"] = int(mask.sum())
        metrics[f"test_mae_{name}_artist"] = float(np.mean(np.abs(predicted[mask] - y_test[mask]))) if mask.any() else None
    return metrics


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; `saved` lists the bundles this run wrote before it."""

    def __init__(self, kind, saved):
        super().__init__(kind)
        self.kind = kind
        self.saved = saved


def new_model(kind, encoder, config, n_train_rows):
    """A fresh network for a fitted encoder, with config.members members (0: the default for the data size)."""
    members = config.members or default_members(n_train_rows)
    model_args = dataclasses.asdict(model_config_for(kind, encoder, n_members=members))
    return build_model(kind, model_args), model_args


def train_kind(kind, splits, config, on_epoch=None, stop_on_interrupt=False):
    """Fit the encoder on the training split, train a model, return (model, encoder, history)."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    encoder = FeatureEncoder()
    train_arrays = encoder.fit_transform(splits.train, splits.train[TARGET].to_numpy())
    model, model_args = new_model(kind, encoder, config, len(splits.train))
    history = fit_model(model, kind, train_arrays, targets(kind, splits.train),
                        encoder.transform(splits.val), targets(kind, splits.val), config, on_epoch=on_epoch,
                        stop_on_interrupt=stop_on_interrupt)
    return model, model_args, encoder, history


def metrics_record(kind, metrics, splits, options, seconds=None, history=None):
    """Return the metrics file's content: figures, counts, provenance."""
    record = {"model": kind, **metrics, **splits.counts(),
              "rows_read": splits.report.rows_read, "rows_kept": splits.report.rows_kept,
              "rows_skipped": dict(splits.report.skipped),
              "repaired_time_signatures": splits.report.repaired_time_signatures,
              "data_path": str(options.data), "data_sha256": splits.report.sha256,
              "split": dataclasses.asdict(options.split)}
    if history is not None:
        record.update(best_epoch=history.best_epoch, epochs_run=len(history.train_loss),
                      train_seconds=round(seconds, 2))
        if history.interrupted:
            record.update(interrupted=True, interrupted_at_epoch=len(history.train_loss) + 1)
    return record


def write_metrics(model_dir, kind, record, log):
    """Write `<model-dir>/<kind>.metrics.json` atomically."""
    path = metrics_path(model_dir, kind)
    write_text_atomic(path, json.dumps(record, indent=2, default=float) + "\n")
    log(f"wrote {path}")


def run_training(options, log=print, on_epoch=None):
    """Train, test and save each requested model kind; return the TrainingRun.

    On Ctrl-C: with options.save_on_interrupt the best epoch so far is tested and saved,
    the kinds after it are not trained, and run.interrupted names the kind; without
    it, TrainingInterrupted is raised and the interrupted kind's files are left as they were.
    """
    run = TrainingRun(splits=load_splits(options.data, options.split, log))
    saved = []
    for kind in options.kinds:
        try:
            trained = train_test_and_save(kind, run.splits, options, log, on_epoch(kind) if on_epoch else None)
        except KeyboardInterrupt:
            raise TrainingInterrupted(kind, saved) from None
        run.models[kind] = trained
        saved.append(bundle_path(options.model_dir, kind))
        if trained.history.interrupted:
            run.interrupted = kind
            break
    return run


def train_test_and_save(kind, splits, options, log, on_epoch):
    """Train one model kind, compute its test-split metrics and save its bundle and metrics file."""
    log(f"training the {kind} model (at most {counted(options.train.epochs, 'epoch')}, device {options.train.device})")
    started = time.perf_counter()
    model, model_args, encoder, history = train_kind(kind, splits, options.train, on_epoch=on_epoch,
                                                     stop_on_interrupt=options.save_on_interrupt)
    seconds = time.perf_counter() - started
    if history.interrupted:
        log(f"{kind}: interrupted during epoch {len(history.train_loss) + 1}; testing and saving "
            f"the best epoch so far ({history.best_epoch}), as --save-on-interrupt asks")
    predicted = predict_test_split(model, encoder, splits)
    metrics = test_split_metrics(kind, predicted, splits)
    log(f"{kind}: best epoch {history.best_epoch} of {len(history.train_loss)}, trained in {seconds:.1f} s")
    log(format_metrics(kind, metrics))
    record = metrics_record(kind, metrics, splits, options, seconds, history)
    save_bundle(bundle_path(options.model_dir, kind), kind, model, model_args, encoder,
                metrics=record, train_config=dataclasses.asdict(options.train),
                data={"path": str(options.data), "sha256": splits.report.sha256,
                      "rows": splits.report.rows_kept},
                split=dataclasses.asdict(options.split),
                background=typical_song(splits.train) if kind == "regression" else None)
    log(f"saved {bundle_path(options.model_dir, kind)}")
    write_metrics(options.model_dir, kind, record, log)
    return TrainedModel(kind=kind, model=model, encoder=encoder, history=history, metrics_record=record,
                        test_predictions=predicted)


def run_evaluation(options, log=print):
    """Evaluate saved models on the test split of the data they were trained with; return records by kind."""
    bundles = {kind: load_bundle_from_dir(options.model_dir, kind) for kind in options.kinds}
    results = {}
    for kind, bundle in bundles.items():
        split = SplitConfig(**bundle.meta.get("split", {}))
        splits = load_splits(options.data, split, log)
        if bundle.meta.get("data", {}).get("sha256") != splits.report.sha256:
            log(f"warning: {options.data} is not the file this {kind} model was trained on "
                f"(sha256 differs); its test split may overlap the model's training data")
        metrics = test_split_metrics(kind, predict_test_split(bundle.model, bundle.encoder, splits), splits)
        log(f"{kind} model saved {bundle.meta.get('created_at')}, evaluated on {options.data}")
        log(format_metrics(kind, metrics))
        # Printed, not written: the metrics file keeps the figures of the run that trained the model.
        results[kind] = metrics_record(kind, metrics, splits, dataclasses.replace(options, split=split))
    return results
