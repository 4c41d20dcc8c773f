"""Cross-fitting: k fold models by track, out-of-fold predictions for every labelled row, one served ensemble.

Every labelled track falls in one of k folds (a hash of its track_id). Fold model j
learns from the tracks of the other folds, less a share it keeps for early stopping,
with artist statistics from its own training rows only; it predicts fold j, so every
row gets a prediction from a model that never saw its track. The served model is all
fold models' networks averaged, reading an encoder fitted on every labelled row.
"""
import dataclasses
import importlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from valence.config import CLASS_EDGES, CLASS_NAMES, TARGET, SplitConfig, ValenceError
from valence.data.load import split_by_track
from valence.model.artists import matched_artists
from valence.model.encoder import FeatureEncoder
from valence.model.honest import track_folds as hash_folds
from valence.model.network import fold_state
from valence.training.metrics import (calibration_error, classification_metrics, fit_temperature, regression_metrics,
                                      scaled, to_classes)
from valence.training.foldpool import train_in_workers, workers_for
from valence.training.modules import build_model, model_config_for, predict_arrays
from valence.training.settings import FoldPlan, TrainConfig
from valence.training.trainer import MAX_BATCH, batch_size_for, fit_model


@dataclass
class CrossFit:
    """The served model and encoder, the out-of-fold predictions and each fold model's history."""

    model: object
    model_args: dict
    encoder: FeatureEncoder
    predictions: np.ndarray  # row i: from the fold model that never saw row i's track
    fold: np.ndarray  # fold of each row
    seen: np.ndarray  # whether row i's artist had tracks among its fold model's training rows
    histories: list = field(default_factory=list)
    encoded: dict | None = None  # row i as its fold model's encoder encoded it (regression: the intervals' inputs)


def track_folds(frame, folds, seed=0):
    """Fold index of each row: a hash of its track_id, so every listing of a track shares a fold (serving
    finds a catalog track's fold model by the same hash, honest.py)."""
    return hash_folds(frame["track_id"].to_numpy(), folds, seed)


def targets(kind, frame, soft=0.0):
    """The training target of a model kind: valence, or its class index (with `soft` > 0, class
    probabilities: the chance that valence blurred by a normal of that width falls in each class)."""
    valence = frame[TARGET].to_numpy(dtype=np.float32)
    if kind == "regression":
        return valence
    return soft_classes(valence, soft) if soft > 0 else to_classes(valence)


def soft_classes(valence, width):
    """(n, 3) probabilities of the mood classes for valence plus normal noise of standard deviation `width`.

    A track at valence 0.36 is neutral, but nearly as likely sad (0.54 / 0.46 at width 0.1): a classifier
    learning this no longer treats the class edges as walls. The likeliest class is the valence's own,
    except on an edge itself (0.35), where sad and neutral tie at one half."""
    low, high = CLASS_EDGES
    v = torch.as_tensor(np.asarray(valence, dtype=np.float64))
    below, above = torch.special.ndtr((low - v) / width), torch.special.ndtr((v - high) / width)
    return torch.stack([below, 1.0 - below - above, above], dim=1).numpy().astype(np.float32)


def members_per_fold(config):
    """Networks in each fold model: config.members, else one (the fold models make the ensemble)."""
    return config.members or 1


def fold_rows(frame, fold, j, plan):
    """The training and early-stopping rows of fold model j: the other folds' tracks, split by track."""
    rows = frame[fold != j].reset_index(drop=True)
    if rows["track_id"].nunique() < 2:
        raise ValenceError(f"fold {j + 1} of {plan.folds} leaves fewer than 2 tracks to train on; use fewer folds")
    split = SplitConfig(seed=plan.seed * plan.folds + j, val_fraction=plan.val_fraction, test_fraction=0.0)
    train, val, _ = split_by_track(rows, split)
    return train, val


def fold_encoder(frame, fold, j, plan, schema):
    """The training and validation rows of fold model j, and its encoder fitted on the training rows."""
    train, val = fold_rows(frame, fold, j, plan)
    encoder = FeatureEncoder()
    arrays = encoder.fit_transform(train, train[TARGET].to_numpy(), schema=schema)
    return train, val, encoder, arrays


def seen_artists(frame, held_out, train):
    """Whether each held-out row's artist has tracks among the training rows (names matched as the encoder does)."""
    known = set(matched_artists(train))  # each distinct name normalised once
    return pd.Series(matched_artists(frame[held_out]), dtype=object).isin(known).to_numpy()


@dataclass
class FoldResult:
    """What training one fold model gave: its weights (numpy), history, and its own fold's predictions."""

    state: dict
    history: object
    predictions: np.ndarray  # of the rows of fold j, in frame order
    seen: np.ndarray
    encoded: dict | None = None  # those rows encoded by fold model j's encoder (regression only)


