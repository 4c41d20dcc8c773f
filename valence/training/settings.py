"""The settings of a run, torch-free: the entry module parses its options into these without importing
torch, which a serving worker (which imports the entry module for create_app) never needs."""
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from valence.config import DEFAULT_DATA, MODELS_DIR


@dataclass
class TrainConfig:
    """Training settings; the defaults are the recipe."""
    epochs: int = 60  # a maximum: early stopping usually ends sooner
    batch_size: int = 0  # 0: batch_size_for(training rows), 1024 on large data and smaller on small data
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 0  # epochs without a better validation score before stopping; 0: patience_for
    seed: int = 0
    device: str = "cpu"
    loss: str = "l1"  # regression: "l1" (the MAE target), "huber" or "mse"
    huber_delta: float = 0.1
    label_smoothing: float = 0.0  # classification only
    # Classification only: train (and early-stop) on the mood probabilities of valence blurred by a normal of this
    # standard deviation (crossfit.soft_classes), 0 for the hard classes: a song just past a class edge is nearly
    # as likely the other class, and soft targets beat hard ones on every split seed (docs/quality.md).
    soft_targets: float = 0.1
    plateau_patience: int = 2  # cut the learning rate after this many epochs without improvement (0: never)
    plateau_factor: float = 0.3
    members: int = 0  # networks in each fold model's ensemble; 0: one (the fold models make the ensemble)
    # Early stopping and the learning-rate cut watch the validation "loss" or "metric" (MAE / accuracy). For
    # classifiers the loss: accuracy moves in coarse steps on a small validation set and stops training too
    # early (docs/quality.md). For L1 regression the two are the same.
    stop_on: str = "loss"
    # Fold models trained at once, each in a forked process with one torch thread (foldpool.py); 0: one per
    # usable CPU core on small batches, every fold model at once on large ones; 1: one after the other in
    # this process (always so on a GPU).
    workers: int = 0


@dataclass
class FoldPlan:
    """How labelled rows are cross-fitted: the folds, and each fold model's early-stopping share."""

    folds: int = 0  # 0: folds_for(rows)
    val_fraction: float = 0.1  # of each fold model's tracks, for early stopping only
    seed: int = 0

    def resolved(self, n_rows):
        """This plan with the automatic fold count made concrete for n_rows labelled rows."""
        return self if self.folds else dataclasses.replace(self, folds=folds_for(n_rows))


def folds_for(n_rows):
    """Fold models for a data set of n_rows labelled rows: 20 from 1,000 to 2,499 rows, 3 from 100,000 on,
    10 otherwise. More folds give each fold model more of the rows and the served ensemble more members;
    below 1,000 rows 20 folds would be of 50 songs or fewer, and above 100,000 rows 3 keep the default run
    short. The measurements behind each boundary are in docs/quality.md."""
    if SMALL_ROWS <= n_rows < MID_ROWS:
        return 20
    return 10 if n_rows < LARGE_ROWS else 3


def patience_for(config, kind, n_rows):
    """config.patience, or (0) 8 epochs, and 6 for a regression model of SHORT_PATIENCE_ROWS training rows or
    more: large regression fold models stop sooner at the same error, while the classifier and small files
    lose with 6 (docs/quality.md)."""
    if config.patience:
        return config.patience
    return SHORT_PATIENCE if kind == "regression" and n_rows >= SHORT_PATIENCE_ROWS else PATIENCE


PATIENCE, SHORT_PATIENCE, SHORT_PATIENCE_ROWS = 8, 6, 4096
SMALL_ROWS, MID_ROWS = 1_000, 2_500
LARGE_ROWS = 100_000


@dataclass
class RunOptions:
    """Everything one run of the tool needs, as the entry file parsed it."""

    data: Path = DEFAULT_DATA
    model_dir: Path = MODELS_DIR
    kinds: tuple = ("regression",)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: FoldPlan = field(default_factory=FoldPlan)
    plots_dir: Path | None = None
    quiet: bool = False
    save_on_interrupt: bool = False  # Ctrl-C keeps the best epoch so far (saved normally) instead of nothing


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; `saved` lists the bundles this run wrote before it."""

    def __init__(self, kind, saved):
        super().__init__(kind)
        self.kind = kind
        self.saved = saved
