"""Test-split metrics for both model kinds, beside the baselines they must beat."""
import numpy as np

from .config import CLASS_EDGES, CLASS_NAMES


def to_classes(valence):
    """Map valence values to class indices: sad < 0.35 <= neutral <= 0.65 < happy."""
    valence = np.asarray(valence, dtype=np.float64)
    # ">" on the upper edge keeps 0.65 itself neutral, as the classes are defined.
    low, high = CLASS_EDGES
    return (valence >= low).astype(np.int64) + (valence > high).astype(np.int64)


def regression_metrics(y_true, y_pred):
    """Return MAE, RMSE and R² of predictions against the truth."""
    # Imported here: sklearn.metrics takes about 0.7 s to import, which --help and --predict need not pay.
    from sklearn import metrics

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
        # R² needs two rows (scikit-learn gives NaN for one, which JSON cannot hold).
        "r2": float(metrics.r2_score(y_true, y_pred)) if len(y_true) > 1 else 0.0,
    }


def classification_metrics(true_classes, predicted_classes):
    """Return accuracy, macro-F1 and the confusion matrix (rows: true classes, columns: predictions)."""
    from sklearn import metrics

    labels = list(range(len(CLASS_NAMES)))
    return {
        "accuracy": float(metrics.accuracy_score(true_classes, predicted_classes)),
        # labels=None: the mean over the classes present in the truth or the predictions.
        "macro_f1": float(metrics.f1_score(true_classes, predicted_classes, average="macro", zero_division=0)),
        "confusion_matrix": metrics.confusion_matrix(true_classes, predicted_classes, labels=labels).tolist(),
    }


def regression_test_metrics(y_train, y_test, predicted):
    """Return the test figures of a regression model and of the mean-of-train predictor."""
    model = regression_metrics(y_test, predicted)
    baseline = regression_metrics(y_test, np.full(len(y_test), float(np.mean(y_train))))
    metrics = {f"test_{name}": value for name, value in model.items()}
    metrics.update({f"baseline_{name}": value for name, value in baseline.items()})
    return metrics


def classification_test_metrics(y_train, y_test, probabilities):
    """Return the test figures of a classifier and of the majority-class predictor."""
    train_classes = to_classes(y_train)
    test_classes = to_classes(y_test)
    model = classification_metrics(test_classes, np.argmax(probabilities, axis=1))
    majority = int(np.bincount(train_classes, minlength=len(CLASS_NAMES)).argmax())
    baseline = classification_metrics(test_classes, np.full(len(test_classes), majority))
    metrics = {f"test_{name}": value for name, value in model.items()}
    metrics.update({f"baseline_{name}": value for name, value in baseline.items()})
    metrics["baseline_class"] = CLASS_NAMES[majority]
    return metrics


def format_metrics(kind, metrics):
    """Return the printed table of a model's out-of-fold figures beside its baseline (crossfit.py: each row
    predicted by the fold model that never learned from its track, the baseline from the other folds)."""
    if kind == "regression":
        names, baseline = ("mae", "rmse", "r2"), "mean of other folds"
    else:
        names, baseline = ("accuracy", "macro_f1"), f"majority class ({metrics['baseline_class']})"
    width = max(len(baseline), len(kind))
    lines = [f"{'out-of-fold':<{width}}  " + "  ".join(f"{n.upper():>8}" for n in names)]
    for label, prefix in ((kind, "test"), (baseline, "baseline")):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{metrics[f'{prefix}_{n}']:>8.4f}" for n in names))
    if kind == "classification":
        lines.append("confusion matrix (rows: true, columns: predicted; " + ", ".join(CLASS_NAMES) + "):")
        lines.extend("  " + f"{CLASS_NAMES[i]:>8} " + " ".join(f"{v:>7d}" for v in row)
                     for i, row in enumerate(metrics["test_confusion_matrix"]))
    return "\n".join(lines)
