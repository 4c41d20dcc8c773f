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
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    error = y_pred - y_true
    total = np.sum((y_true - y_true.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "r2": float(1.0 - np.sum(error ** 2) / total) if total > 0 else 0.0,
    }


def confusion_matrix(true_classes, predicted_classes, n_classes=len(CLASS_NAMES)):
    """Return the confusion matrix as nested lists: rows are true classes, columns predictions."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_classes), np.asarray(predicted_classes)), 1)
    return matrix.tolist()


def classification_metrics(true_classes, predicted_classes):
    """Return accuracy, macro-F1 and the confusion matrix."""
    matrix = np.asarray(confusion_matrix(true_classes, predicted_classes), dtype=np.float64)
    true_positive = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(predicted + actual > 0, 2 * true_positive / (predicted + actual), 0.0)
    # Macro-F1 over the classes present in the truth or the predictions, as scikit-learn does.
    present = (predicted + actual) > 0
    return {
        "accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": matrix.astype(np.int64).tolist(),
    }


def evaluate_regression(y_train, y_test, predicted):
    """Return the test figures of a regression model and of the mean-of-train predictor."""
    model = regression_metrics(y_test, predicted)
    baseline = regression_metrics(y_test, np.full(len(y_test), float(np.mean(y_train))))
    metrics = {f"test_{name}": value for name, value in model.items()}
    metrics.update({f"baseline_{name}": value for name, value in baseline.items()})
    return metrics


def evaluate_classification(y_train, y_test, probabilities):
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
    """Return the printed table of a model's test figures beside its baseline."""
    if kind == "regression":
        names, baseline = ("mae", "rmse", "r2"), "mean of train"
    else:
        names, baseline = ("accuracy", "macro_f1"), f"majority class ({metrics['baseline_class']})"
    width = max(len(baseline), len(kind))
    lines = [f"{'test split':<{width}}  " + "  ".join(f"{n.upper():>8}" for n in names)]
    for label, prefix in ((kind, "test"), (baseline, "baseline")):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{metrics[f'{prefix}_{n}']:>8.4f}" for n in names))
    if kind == "classification":
        lines.append("confusion matrix (rows: true, columns: predicted; " + ", ".join(CLASS_NAMES) + "):")
        lines.extend("  " + f"{CLASS_NAMES[i]:>8} " + " ".join(f"{v:>7d}" for v in row)
                     for i, row in enumerate(metrics["test_confusion_matrix"]))
    return "\n".join(lines)
