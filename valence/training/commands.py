"""What each command-line job prints: progress, tables, summaries (the entry file dispatches here).

The jobs that train or evaluate import the training pipeline (and so torch, 1.6 s) when they run:
--predict and --build-catalog predict with numpy and never import torch."""
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from valence.catalog.build import build_catalog as score_into_catalog
from valence.config import MODEL_KINDS, TARGET, ValenceError, counted
from valence.model.encoder import FeatureEncoder
from valence.model.explain import Explainer
from valence.training.plots import write_training_figures
from valence.model.predictor import Predictor
from valence.model.predict_file import score_csv
from valence.catalog.sql import shown_target
from valence.data.synthetic import generate_dataset, write_csv

BAD_ROWS_SHOWN = 20
# Values a model never saw in training, as --predict's summary counts them (the API warns per song).
UNSEEN = {"genre": ("a genre", "predicted as an unseen genre"),
          "artist_name": ("an artist", "predicted without artist statistics"),
          "key": ("a key", "predicted as an unseen key"), "mode": ("a mode", "predicted as an unseen mode"),
          "time_signature": ("a time signature", "predicted as an unseen time signature")}


def log(message):
    """Print one line of progress at once, even when the output is a pipe."""
    print(message, flush=True)


class EpochReporter:
    """Show training progress: a tqdm bar on a terminal, else one line per epoch."""

    def __init__(self, max_epochs, quiet):
        self.max_epochs = max_epochs
        self.use_bar = not quiet and sys.stderr.isatty()
        self.bar = None

    def __call__(self, kind):
        """Return the per-epoch callback for training one model kind."""
        self.close()
        if self.use_bar:
            # The epochs of all the kind's fold models, which may train side by side: their count has no
            # known total (early stopping), and the latest fold model's epoch and figures follow it.
            self.bar = tqdm(desc=kind, unit="epoch", leave=False)

        def on_epoch(epoch, record):
            text = ", ".join(f"{name} {value:.4f}" for name, value in record.items() if isinstance(value, float))
            model = f"{kind} fold {record['fold']}" if "fold" in record else kind
            if self.bar is not None:
                self.bar.update(1)
                where = f"fold {record['fold']} " if "fold" in record else ""
                self.bar.set_postfix_str(f"{where}epoch {epoch}/{self.max_epochs}: {text}")
            else:
                log(f"{model} epoch {epoch}/{self.max_epochs}: {text}")

        return on_epoch

    def close(self):
        """Remove the finished bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(options, catalog=None):
    """Train, test and save the models, then score the data into the catalog the API serves; figures when asked."""
    from valence.training import pipeline

    reporter = EpochReporter(options.train.epochs, options.quiet)
    try:
        run = pipeline.run_training(options, log=log, on_epoch=reporter)
    finally:
        reporter.close()
    if run.interrupted:
        kind = run.interrupted
        record = run.models[kind].metrics_record
        print(f"interrupted: saved the {kind} model's fold models so far ({record['interrupted_fold']}; the last at "
              f"its best epoch, {record['best_epoch'][-1]}, interrupted during epoch "
              f"{record['interrupted_at_epoch']}); nothing else was trained", file=sys.stderr, flush=True)
        return 130
    if options.plots_dir is not None:
        for path in write_training_figures(run, options.plots_dir):
            log(f"wrote {path}")
    try:
        return build_catalog(options, catalog, loaded=(run.splits.frame, run.splits.report))
    except ValenceError as error:
        print(f"error: the models were saved, but the catalog was not written: {error}\n"
              f"write it with: python musical_valence_predictor.py --build-catalog --model-dir {options.model_dir}"
              + (f" --catalog {shown_target(catalog)}" if catalog else ""), file=sys.stderr, flush=True)
        return 2


def evaluate_saved_models(options):
    """Evaluate the saved models out-of-fold on --data, with the fold plan they were trained with."""
    from valence.training import pipeline

    pipeline.run_evaluation(options, log=log)
    return 0


def make_demo(path, n_rows, seed):
    """Write a generated data set in the Kaggle schema."""
    write_csv(generate_dataset(n_rows, seed=seed), path)
    log(f"wrote {counted(n_rows, 'generated song')} (not real data) to {path}")


def print_batch(options):
    """Print the first training batch of the first fold model as it sees it, without training."""
    from valence.training import pipeline
    from valence.training.crossfit import fold_encoder
    from valence.training.trainer import batch_size_for

    splits = pipeline.load_splits(options.data, options.split, log)
    schema = FeatureEncoder().fit(splits.frame, splits.frame[TARGET].to_numpy())
    train, _, encoder, arrays = fold_encoder(splits.frame, splits.fold, 0, splits.plan, schema)
    size = min(batch_size_for(options.train, len(train)), len(train))
    names = encoder.feature_names()
    log(f"first training batch of fold model 1 of {splits.plan.folds}: {counted(size, 'row')}; "
        f"numeric {arrays['numeric'][:size].shape}, "
        f"categorical {arrays['categorical'][:size].shape}")
    log("numeric columns: " + ", ".join(names["numeric"]))
    log("categorical columns: " + ", ".join(names["categorical"]))
    with np.printoptions(precision=3, suppress=True, linewidth=160, threshold=2000):
        log(f"numeric[:5] =\n{arrays['numeric'][:5]}")
        log(f"categorical[:5] =\n{arrays['categorical'][:5]}")
        log(f"valence[:5] = {train[TARGET].to_numpy()[:5]}")
    return 0


def score(input_path, output_path, options, kinds=None, explain=False, level=0.9):
    """Score a CSV of songs with the saved models of `kinds` (None: every saved one), explained when asked,
    each valence with its interval at `level`."""
    output_path = Path(output_path or Path(input_path).with_suffix(".predictions.csv"))
    if output_path.exists() and output_path.resolve() == Path(input_path).resolve():
        raise ValenceError(f"--output {output_path} is the input file; choose another path so the input is kept")
    if kinds is None:  # explanations are of predicted_valence: they need the regression model
        required, optional = (("regression",) if explain else ()), MODEL_KINDS
    else:
        required, optional = kinds, ()
    if explain and "regression" not in required:
        raise ValenceError("--explain explains predicted_valence, so it needs the regression model: "
                           "use --model regression or --model both")
    predictor = Predictor.from_model_dir(options.model_dir, required=required, optional=optional)
    explainer = Explainer(predictor.regression) if explain else None
    summary = score_csv(input_path, output_path, predictor, explainer=explainer, level=level)
    scored, bad_rows = summary.scored, summary.bad_rows
    extras = [what for what, present in (("moods", predictor.classification is not None),
                                         ("explanations", explain)) if present]
    if predictor.regression is None:
        note = " (moods only: no regression model)"
    else:
        note = f" (with {' and '.join(extras)})" if extras else ""
    log(f"scored {scored:,} songs from {input_path} into {output_path}{note}")
    for column, (what, how) in UNSEEN.items():
        rows = summary.unseen.get(column, 0)
        if rows:
            has = "song has" if rows == 1 else "songs have"
            log(f"warning: {rows:,} {has} {what} the model never saw ({how})")
    if bad_rows:
        log(f"{len(bad_rows):,} {'row' if len(bad_rows) == 1 else 'rows'} could not be scored "
            f"(kept in the output with an empty prediction and the reason):")
        for line, reason in bad_rows[:BAD_ROWS_SHOWN]:
            log(f"  line {line}: {reason}")
        if len(bad_rows) > BAD_ROWS_SHOWN:
            log(f"  ... and {len(bad_rows) - BAD_ROWS_SHOWN:,} more")
    return 0


def build_catalog(options, target=None, loaded=None):
    """Score the data file with the saved models into the catalog the API serves (`loaded`: the file's
    clean frame and LoadReport, when a training run already read them)."""
    report = score_into_catalog(options.data, options.model_dir, target, log=log, loaded=loaded)
    log(report.summary())
    for line, reason in report.bad_lines[:BAD_ROWS_SHOWN]:
        log(f"  skipped line {line}: {reason}")
    return 0
