"""Test-split metrics for both model kinds, beside the baselines they must beat."""
import numpy as np

from valence.config import CLASS_EDGES, CLASS_NAMES


def to_classes(valence):
    """Map valence values to class indices: sad < 0.35 <= neutral <= 0.65 < happy."""
    valence = np.asarray(valence, dtype=np.float64)
    # ">" on the upper edge keeps 0.65 itself neutral, as the classes are defined.
    low, high = CLASS_EDGES
    return (valence >= low).astype(np.int64) + (valence > high).astype(np.int64)


def regression_metrics(y_true, y_pred):
    """Return MAE, RMSE and R² of predictions against the truth (as scikit-learn computes them)."""
    # numpy, not sklearn.metrics: its import (1.3 s with scipy) was 4 % of the slice's default run, for
    # formulas of a line each; tests/test_metrics.py holds them to scikit-learn's answers.
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true values but {len(y_pred)} predictions")
    error = y_true - y_pred
    # R² needs two rows; a constant truth gives 1 for a perfect prediction and 0 otherwise, as in scikit-learn.
    residual = float((error ** 2).sum())
    total = float(((y_true - y_true.mean()) ** 2).sum()) if len(y_true) > 1 else 0.0
    if total > 0.0:
        r2 = 1.0 - residual / total
    else:
        r2 = 1.0 if len(y_true) > 1 and residual == 0.0 else 0.0
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())), "r2": r2}


def classification_metrics(true_classes, predicted_classes):
    """Return accuracy, macro-F1 and the confusion matrix (rows: true classes, columns: predictions)."""
    truth = np.asarray(true_classes, dtype=np.int64).ravel()
    predicted = np.asarray(predicted_classes, dtype=np.int64).ravel()
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true classes but {len(predicted)} predictions")
    n = len(CLASS_NAMES)
    confusion = np.bincount(truth * n + predicted, minlength=n * n).reshape(n, n)
    hits = np.diag(confusion).astype(np.float64)
    # Macro-F1 over the classes present in the truth or the predictions; a class never predicted
    # right scores 0 (scikit-learn's zero_division=0).
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # predicted + true rows of each class
    present = denominator > 0
    f1 = np.divide(2 * hits, denominator, out=np.zeros(n), where=present)
    return {
        "accuracy": float(hits.sum() / len(truth)) if len(truth) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": confusion.tolist(),
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
    if kind == "classification" and "test_ece" in metrics:
        lines.append(f"calibration error (ECE, {ECE_BINS} bins of the top probability): {metrics['test_ece']:.4f}")
    if kind == "classification":
        lines.append("confusion matrix (rows: true, columns: predicted; " + ", ".join(CLASS_NAMES) + "):")
        lines.extend("  " + f"{CLASS_NAMES[i]:>8} " + " ".join(f"{v:>7d}" for v in row)
                     for i, row in enumerate(metrics["test_confusion_matrix"]))
    return "\n".join(lines)


ECE_BINS = 15


def calibration_error(probabilities, true_classes, bins=ECE_BINS):
    """Expected calibration error of class probabilities: over equal-width bins of the top probability,
    the row-weighted mean gap between that probability and how often the top class is right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(true_classes, dtype=np.int64).ravel()
    if len(truth) == 0:
        return 0.0
    confidence, picked = probabilities.max(axis=1), probabilities.argmax(axis=1)
    right = (picked == truth).astype(np.float64)
    # Bins (k/bins, (k+1)/bins], the first closed at 0, as the usual definition reads.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=confidence, minlength=bins) - np.bincount(which, weights=right,
                                                                                       minlength=bins))
    return float(gap.sum() / len(truth)) if count.sum() else 0.0


def scaled(probabilities, temperature):
    """Probabilities with their logits (log-probabilities) divided by `temperature`."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(probabilities, true_classes):
    """The temperature that minimises the log loss of the probabilities (golden-section search of its log
    over [1/20, 20]); 1.0 without rows."""
    truth = np.asarray(true_classes, dtype=np.int64).ravel()
    if len(truth) == 0:
        return 1.0

    def loss(log_t):
        p = scaled(probabilities, np.exp(log_t))[np.arange(len(truth)), truth]
        return -np.log(np.clip(p, 1e-12, 1.0)).mean()

    lo, hi = -np.log(20.0), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2.0))
