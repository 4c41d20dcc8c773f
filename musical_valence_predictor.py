"""Train, evaluate and serve models that predict the valence of songs from Spotify audio features.

    python musical_valence_predictor.py --download       # fetch the Kaggle data set into data/
    python musical_valence_predictor.py                  # train the regression model
    python musical_valence_predictor.py --help           # every option
    FLASK_APP=musical_valence_predictor flask run        # serve the saved model
"""
import argparse
import dataclasses
import gc
import sys
from pathlib import Path

# A serving worker imports this module for create_app: nothing imported at the top imports torch
# (1.6 to 1.9 s of a worker's start-up); run() imports the jobs, which do.
from valence.config import (DEFAULT_DATA, DEMO_DATA, FIGURES_DIR, MODEL_KINDS, MODELS_DIR,
                            ValenceError, bundle_path, metrics_path)
from valence.data.download import download_dataset
from valence.fileio import unwritable_file, unwritable_folder
from valence.training.settings import (LARGE_ROWS, MID_ROWS, SHORT_PATIENCE_ROWS, SMALL_ROWS, FoldPlan, RunOptions, TrainConfig,
                              TrainingInterrupted)
from valence.catalog.sql import CATALOG_FILE, is_postgres

TRAIN_DEFAULTS = TrainConfig()


