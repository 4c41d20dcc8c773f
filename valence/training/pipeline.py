"""The command-line tool's jobs as plain functions: cross-fit, test and save models; evaluate saved ones.

Every labelled row is a test row of exactly one fold model (see crossfit.py): the figures are
out-of-fold over all rows, and the saved model, all fold models averaged, learned from every row
except the shares its fold models kept for early stopping.
"""
import dataclasses
import importlib
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from valence.model.bundle import load_bundle_from_dir, save_bundle
from valence.config import ValenceError, bundle_path, counted, metrics_path
from valence.training.crossfit import (calibrate, cross_fit, fold_rows, fold_workers, members_per_fold, out_of_fold,
                                      out_of_fold_metrics, targets, track_folds)
from valence.training.crossfit import seen_artists as crossfit_seen
from valence.data.load import data_warnings, load_dataset
from valence.model.encoder import FeatureEncoder
from valence.model.explain import typical_song
from valence.model.intervals import Intervals
from valence.fileio import write_text_atomic
from valence.training.metrics import format_metrics, scaled
from valence.training.modules import state_arrays, torch_module
from valence.training.settings import FoldPlan, TrainingInterrupted
from valence.training.trainer import History


@dataclass
class Splits:
    """The loaded labelled rows with the loader's report and each row's fold; every row is a test row
    of the one fold model that did not learn from it, and a training row of the others."""

    plan: FoldPlan  # with the fold count made concrete
    report: object
    frame: object
    fold: np.ndarray

    @property
    def train(self):
        """Every labelled row (the saved model learned from all of them)."""
        return self.frame

    @property
    def test(self):
        """Every labelled row (each predicted by the fold model that never saw its track)."""
        return self.frame

    def counts(self):
        """Return rows and tracks, and the rows of each fold."""
        return {"rows": int(len(self.frame)), "tracks": int(self.frame["track_id"].nunique()),
                "test_rows": int(len(self.frame)), "fold_rows": np.bincount(self.fold).tolist()}


@dataclass
class TrainedModel:
    """One trained model kind: the network, its encoder, how training went and its test figures."""

    kind: str
    model: torch.nn.Module
    encoder: FeatureEncoder
    history: History
    metrics_record: dict  # what <kind>.metrics.json holds
    test_predictions: np.ndarray  # out-of-fold valence or class probabilities, row for row of splits.test
    histories: list = field(default_factory=list)  # one per fold model; `history` is the first's


@dataclass
class TrainingRun:
    """What a training run produced: the splits and each trained model kind."""

    splits: Splits
    models: dict = field(default_factory=dict)  # kind -> TrainedModel
    interrupted: str | None = None  # the kind Ctrl-C stopped and --save-on-interrupt saved


def load_splits(data_path, plan, log=print):
    """Load the data set, report what was kept and repaired, and assign every row's track a fold
    (plan.folds 0: the automatic count for the data size)."""
    frame, report = load_dataset(data_path)
    log(report.summary())
    for note in report.notes:
        log(f"note: {note}")
    if len(frame) < 20:
        raise ValenceError(f"{data_path} has only {counted(len(frame), 'usable row')}; at least 20 are needed to train and test")
    plan = plan.resolved(len(frame))
    splits = Splits(plan=plan, report=report, frame=frame, fold=track_folds(frame, plan.folds, plan.seed))
    early_stopping = fold_rows(frame, splits.fold, 0, plan)[1]  # each fold model keeps about this many
    for warning in data_warnings(frame, early_stopping, frame):
        log(f"warning: {warning}")
    log(f"cross-fitting {plan.folds} folds by track_id (seed {plan.seed}): {len(frame):,} rows; each fold model "
        f"learns from the other folds less {plan.val_fraction:.0%} of their tracks for early stopping, and predicts "
        f"its own fold for the test figures")
    return splits


FIGURES_FROM = ("out-of-fold: every labelled row, each predicted by the fold model that never learned from its "
                "track (artist statistics from that model's training rows only); the saved model averages all "
                "fold models")


