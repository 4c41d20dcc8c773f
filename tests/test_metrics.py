import numpy as np
import pytest

from valence.training.metrics import (classification_metrics, classification_test_metrics, format_metrics,
                             regression_metrics, regression_test_metrics, to_classes)


@pytest.mark.parametrize("valence, expected", [
    (0.0, 0), (0.3499, 0), (0.35, 1), (0.5, 1), (0.65, 1), (0.6501, 2), (1.0, 2),
])
def test_class_edges_put_both_edges_in_neutral(valence, expected):
    assert to_classes([valence])[0] == expected


def test_regression_metrics_by_hand():
    truth, predicted = np.array([0.0, 0.5, 1.0]), np.array([0.1, 0.5, 0.7])
    metrics = regression_metrics(truth, predicted)
    assert metrics["mae"] == pytest.approx(0.4 / 3)
    assert metrics["rmse"] == pytest.approx(np.sqrt(0.1 / 3))
    assert metrics["r2"] == pytest.approx(1 - 0.1 / 0.5)


def test_r2_of_a_single_row_is_zero_not_nan():
    assert regression_metrics([0.4], [0.6])["r2"] == 0.0


def test_classification_metrics_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    metrics = classification_metrics(truth, predicted)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # F1 per class: sad 2*1/(2+2) = 0.5, neutral 2*2/(3+2) = 0.8, happy 2*1/(1+2) = 2/3.
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_macro_f1_averages_only_the_classes_present():
    # No song is happy, and none is predicted happy: its F1 is left out of the mean, not counted as 0.
    truth = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    metrics = classification_metrics(truth, predicted)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_a_class_only_predicted_counts_with_f1_zero():
    truth = np.array([0, 0, 1])
    predicted = np.array([0, 2, 1])
    metrics = classification_metrics(truth, predicted)
    # sad 2*1/(1+2) = 2/3, neutral 1, happy (predicted once, never true) 0.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert metrics["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_mean_baseline_uses_the_training_mean():
    y_train, y_test = np.array([0.2, 0.4]), np.array([0.3, 0.5, 0.9])
    metrics = regression_test_metrics(y_train, y_test, y_test)
    assert metrics["test_mae"] == 0.0 and metrics["test_r2"] == 1.0
    assert metrics["baseline_mae"] == pytest.approx(np.mean(np.abs(y_test - 0.3)))


def test_majority_baseline_comes_from_training_classes():
    y_train = np.array([0.1, 0.2, 0.9])          # mostly sad
    y_test = np.array([0.9, 0.9, 0.1, 0.5])
    probabilities = np.eye(3)[[2, 2, 0, 0]]      # 3 of 4 right
    metrics = classification_test_metrics(y_train, y_test, probabilities)
    assert metrics["baseline_class"] == "sad"
    assert metrics["baseline_accuracy"] == 0.25
    assert metrics["test_accuracy"] == 0.75
    printed = format_metrics("classification", metrics).splitlines()
    assert printed[0].split() == ["out-of-fold", "ACCURACY", "MACRO_F1"]  # crossfit's figures: no test split
    assert printed[2].startswith("majority class (sad)")


@pytest.mark.parametrize("seed", range(6))
def test_the_figures_are_scikit_learns(seed):
    from sklearn import metrics as sk

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    y, p = rng.random(n), np.clip(rng.random(n) + rng.normal(0, 0.2, n), 0, 1)
    if seed == 5:
        y = np.full(n, 0.4)  # a constant truth: scikit-learn's R² is 0 unless the prediction is perfect
    got = regression_metrics(y, p)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, p), abs=1e-12)
    assert got["rmse"] == pytest.approx(sk.root_mean_squared_error(y, p), abs=1e-12)
    assert got["r2"] == pytest.approx(sk.r2_score(y, p), abs=1e-12)
    assert regression_metrics(y, y)["r2"] == pytest.approx(sk.r2_score(y, y))
    truth, predicted = to_classes(y), to_classes(p)
    if seed == 4:
        predicted = np.zeros(n, dtype=np.int64)  # one class predicted: the others score F1 0
    got = classification_metrics(truth, predicted)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(sk.f1_score(truth, predicted, average="macro", zero_division=0),
                                            abs=1e-12)
    assert got["confusion_matrix"] == sk.confusion_matrix(truth, predicted, labels=[0, 1, 2]).tolist()


def test_a_column_of_predictions_counts_as_a_vector_and_unequal_lengths_are_refused():
    y, p = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.5, 0.6])
    assert regression_metrics(y, p[:, None]) == regression_metrics(y, p)  # (n, 1) does not broadcast to (n, n)
    with pytest.raises(ValueError, match="3 true values but 2 predictions"):
        regression_metrics(y, p[:2])
    with pytest.raises(ValueError, match="3 true classes but 2 predictions"):
        classification_metrics(to_classes(y), to_classes(p[:2]))


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
def test_calibration_error_and_the_temperature_that_removes_it():
    from valence.training.metrics import calibration_error, fit_temperature, scaled

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20000, 3)) * 2
    true_p = scaled(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 1.0)
    truth = np.array([rng.choice(3, p=p) for p in true_p])
    assert calibration_error(true_p, truth) < 0.015  # drawn from its own probabilities: calibrated
    overconfident = scaled(true_p, 0.5)  # logits doubled
    assert calibration_error(overconfident, truth) > 0.05
    temperature = fit_temperature(overconfident, truth)
    assert temperature == pytest.approx(2.0, rel=0.05)
    assert calibration_error(scaled(overconfident, temperature), truth) < 0.015
    # Hand-made: one bin at 0.8 confidence, right half the time: a gap of 0.3.
    assert calibration_error(np.array([[0.8, 0.1, 0.1]] * 4), np.array([0, 0, 1, 2])) == pytest.approx(0.3)