def __getattr__(name):
    """create_app, found here by `flask run` and gunicorn, imported when asked for: the command line
    never serves, and Flask and the API cost it half a second."""
    if name == "create_app":
        from valence.api.app import create_app
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser():
    """Return the command line's parser."""
    parser = argparse.ArgumentParser(
        description="Train, evaluate and save PyTorch models that predict the valence (musical "
                    "positiveness, 0 to 1) of songs from Spotify audio features.",
        epilog="Serve the saved models with: FLASK_APP=musical_valence_predictor flask run")
    parser.add_argument("--download", action="store_true",
                        help=f"download the Kaggle data set with kagglehub to {rel(DEFAULT_DATA)} (or --data PATH), "
                             "then exit; an existing file is kept (default: off)")
    parser.add_argument("--force", action="store_true",
                        help="with --download: replace an existing data file (default: off)")
    parser.add_argument("--model", choices=(*MODEL_KINDS, "both"), default=None,
                        help="which model to train or evaluate, or with --predict which saved models score "
                             "(default: regression; with --predict, every saved model)")
    parser.add_argument("--data", type=Path, default=None, metavar="PATH",
                        help=f"the Kaggle CSV to train on (default: {rel(DEFAULT_DATA)})")
    parser.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                        help=f"where saved models and metrics live (default: {rel(MODELS_DIR)}, "
                             f"or {rel(MODELS_DIR / 'demo')} with --demo)")
    parser.add_argument("--epochs", type=int, metavar="N", default=TRAIN_DEFAULTS.epochs,
                        help=f"maximum training epochs; early stopping may end sooner (default: {TRAIN_DEFAULTS.epochs})")
    parser.add_argument("--batch-size", type=int, metavar="N", default=TRAIN_DEFAULTS.batch_size,
                        help="training batch size; 0 picks 1024, or less on small data so that an epoch has "
                             f"at least 64 steps (default: {TRAIN_DEFAULTS.batch_size})")
    parser.add_argument("--members", type=int, metavar="N", default=TRAIN_DEFAULTS.members,
                        help="networks in each fold model, trained side by side and averaged; 0 means 1 "
                             f"(default: {TRAIN_DEFAULTS.members})")
    parser.add_argument("--lr", type=float, metavar="RATE", default=TRAIN_DEFAULTS.lr,
                        help=f"learning rate (default: {TRAIN_DEFAULTS.lr})")
    parser.add_argument("--patience", type=int, metavar="N", default=TRAIN_DEFAULTS.patience,
                        help="epochs without validation improvement before stopping; 0 picks 6 for the regression's "
                             f"fold models of {SHORT_PATIENCE_ROWS:,} training rows or more and 8 otherwise "
                             f"(default: {TRAIN_DEFAULTS.patience})")
    parser.add_argument("--seed", type=int, metavar="N", default=FoldPlan.seed,
                        help=f"random seed for the folds and training; runs are reproducible (default: {FoldPlan.seed})")
    parser.add_argument("--folds", type=int, metavar="K", default=FoldPlan.folds,
                        help="fold models: each learns from the other folds' tracks and predicts its own fold for "
                             f"the test figures; the saved model averages them. 0 picks 20 from {SMALL_ROWS:,} to "
                             f"{MID_ROWS - 1:,} rows, 3 from {LARGE_ROWS:,} on and 10 otherwise "
                             f"(default: {FoldPlan.folds})")
    parser.add_argument("--val-fraction", type=float, metavar="SHARE", default=FoldPlan.val_fraction,
                        help="share of each fold model's tracks kept for early stopping "
                             f"(default: {FoldPlan.val_fraction})")
    parser.add_argument("--workers", type=int, metavar="N", default=TRAIN_DEFAULTS.workers,
                        help="fold models trained at once, each in its own process with one thread; 0 means one "
                             "per CPU core on small batches and all of them on large ones, 1 trains them one after "
                             f"the other in this process, as a GPU always does (default: {TRAIN_DEFAULTS.workers})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train: auto picks cuda when available (default: auto)")
    parser.add_argument("--skip-training", action="store_true",
                        help="load the saved model and compute its out-of-fold figures on --data instead of "
                             "training (default: off)")
    parser.add_argument("--print-batch", action="store_true",
                        help="print the first encoded training batch and exit without training (default: off)")
    parser.add_argument("--predict", type=Path, metavar="IN.csv",
                        help="score the songs in IN.csv with the saved models, then exit: those of --model when it is "
                             "given, else every saved one; regression adds predicted_valence with its interval "
                             "(valence_low, valence_high: see --level), classification predicted_mood (default: off)")
    parser.add_argument("--level", type=float, default=0.9, metavar="L",
                        help="with --predict: the share of songs whose valence the interval holds, between 0 and 1 "
                             "(conformal, from the training run's out-of-fold errors) (default: 0.9)")
    parser.add_argument("--output", type=Path, metavar="OUT.csv",
                        help="where --predict writes its scores (default: IN.predictions.csv)")
    parser.add_argument("--explain", action="store_true",
                        help="with --predict: add base_value and each feature group's contribution_* to the "
                             "scores, Shapley values that add up to the prediction (about 4 ms a song) (default: off)")
    parser.add_argument("--build-catalog", action="store_true",
                        help="score --data with the saved models into the catalog the API serves, then exit "
                             "(a training run does this too) (default: off)")
    parser.add_argument("--catalog", metavar="TARGET", default=None,
                        help="the catalog to write: a file path or a postgresql:// URL "
                             "(default: <model-dir>/catalog.sqlite)")
    parser.add_argument("--demo", action="store_true",
                        help=f"generate a data set in the Kaggle schema at {rel(DEMO_DATA)} and run on it (default: off)")
    parser.add_argument("--demo-rows", type=int, metavar="N", default=30_000,
                        help="rows of generated data for --demo (default: 30000)")
    parser.add_argument("--plots", action="store_true",
                        help="write PNG figures (correlations, learning curves, results) (default: off)")
    parser.add_argument("--plots-dir", type=Path, default=None, metavar="DIR",
                        help=f"where --plots writes (default: {rel(FIGURES_DIR)})")
    parser.add_argument("--save-on-interrupt", action="store_true",
                        help="on Ctrl-C during training, evaluate and save the best epoch so far "
                             "instead of nothing (default: off)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar: one line per epoch and the results (default: off)")
    return parser


def parse_args(argv=None):
    """Parse the command line, refusing values and combinations that cannot work."""
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    # Options start unset, so that those named on the command line can be told from defaults.
    unset = object()
    args = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(defaults, unset)))
    given = {name for name, value in vars(args).items() if value is not unset}
    for name in defaults.keys() - given:
        setattr(args, name, defaults[name])
    check_ranges(parser, args)
    check_combinations(parser, args, given)
    return args


