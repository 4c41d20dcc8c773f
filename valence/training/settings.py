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
    # standard deviation (crossfit.soft_classes), 0 for the hard classes. Five split seeds of bench/quality.py on
    # the real slice: accuracy 0.6327 / macro-F1 0.6356 at 0.1 against 0.6272 / 0.6295 hard (better on every
    # seed); 0.05 gave 0.6306 / 0.6327, 0.15 0.6292 / 0.6344.
    soft_targets: float = 0.1
    plateau_patience: int = 2  # cut the learning rate after this many epochs without improvement (0: never)
    plateau_factor: float = 0.3
    members: int = 0  # networks in each fold model's ensemble; 0: one (the fold models make the ensemble)
    # Early stopping and the learning-rate cut watch the validation "loss" or "metric" (MAE / accuracy). For
    # classifiers the loss measured better: accuracy 0.6226 / macro-F1 0.6251 against 0.6196 / 0.6208 on the
    # real slice, 0.5565 / 0.5522 against 0.5410 / 0.5177 on 1,500-row files (accuracy moves in coarse steps
    # on a small validation set and stopped training too early). For L1 regression the two are the same.
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
    10 otherwise. More folds give each fold model more rows (81 % of them with 10, 72 % with 5, 85.5 % with
    20) and the served ensemble more members:
    - the real slice (five split seeds of bench/quality.py): 10 folds measured MAE 0.1240 against 0.1243
      with 5, R² 0.5209 against 0.5189, accuracy 0.6331 against 0.6321 (8 folds: 0.1242, 0.5194, 0.6334);
    - 1,500-row files (3 seeds, with the first version-marker rules of commit bcbc21b): 20 folds measured
      MAE 0.14048 against 0.1406 with 10, R² 0.4117 against 0.4096, mood accuracy 0.5676 against 0.5643,
      macro-F1 0.5675 against 0.5658 (with the corrected rules the 20-fold default gave 0.1412, 0.4067,
      0.5632, 0.5639; 10 folds against 5, earlier: MAE 0.1410 against 0.1418); on 5,000-row files 20 folds gained on the regression (MAE 0.1345 against 0.1350) but
      lost on the mood (accuracy 0.5944 against 0.5977), at twice the time;
    - below 1,000 rows, 20 folds would leave folds of 50 songs or fewer (one may be empty);
    - above 100,000 rows, 3 keep the default run on the 232,725-row file within its 60 s."""
    if SMALL_ROWS <= n_rows < MID_ROWS:
        return 20
    return 10 if n_rows < LARGE_ROWS else 3


def patience_for(config, kind, n_rows):
    """config.patience, or (0) 8 epochs, and 6 for a regression model of SHORT_PATIENCE_ROWS training rows or
    more. Five split seeds of the real slice (fold models of about 16,000 rows), with the encoder's mood and
    song-version statistics: 6 measured MAE 0.1234 / R² 0.5253 against 0.1233 / 0.5254 with 8, and ten fold
    models ran 209 epochs against 229 (the statistics had made the default run a tenth longer); the
    classifier lost accuracy (0.6353 against 0.6358), and 1,500-row files (fold models of about 1,150 rows)
    lost MAE (0.1401 against 0.1398), so both keep 8."""
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
