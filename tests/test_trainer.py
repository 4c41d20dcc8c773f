"""Training loop and the default recipe, on generated songs with a known signal."""
import dataclasses

import numpy as np
import pytest
import torch

from songs import make_songs, split
from valence.training import settings
from valence.training.crossfit import soft_classes
from valence.model.encoder import FeatureEncoder
from valence.training.metrics import to_classes
from valence.training.modules import build_model, model_config_for, predict_arrays
from valence.training.trainer import batch_size_for, fit_model, learning_rate_for
from valence.training.settings import TrainConfig, patience_for


@pytest.fixture(scope="module")
def data():
    """Encoded train/val/test arrays and their valence, the encoder fitted on the training rows."""
    train, val, test = split(make_songs(2000, seed=3))
    encoder = FeatureEncoder()
    arrays = (encoder.fit_transform(train, train["valence"].to_numpy()), encoder.transform(val), encoder.transform(test))
    return encoder, arrays, tuple(f["valence"].to_numpy() for f in (train, val, test))


def targets(kind, y):
    return y if kind == "regression" else to_classes(y)


def fresh(kind, encoder, seed=0):
    torch.manual_seed(seed)
    return build_model(kind, dataclasses.asdict(model_config_for(kind, encoder)))


def training_loss(model, arrays, y):
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(arrays["numeric"]), torch.from_numpy(arrays["categorical"]))
    return float((out - torch.from_numpy(y).float()).abs().mean())


def test_one_epoch_lowers_the_loss(data):
    encoder, (train, val, _), (y_train, y_val, _) = data
    model = fresh("regression", encoder)
    before = training_loss(model, train, y_train)
    history = fit_model(model, "regression", train, y_train, val, y_val, TrainConfig(epochs=1))
    assert len(history.train_loss) == 1 and history.best_epoch == 1
    assert training_loss(model, train, y_train) < 0.7 * before


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_early_stopping_restores_the_best_epoch(data, kind):
    encoder, (train, val, _), (y_train, y_val, _) = data
    model = fresh(kind, encoder)
    # A large learning rate without decay makes validation scores wander, so the last epoch is rarely the best.
    config = TrainConfig(epochs=12, patience=4, lr=0.05, plateau_patience=0)
    seen = []
    history = fit_model(model, kind, train, targets(kind, y_train), val, targets(kind, y_val), config,
                        on_epoch=lambda epoch, record: seen.append(epoch))
    assert seen == list(range(1, len(history.val_metric) + 1))
    # The default early stopping watches the validation loss (for L1 regression, the MAE).
    assert history.best_epoch == np.argmin(history.val_loss) + 1
    ran = len(history.val_metric)
    assert ran - history.best_epoch <= config.patience  # never more than `patience` epochs past the best
    if ran < config.epochs:  # it stopped early: exactly `patience` epochs without a better one
        assert ran - history.best_epoch == config.patience
    predicted = predict_arrays(model, val)
    if kind == "regression":
        restored = float(np.abs(predicted - y_val).mean())
    else:
        restored = float((predicted.argmax(axis=1) == to_classes(y_val)).mean())
    assert restored == pytest.approx(history.val_metric[history.best_epoch - 1], abs=1e-5)


def test_a_classifier_learns_from_soft_classes_and_is_scored_on_the_likeliest(data):
    encoder, (train, val, test), (y_train, y_val, y_test) = data
    model = fresh("classification", encoder)
    history = fit_model(model, "classification", train, soft_classes(y_train, 0.1), val, soft_classes(y_val, 0.1),
                        TrainConfig(epochs=3))
    predicted = predict_arrays(model, val).argmax(axis=1)
    likeliest = soft_classes(y_val, 0.1).argmax(axis=1)
    assert history.val_metric[history.best_epoch - 1] == pytest.approx(float((predicted == likeliest).mean()), abs=1e-5)
    majority = (to_classes(y_test) == np.bincount(to_classes(y_train)).argmax()).mean()
    assert (predict_arrays(model, test).argmax(axis=1) == to_classes(y_test)).mean() > majority + 0.1