def metrics_record(kind, metrics, splits, options, seconds=None, history=None):
    """Return the metrics file's content: figures, counts, provenance."""
    record = {"model": kind, "figures_from": FIGURES_FROM, **metrics, **splits.counts(),
              "rows_read": splits.report.rows_read, "rows_kept": splits.report.rows_kept,
              "rows_skipped": dict(splits.report.skipped),
              "repaired_time_signatures": splits.report.repaired_time_signatures,
              "data_path": str(options.data), "data_sha256": splits.report.sha256,
              "split": dataclasses.asdict(splits.plan)}
    if history is not None:  # a list: one History per fold model trained
        record.update(best_epoch=[h.best_epoch for h in history], epochs_run=[len(h.train_loss) for h in history],
                      train_seconds=round(seconds, 2))
        if history[-1].interrupted:
            record.update(interrupted=True, interrupted_fold=len(history),
                          interrupted_at_epoch=len(history[-1].train_loss) + 1)
    return record


def write_metrics(model_dir, kind, record, log):
    """Write `<model-dir>/<kind>.metrics.json` atomically."""
    path = metrics_path(model_dir, kind)
    write_text_atomic(path, json.dumps(record, indent=2, default=float) + "\n")
    log(f"wrote {path}")


def used_settings(config, histories):
    """Return a run's TrainConfig as a dict, with the patience its fold models used in place of 0 (automatic):
    one number when they all used one, else one per fold model."""
    settings = dataclasses.asdict(config)
    used = [history.patience for history in histories]
    settings["patience"] = used[0] if len(set(used)) == 1 else used
    settings["patience_automatic"] = config.patience == 0
    return settings


def run_training(options, log=print, on_epoch=None):
    """Train, test and save each requested model kind; return the TrainingRun.

    On Ctrl-C: with options.save_on_interrupt the best epoch so far is tested and saved,
    the kinds after it are not trained, and run.interrupted names the kind; without
    it, TrainingInterrupted is raised and the interrupted kind's files are left as they were.
    """
    # torch._dynamo, which a torch optimizer's first step imports (1.7 s on one core, before any fold model trains),
    # imported beside the reading of the data: the CSV parser and numpy leave the interpreter lock meanwhile.
    importing = threading.Thread(target=importlib.import_module, args=("torch._dynamo",), name="import-dynamo")
    importing.start()
    try:
        run = TrainingRun(splits=load_splits(options.data, options.split, log))
    finally:
        importing.join()  # before any worker forks: a fork while a thread imports could leave its lock held
    saved = []
    for kind in options.kinds:
        try:
            trained = train_test_and_save(kind, run.splits, options, log, on_epoch(kind) if on_epoch else None)
        except KeyboardInterrupt:
            raise TrainingInterrupted(kind, saved) from None
        run.models[kind] = trained
        saved.append(bundle_path(options.model_dir, kind))
        if trained.histories[-1].interrupted:  # Ctrl-C ends a run in whichever fold model it lands
            run.interrupted = kind
            break
    return run


