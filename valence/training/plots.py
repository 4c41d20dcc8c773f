"""PNG figures of the data and the trained models (matplotlib's Agg backend, no display).

matplotlib and seaborn are imported when a figure is drawn: together they take about 4 s to import,
which a run without --plots need not pay, and choosing the backend is not work for import time.
"""
from pathlib import Path

import numpy as np

from valence.config import CLASS_NAMES, NUMERIC_FEATURES, TARGET
from valence.fileio import atomic_path


def pyplot():
    """Return pyplot on the Agg backend, chosen here rather than at import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path):
    """Save a figure atomically and close it."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return Path(path)


def plot_correlation(frame, path):
    """Write the correlation heatmap of the numerical features and valence."""
    import seaborn as sns

    plt = pyplot()
    columns = [*NUMERIC_FEATURES, TARGET]
    figure, axes = plt.subplots(figsize=(9, 7.5))
    sns.heatmap(frame[columns].corr(), annot=True, fmt=".2f", cmap="vlag", vmin=-1, vmax=1,
                square=True, cbar_kws={"shrink": 0.8}, annot_kws={"size": 7}, ax=axes)
    axes.set_title(f"Correlation of the numerical features ({len(frame):,} training rows)")
    return save(figure, path)


def plot_learning_curves(kind, history, path):
    """Write training and validation loss per epoch, marking the epoch that was kept."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    epochs = np.arange(1, len(history.train_loss) + 1)
    axes.plot(epochs, history.train_loss, label="training loss")
    axes.plot(epochs, history.val_loss, label="validation loss")
    axes.axvline(history.best_epoch, color="grey", linestyle="--", label=f"best epoch ({history.best_epoch})")
    axes.set(xlabel="epoch", ylabel="loss", title=f"Learning curves: {kind} model")
    axes.legend()
    return save(figure, path)


def plot_predicted_vs_actual(actual, predicted, path):
    """Write a hexbin of predicted against actual valence (the out-of-fold predictions)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 6))
    image = axes.hexbin(actual, predicted, gridsize=40, extent=(0, 1, 0, 1), mincnt=1, cmap="viridis")
    axes.plot([0, 1], [0, 1], color="red", linewidth=1, label="perfect prediction")
    axes.set(xlabel="actual valence", ylabel="predicted valence", xlim=(0, 1), ylim=(0, 1),
             title=f"Regression, out-of-fold ({len(actual):,} rows)")
    axes.legend(loc="upper left")
    figure.colorbar(image, ax=axes, label="songs")
    return save(figure, path)


def plot_confusion_matrix(matrix, path):
    """Write the out-of-fold confusion matrix with counts and row shares."""
    import seaborn as sns

    plt = pyplot()
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{count:,}\n{share:.0%}" for count, share in zip(row, share_row)]
                       for row, share_row in zip(matrix, shares)])
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    sns.heatmap(shares, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, ax=axes)
    axes.set(xlabel="predicted mood", ylabel="true mood", title="Classification, out-of-fold")
    return save(figure, path)


def write_training_figures(run, plots_dir):
    """Write every figure of a pipeline.TrainingRun; return their paths."""
    plots_dir = Path(plots_dir)
    splits = run.splits
    paths = [plot_correlation(splits.train, plots_dir / "numerical_feature_correlation_heatmap.png")]
    for kind, trained in run.models.items():
        paths.append(plot_learning_curves(kind, trained.history, plots_dir / f"{kind}_learning_curves.png"))
        if kind == "regression":
            paths.append(plot_predicted_vs_actual(splits.test[TARGET].to_numpy(), trained.test_predictions,
                                                  plots_dir / "regression_predicted_vs_actual.png"))
        else:
            paths.append(plot_confusion_matrix(trained.metrics_record["test_confusion_matrix"],
                                               plots_dir / "classification_confusion_matrix.png"))
    return paths