@dataclass
class FoldJob:
    """Everything a fold model's training needs; train(j) runs in this process or in a forked worker."""

    kind: str
    frame: object
    fold: np.ndarray
    plan: FoldPlan
    schema: FeatureEncoder
    config: TrainConfig
    members: int

    def train(self, j, on_epoch=None, should_stop=None, stop_on_interrupt=False):
        """Train fold model j on the other folds' tracks; predict fold j."""
        train, val, encoder, arrays = fold_encoder(self.frame, self.fold, j, self.plan, self.schema)
        fold_config = dataclasses.replace(self.config, seed=self.config.seed * self.plan.folds + j)
        torch.manual_seed(fold_config.seed)  # the initial weights too: the same data gives the same model
        model = build_model(self.kind, dataclasses.asdict(model_config_for(self.kind, self.schema,
                                                                           n_members=self.members)))
        soft = self.config.soft_targets
        history = fit_model(model, self.kind, arrays, targets(self.kind, train, soft), encoder.transform(val),
                            targets(self.kind, val, soft), fold_config,
                            on_epoch=None if on_epoch is None else _with_fold(on_epoch, j, self.plan.folds),
                            stop_on_interrupt=stop_on_interrupt, should_stop=should_stop)
        held_out = self.fold == j
        encoded = encoder.transform(self.frame[held_out])
        return FoldResult(state={k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                          history=history, predictions=predict_arrays(model, encoded),
                          seen=seen_artists(self.frame, held_out, train),
                          encoded=encoded if self.kind == "regression" else None)


def cross_fit(kind, frame, config, plan, on_epoch=None, stop_on_interrupt=False):
    """Train plan.folds fold models on `frame`; return the CrossFit (served ensemble, out-of-fold predictions).

    With config.workers other than 1 on the CPU, the fold models train side by side in forked worker
    processes (foldpool.py); they are the same models either way. Ctrl-C keeps (with stop_on_interrupt)
    the fold models before the first one that had not finished an epoch, each at its best epoch so far."""
    plan = plan.resolved(len(frame))
    fold = track_folds(frame, plan.folds, plan.seed)
    empty = sorted(set(range(plan.folds)) - set(fold.tolist()))
    if empty:
        raise ValenceError(f"{frame['track_id'].nunique()} tracks leave fold {empty[0] + 1} of {plan.folds} "
                           f"empty; use fewer folds")
    # The fold models need only the input layout (quantiles and vocabularies of every labelled row); the
    # served encoder's artist statistics are fitted while they train (in this process, beside the workers).
    layout = FeatureEncoder().fit_layout(frame)
    members = members_per_fold(config)
    job = FoldJob(kind=kind, frame=frame, fold=fold, plan=plan, schema=layout, config=config, members=members)
    workers = fold_workers(config, plan, len(frame))
    schema = None
    if workers > 1:
        results, schema = _in_workers(job, workers, on_epoch, stop_on_interrupt,
                                      meanwhile=lambda: served_encoder(frame, layout))
    else:
        results = []
        for j in range(plan.folds):
            results.append(job.train(j, on_epoch, stop_on_interrupt=stop_on_interrupt))
            if results[-1].history.interrupted:
                break
    if schema is None:
        schema = served_encoder(frame, layout)
    predictions = np.zeros((len(frame),) + results[0].predictions.shape[1:], dtype=np.float32)
    seen = np.zeros(len(frame), dtype=bool)
    encoded = None
    if results[0].encoded is not None:
        encoded = {name: np.zeros((len(frame), array.shape[1]), dtype=array.dtype)
                   for name, array in results[0].encoded.items()}
    for j, result in enumerate(results):
        predictions[fold == j], seen[fold == j] = result.predictions, result.seen
        for name in encoded or ():
            encoded[name][fold == j] = result.encoded[name]
    model_args = dataclasses.asdict(model_config_for(kind, schema, n_members=members * len(results)))
    served = build_model(kind, model_args)
    served.load_state_dict(merge_states([{k: torch.from_numpy(v) for k, v in r.state.items()} for r in results],
                                        members))
    served.eval()
    return CrossFit(model=served, model_args=model_args, encoder=schema, predictions=predictions, fold=fold,
                    seen=seen, histories=[r.history for r in results], encoded=encoded)


def served_encoder(frame, layout):
    """The served encoder: fitted on every labelled row, in the layout the fold models were built for."""
    return FeatureEncoder().fit(frame, frame[TARGET].to_numpy(), schema=layout)


def fold_workers(config, plan, n_rows):
    """Worker processes that train the fold models of a resolved plan on n_rows labelled rows (foldpool.py)."""
    train_rows = int(n_rows * (1 - 1 / plan.folds) * (1 - plan.val_fraction))
    return workers_for(config.workers, plan.folds, config.device,
                       small_batches=batch_size_for(config, train_rows) < MAX_BATCH)


def _in_workers(job, workers, on_epoch, stop_on_interrupt, meanwhile=None):
    """The fold models' results trained in worker processes, and meanwhile()'s result (run here while they
    train; None if it never ran): all of them, or after Ctrl-C (with stop_on_interrupt) those before the
    first fold model that has no epoch to keep, the last marked interrupted; without stop_on_interrupt,
    Ctrl-C raises KeyboardInterrupt."""
    # A torch optimizer's first construction imports torch._dynamo (1.7 s): once here, which every forked
    # worker then shares, rather than once in each worker.
    importlib.import_module("torch._dynamo")
    done, interrupted, beside = train_in_workers(
        lambda j, report, should_stop: job.train(j, report, should_stop, stop_on_interrupt=True),
        job.plan.folds, workers, on_epoch, meanwhile)
    if interrupted and not stop_on_interrupt:
        raise KeyboardInterrupt
    results = []
    for j in range(job.plan.folds):
        if done.get(j) is None:
            break
        results.append(done[j])
    if not results:
        raise KeyboardInterrupt  # no fold model had finished an epoch
    if interrupted:
        results[-1].history.interrupted = True  # the run ends with it, as a run in one process does
    return results, beside


def _with_fold(on_epoch, j, folds):
    """An epoch callback that also says which fold model is training."""
    return lambda epoch, record: on_epoch(epoch, {**record, "fold": f"{j + 1}/{folds}"})


def merge_states(states, members):
    """One ensemble's state dict from fold models' state dicts of `members` networks each."""
    merged = {}
    for j, state in enumerate(states):
        for key, value in state.items():
            if key.startswith("members."):
                _, index, rest = key.split(".", 2)
                key = f"members.{j * members + int(index)}.{rest}"
            merged[key] = value
    return merged


def fold_model(kind, model_args, state, j, members):
    """Fold model j of a served ensemble: its `members` networks, rebuilt on their own."""
    model = build_model(kind, dict(model_args, n_members=members))
    model.load_state_dict(fold_state(state, j, members))
    model.eval()
    return model


def out_of_fold(kind, model, model_args, schema, frame, plan, members):
    """Predict every row of `frame` with the fold model that never saw its track; the fold encoders are
    refitted as training fitted them, with the saved encoder's quantiles and vocabularies."""
    plan = plan.resolved(len(frame))
    fold = track_folds(frame, plan.folds, plan.seed)
    state = model.state_dict()
    predictions = None
    for j in range(plan.folds):
        held_out = fold == j
        if not held_out.any():
            continue
        _, _, encoder, _ = fold_encoder(frame, fold, j, plan, schema)
        out = predict_arrays(fold_model(kind, model_args, state, j, members), encoder.transform(frame[held_out]))
        if predictions is None:
            predictions = np.zeros((len(frame),) + out.shape[1:], dtype=np.float32)
        predictions[held_out] = out
    return predictions, fold


def calibrate(probabilities, truth, fold):
    """Temperature-scale out-of-fold class probabilities: each fold's rows by a temperature fitted on the
    other folds' rows (so the calibration figures stay out of fold); return them and the temperature fitted
    on every row, which the served classifier keeps, and each fold's (which --evaluate applies again)."""
    out = np.empty(np.shape(probabilities), dtype=np.float64)
    folds = np.unique(fold)
    by_fold = {}
    for j in folds:
        inside = fold == j
        others = ~inside if len(folds) > 1 else inside
        by_fold[int(j)] = fit_temperature(probabilities[others], truth[others])
        out[inside] = scaled(probabilities[inside], by_fold[int(j)])
    return out.astype(np.float32), fit_temperature(probabilities, truth), by_fold


def out_of_fold_metrics(kind, frame, predictions, fold, seen):
    """Figures of out-of-fold predictions over every row, beside a baseline that is out-of-fold too
    (the mean valence, or the majority class, of the other folds)."""
    y = frame[TARGET].to_numpy(dtype=np.float64)
    baseline = np.zeros(len(y))
    for j in np.unique(fold):
        baseline[fold == j] = y[fold != j].mean() if (fold != j).any() else y.mean()
    if kind == "classification":
        truth = to_classes(y)
        model = classification_metrics(truth, np.argmax(predictions, axis=1))
        majority = np.zeros(len(y), dtype=np.int64)
        for j in np.unique(fold):
            others = truth[fold != j] if (fold != j).any() else truth
            majority[fold == j] = np.bincount(others, minlength=len(CLASS_NAMES)).argmax()
        base = classification_metrics(truth, majority)
        metrics = {**{f"test_{k}": v for k, v in model.items()}, **{f"baseline_{k}": v for k, v in base.items()}}
        metrics["test_ece"] = calibration_error(predictions, truth)  # 15 bins of the top probability
        metrics["baseline_class"] = CLASS_NAMES[int(np.bincount(majority).argmax())]
        return metrics
    model, base = regression_metrics(y, predictions), regression_metrics(y, baseline)
    metrics = {**{f"test_{k}": v for k, v in model.items()}, **{f"baseline_{k}": v for k, v in base.items()}}
    for name, mask in (("seen", seen), ("unseen", ~seen)):  # songs of artists the fold model knew are easier
        metrics[f"test_rows_{name}_artist"] = int(mask.sum())
        metrics[f"test_mae_{name}_artist"] = float(np.mean(np.abs(predictions[mask] - y[mask]))) if mask.any() else None
    return metrics
