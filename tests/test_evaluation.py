import numpy as np
import pytest
from sklearn.metrics import f1_score, mean_absolute_error, r2_score

from valence.evaluation import (classification_metrics, evaluate_classification, evaluate_regression,
                                format_metrics, regression_metrics, to_classes)


@pytest.mark.parametrize("valence, expected", [
    (0.0, 0), (0.3499, 0), (0.35, 1), (0.5, 1), (0.65, 1), (0.6501, 2), (1.0, 2),
])
def test_class_edges_put_both_edges_in_neutral(valence, expected):
    assert to_classes([valence])[0] == expected


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    truth, predicted = rng.random(500), rng.random(500)
    metrics = regression_metrics(truth, predicted)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((truth - predicted) ** 2)))


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth, predicted = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    metrics = classification_metrics(truth, predicted)
    assert metrics["accuracy"] == pytest.approx(np.mean(truth == predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert np.sum(metrics["confusion_matrix"]) == 300
    assert metrics["confusion_matrix"][2][1] == np.sum((truth == 2) & (predicted == 1))


def test_mean_baseline_uses_the_training_mean():
    y_train, y_test = np.array([0.2, 0.4]), np.array([0.3, 0.5, 0.9])
    metrics = evaluate_regression(y_train, y_test, y_test)
    assert metrics["test_mae"] == 0.0 and metrics["test_r2"] == 1.0
    assert metrics["baseline_mae"] == pytest.approx(np.mean(np.abs(y_test - 0.3)))


def test_majority_baseline_comes_from_training_classes():
    y_train = np.array([0.1, 0.2, 0.9])          # mostly sad
    y_test = np.array([0.9, 0.9, 0.1, 0.5])
    probabilities = np.eye(3)[[2, 2, 0, 0]]      # 3 of 4 right
    metrics = evaluate_classification(y_train, y_test, probabilities)
    assert metrics["baseline_class"] == "sad"
    assert metrics["baseline_accuracy"] == 0.25
    assert metrics["test_accuracy"] == 0.75
    assert "majority class (sad)" in format_metrics("classification", metrics)