def test_the_automatic_batch_gives_an_epoch_64_steps_between_64_and_1024_rows():
    auto = TrainConfig()
    # 1,500-row files (about 1,000 training rows a fold model), the real slice's fold models, the full file's.
    assert [batch_size_for(auto, n) for n in (1_000, 8_191, 8_192, 14_300, 65_535, 65_536, 140_000)] == \
        [64, 64, 128, 128, 512, 1024, 1024]
    assert learning_rate_for(auto, 128) == pytest.approx(auto.lr * 0.125 ** 0.25)
    assert batch_size_for(TrainConfig(batch_size=300), 14_300) == 300


def test_the_automatic_patience_is_shorter_for_regressions_on_more_rows():
    auto = TrainConfig()
    assert auto.patience == 0
    assert [patience_for(auto, "regression", n) for n in (1_150, 4_095, 4_096, 16_000, 140_000)] == [8, 8, 6, 6, 6]
    assert [patience_for(auto, "classification", n) for n in (1_150, 16_000, 140_000)] == [8, 8, 8]
    assert patience_for(TrainConfig(patience=3), "regression", 16_000) == 3


@pytest.mark.parametrize(("kind", "patience"),
                         [("regression", 6), pytest.param("classification", 8, marks=pytest.mark.slow)])
def test_training_stops_after_the_automatic_patience(data, monkeypatch, kind, patience):
    encoder, (train, val, _), (y_train, y_val, _) = data
    monkeypatch.setattr(settings, "SHORT_PATIENCE_ROWS", 1)  # every training set counts as large
    # A large learning rate without decay makes validation scores wander, so training stops early.
    config = TrainConfig(epochs=200, lr=0.05, plateau_patience=0)
    history = fit_model(fresh(kind, encoder), kind, train, targets(kind, y_train), val, targets(kind, y_val), config)
    assert len(history.val_loss) < config.epochs
    assert len(history.val_loss) - history.best_epoch == patience


def test_predictions_have_the_promised_ranges(data):
    encoder, (train, val, test), (y_train, y_val, _) = data
    for kind in ("regression", "classification"):
        model = fresh(kind, encoder)
        fit_model(model, kind, train, targets(kind, y_train), val, targets(kind, y_val), TrainConfig(epochs=1))
        out = predict_arrays(model, test)
        if kind == "regression":
            assert out.shape == (len(y_val) * 2,) and out.min() >= 0 and out.max() <= 1
        else:
            assert out.shape == (len(y_val) * 2, 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_training_is_reproducible(data):
    encoder, (train, val, test), (y_train, y_val, _) = data
    runs = []
    for _ in range(2):
        model = fresh("regression", encoder)
        fit_model(model, "regression", train, y_train, val, y_val, TrainConfig(epochs=2))
        runs.append(predict_arrays(model, test))
    assert np.array_equal(*runs)


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_default_recipe_beats_the_mean_predictor_clearly(data):
    encoder, (train, val, test), (y_train, y_val, y_test) = data
    model = fresh("regression", encoder)
    fit_model(model, "regression", train, y_train, val, y_val, TrainConfig())
    mae = np.abs(predict_arrays(model, test) - y_test).mean()
    baseline = np.abs(y_train.mean() - y_test).mean()
    assert mae < 0.6 * baseline
    classifier = fresh("classification", encoder)
    fit_model(classifier, "classification", train, to_classes(y_train), val, to_classes(y_val),
              TrainConfig())
    accuracy = (predict_arrays(classifier, test).argmax(axis=1) == to_classes(y_test)).mean()
    majority = (to_classes(y_test) == np.bincount(to_classes(y_train)).argmax()).mean()
    assert accuracy > majority + 0.15