def train_test_and_save(kind, splits, options, log, on_epoch):
    """Cross-fit one model kind, compute its out-of-fold figures and save its bundle and metrics file."""
    plan = splits.plan
    workers = fold_workers(options.train, plan, len(splits.frame))
    at_once = f", {workers} at a time in worker processes" if workers > 1 else ""
    log(f"training the {kind} model: {plan.folds} fold models (at most {counted(options.train.epochs, 'epoch')} "
        f"each, device {options.train.device}{at_once})")
    started = time.perf_counter()
    fitted = cross_fit(kind, splits.frame, options.train, plan, on_epoch=on_epoch,
                       stop_on_interrupt=options.save_on_interrupt)
    seconds = time.perf_counter() - started
    histories = fitted.histories
    if histories[-1].interrupted:
        log(f"{kind}: interrupted in fold {len(histories)} during epoch {len(histories[-1].train_loss) + 1}; "
            f"testing and saving the {len(histories)} fold models so far (the last at its best epoch, "
            f"{histories[-1].best_epoch}), as --save-on-interrupt asks")
    covered = splits.fold < len(histories)  # every row, unless Ctrl-C stopped before the last fold
    frame, fold, predictions = splits.frame[covered], splits.fold[covered], fitted.predictions[covered]
    intervals, temperature, by_fold = None, 1.0, {}
    if kind == "regression":  # calibrated on the out-of-fold residuals (intervals.py)
        encoded = {name: array[covered] for name, array in fitted.encoded.items()}
        intervals = Intervals.fit_out_of_fold(fitted.encoder, encoded, predictions, targets(kind, frame), fold)
    else:  # the figures read probabilities scaled out of fold; the served model keeps one temperature
        predictions, temperature, by_fold = calibrate(predictions, targets(kind, frame), fold)
    metrics = out_of_fold_metrics(kind, frame, predictions, fold, fitted.seen[covered])
    log(f"{kind}: best epochs {', '.join(str(h.best_epoch) for h in histories)} of the {len(histories)} fold "
        f"models, trained in {seconds:.1f} s")
    log(format_metrics(kind, metrics))
    record = metrics_record(kind, metrics, splits, options, seconds, histories)
    save_bundle(bundle_path(options.model_dir, kind), kind, state_arrays(fitted.model), fitted.model_args,
                fitted.encoder, metrics=record, train_config=used_settings(options.train, histories),
                data={"path": str(options.data), "sha256": splits.report.sha256,
                      "rows": splits.report.rows_kept},
                split={**dataclasses.asdict(plan), "folds_trained": len(histories),
                       "members_per_fold": members_per_fold(options.train),
                       "fold_temperatures": [by_fold.get(j, 1.0) for j in range(len(histories))]},
                background=typical_song(splits.train) if kind == "regression" else None,
                versions={"torch": torch.__version__}, intervals=intervals, temperature=temperature)
    log(f"saved {bundle_path(options.model_dir, kind)}")
    write_metrics(options.model_dir, kind, record, log)
    out = np.full(fitted.predictions.shape, np.nan)
    out[covered] = predictions
    return TrainedModel(kind=kind, model=fitted.model, encoder=fitted.encoder, history=histories[0],
                        metrics_record=record, test_predictions=out, histories=histories)


def run_evaluation(options, log=print):
    """Figures of saved models on a data file, out-of-fold as training computed them: each row is predicted
    by the fold model that never learned from its track. Return the metrics records by kind."""
    bundles = {kind: load_bundle_from_dir(options.model_dir, kind) for kind in options.kinds}
    results = {}
    for kind, bundle in bundles.items():
        saved = dict(bundle.meta.get("split", {}))
        trained, members = int(saved.pop("folds_trained")), int(saved.pop("members_per_fold"))
        temperatures = saved.pop("fold_temperatures", None) or [1.0] * trained
        plan = FoldPlan(**saved)
        splits = load_splits(options.data, plan, log)
        if bundle.meta.get("data", {}).get("sha256") != splits.report.sha256:
            log(f"note: {options.data} is not the file this {kind} model was trained on (sha256 differs); rows of "
                f"tracks it learned from are still predicted only by the fold model that did not")
        covered = splits.fold < trained
        frame = splits.frame[covered].reset_index(drop=True)
        predicted, fold = out_of_fold(kind, torch_module(bundle), bundle.meta["model_args"], bundle.encoder,
                                      frame, plan, members)
        seen = seen_artists(frame, fold, plan)
        if kind == "classification":  # as the figures of training: each fold's rows by its fold's temperature
            for j in range(trained):
                predicted[fold == j] = scaled(predicted[fold == j], temperatures[j])
        metrics = out_of_fold_metrics(kind, frame, predicted, fold, seen)
        log(f"{kind} model saved {bundle.meta.get('created_at')}, evaluated on {options.data}")
        log(format_metrics(kind, metrics))
        # Printed, not written: the metrics file keeps the figures of the run that trained the model.
        results[kind] = metrics_record(kind, metrics, splits, options)
    return results


def seen_artists(frame, fold, plan):
    """Whether each row's artist has tracks among its fold model's training rows."""
    seen = np.zeros(len(frame), dtype=bool)
    for j in np.unique(fold):
        train, _ = fold_rows(frame, fold, j, plan)
        seen[fold == j] = crossfit_seen(frame, fold == j, train)
    return seen