def rel(path):
    """Return a path relative to the working directory when it is inside it, for help texts."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_ranges(parser, args):
    """Refuse option values that cannot work, with argparse's usual message and exit status 2."""
    for name in ("epochs", "demo_rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.patience < 0:
        parser.error("--patience must be 0 (automatic) or more")
    if args.batch_size < 0:
        parser.error("--batch-size must be 0 (automatic) or more")
    if args.folds == 1 or not 0 <= args.folds <= 50:
        parser.error("--folds must be 0 (automatic) or from 2 to 50")
    if not 0 <= args.seed < 2 ** 32:
        parser.error(f"--seed must be from 0 to {2 ** 32 - 1}")
    if args.members < 0:
        parser.error("--members must be 0 (automatic) or more")
    if args.workers < 0:
        parser.error("--workers must be 0 (one per CPU core) or more")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    if not 0 < args.val_fraction < 0.5:
        parser.error("--val-fraction must be between 0 and 0.5")
    if args.demo and args.data:
        parser.error("--demo writes and uses its own generated data; leave out --data")
    if args.output and not args.predict:
        parser.error("--output needs --predict IN.csv")
    if args.explain and not args.predict:
        parser.error("--explain needs --predict IN.csv")
    if not 0 < args.level < 1:
        parser.error(f"--level must be between 0 and 1 (exclusive), such as 0.9; got {args.level}")
    if args.level != 0.9 and not args.predict:
        parser.error("--level needs --predict IN.csv")


# Options each job ignores: naming one there is refused rather than silently doing nothing.
TRAINING_ONLY = {"epochs", "members", "workers", "lr", "patience", "device", "save_on_interrupt", "plots",
                 "plots_dir"}
DOWNLOAD_USES = {"download", "data", "force"}  # every other option does nothing with --download
IGNORED_BY = {
    "predict": ("scores IN.csv with the saved models", TRAINING_ONLY | {
        "data", "batch_size", "seed", "val_fraction", "folds", "skip_training", "print_batch",
        "demo", "demo_rows", "build_catalog", "catalog"}),
    "print_batch": ("trains nothing", TRAINING_ONLY | {"skip_training", "build_catalog", "catalog"}),
    "skip_training": ("evaluates the saved models on their own split",
                      TRAINING_ONLY | {"batch_size", "seed", "val_fraction", "folds", "build_catalog",
                                       "catalog"}),
    "build_catalog": ("scores --data with the saved models into the catalog",
                      TRAINING_ONLY | {"batch_size", "seed", "val_fraction", "folds"}),
}


def check_combinations(parser, args, given):
    """Refuse options named where they do nothing (`given`: the options on the command line)."""
    if "download" in given:
        useless = sorted(given - DOWNLOAD_USES)
        if useless:
            parser.error(f"{flag(useless[0])} does nothing with --download (--download fetches the data set, "
                         f"then exits); leave it out")
    for job, (does, ignored) in IGNORED_BY.items():
        if job in given:
            # With --demo, --seed also seeds the generated data, which every job but --predict uses.
            useless = sorted(ignored & given - ({"seed"} if args.demo and job != "predict" else set()))
            if useless:
                parser.error(f"{flag(useless[0])} does nothing with {flag(job)} ({flag(job)} {does}); leave it out")
    for option, needs in (("demo_rows", "demo"), ("plots_dir", "plots"), ("force", "download")):
        if option in given and needs not in given:
            parser.error(f"{flag(option)} does nothing without {flag(needs)}")


def flag(name):
    """Return the command-line spelling of an option's attribute name."""
    return "--" + name.replace("_", "-")


def check_outputs(args, options):
    """Stop before any work when a file or folder the run would write cannot be written."""
    if args.predict:
        output = options_output(args)
        writes = [("--output", output, unwritable_file(output))]
    elif args.build_catalog:
        target = args.catalog or str(options.model_dir / CATALOG_FILE)
        writes = [] if is_postgres(target) else [
            ("--catalog", target, unwritable_file(Path(target)))]
    else:
        writes = []
        if args.demo:
            writes.append(("--demo", options.data, unwritable_file(options.data)))
        if not (args.print_batch or args.skip_training):
            writes.append(("--model-dir", options.model_dir, unwritable_folder(options.model_dir)))
            for kind in options.kinds:
                for path in (bundle_path(options.model_dir, kind), metrics_path(options.model_dir, kind)):
                    writes.append(("--model-dir", options.model_dir, unwritable_file(path)))
            if options.plots_dir is not None:
                writes.append(("--plots-dir", options.plots_dir, unwritable_folder(options.plots_dir)))
            if args.catalog and not is_postgres(args.catalog):
                writes.append(("--catalog", args.catalog, unwritable_file(Path(args.catalog))))
    for option, path, problem in writes:
        if problem:
            raise ValenceError(f"{option} {path}: {problem}; nothing was done")


def options_output(args):
    """Return where --predict writes its scores."""
    return args.output or args.predict.with_suffix(".predictions.csv")


def resolve_device(requested):
    """Return the torch device to train on."""
    if requested == "cpu":
        return requested
    import torch
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValenceError("--device cuda was asked for, but PyTorch sees no CUDA device here; use --device cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def build_options(args):
    """Turn parsed arguments into the pipeline's settings."""
    kinds = MODEL_KINDS if args.model == "both" else (args.model or "regression",)
    # Only jobs that run torch models look for a device: the others never import torch.
    runs_torch = not (args.download or args.predict or args.build_catalog or args.print_batch)
    train = dataclasses.replace(TRAIN_DEFAULTS, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                members=args.members, workers=args.workers, patience=args.patience, seed=args.seed,
                                device=resolve_device(args.device) if runs_torch else "cpu")
    default_dir = MODELS_DIR / "demo" if args.demo else MODELS_DIR
    return RunOptions(
        data=args.data or (DEMO_DATA if args.demo else DEFAULT_DATA),
        model_dir=args.model_dir or default_dir,
        kinds=kinds, train=train,
        split=FoldPlan(folds=args.folds, seed=args.seed, val_fraction=args.val_fraction),
        plots_dir=(args.plots_dir or FIGURES_DIR) if args.plots else None,
        quiet=args.quiet, save_on_interrupt=args.save_on_interrupt)


def run(args, options):
    """Dispatch to the job the arguments ask for; return the exit status."""
    if args.download:
        download_dataset(options.data, force=args.force, log=lambda message: print(message, flush=True))
        return 0
    check_outputs(args, options)
    from valence.training import commands
    if args.predict:
        return commands.score(args.predict, options_output(args), options,
                              kinds=options.kinds if args.model else None, explain=args.explain, level=args.level)
    if args.demo:
        commands.make_demo(options.data, args.demo_rows, args.seed)
    if args.build_catalog:
        return commands.build_catalog(options, args.catalog)
    if args.print_batch:
        return commands.print_batch(options)
    if args.skip_training:
        return commands.evaluate_saved_models(options)
    return commands.train(options, args.catalog)


def main(argv=None):
    """Run the tool; return the exit status."""
    args = parse_args(argv)
    try:
        return run(args, build_options(args))
    except ValenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(interrupted_message(interrupt), file=sys.stderr)
        return 130


def command_line(argv=None):
    """The command (`python musical_valence_predictor.py`, the console script): main(), then every object
    left out of the garbage collector's reach (gc.freeze) for the interpreter's exit, whose collections
    would walk them all several times (a training run leaves about 300,000 objects, torch's mostly: about
    a second of each command). Nothing is unwritten by it: every file is written and closed before main
    returns, and exit handlers (temporary folders, worker pools) run all the same."""
    status = main(argv)
    gc.freeze()
    return status


def interrupted_message(interrupt):
    """Return the line printed on Ctrl-C: what was saved, and what was left as it was."""
    if not isinstance(interrupt, TrainingInterrupted):
        return "interrupted: nothing was saved; saved models are as they were"
    kept = f"; saved before the interrupt: {', '.join(map(str, interrupt.saved))}" if interrupt.saved else ""
    return (f"interrupted: stopped the {interrupt.kind} model without saving it; its saved model, if any, "
            f"is as it was (--save-on-interrupt keeps the best epoch so far){kept}")


if __name__ == "__main__":
    sys.exit(command_line())
