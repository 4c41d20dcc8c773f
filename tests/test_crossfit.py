"""Cross-fitting: folds by track, honest out-of-fold predictions, one served ensemble."""
import dataclasses
import json
import multiprocessing

import numpy as np
import pytest
import torch

from valence.config import TARGET, ValenceError
from valence.training import crossfit
from valence.training.crossfit import (cross_fit, fold_model, merge_states, out_of_fold, out_of_fold_metrics,
                              soft_classes, track_folds)
from valence.model.encoder import FeatureEncoder
from valence.training.metrics import to_classes
from valence.training.settings import FoldPlan, TrainConfig
from valence.training.modules import as_tensors, predict_arrays
from valence.data.synthetic import generate_dataset

QUICK = dataclasses.replace(TrainConfig(), epochs=3, members=1)
PLAN = FoldPlan(folds=3)


@pytest.fixture(scope="module")
def songs():
    return generate_dataset(900, seed=11)


@pytest.fixture(scope="module")
def fitted(songs):
    return cross_fit("regression", songs, QUICK, PLAN)


def test_every_listing_of_a_track_shares_its_fold(songs):
    doubled = songs.iloc[:50].copy()
    doubled["genre"] = "Other"
    both = songs._append(doubled, ignore_index=True)
    fold = track_folds(both, 5, seed=0)
    assert set(fold.tolist()) == {0, 1, 2, 3, 4}
    assert (fold[:50] == fold[len(songs):]).all()
    assert not (track_folds(both, 5, seed=1) == fold).all()  # the seed moves tracks between folds


def test_every_row_gets_a_prediction_from_the_model_that_never_saw_its_track(songs, fitted):
    assert fitted.predictions.shape == (len(songs),)
    assert ((fitted.predictions > 0) & (fitted.predictions < 1)).all()
    # Change the valence of every fold-0 track: fold model 0 never learned from them, so their predictions
    # stay exactly as they were, while the other folds' models (which learned from them) change theirs.
    changed = songs.copy()
    inside = fitted.fold == 0
    changed.loc[inside, TARGET] = 1.0 - changed.loc[inside, TARGET]
    again = cross_fit("regression", changed, QUICK, PLAN)
    assert np.array_equal(again.predictions[inside], fitted.predictions[inside])
    assert not np.allclose(again.predictions[~inside], fitted.predictions[~inside])


def test_the_served_model_is_the_mean_of_the_fold_models(songs, fitted):
    numeric, categorical = as_tensors(fitted.encoder.transform(songs.iloc[:40]), "cpu")
    state = fitted.model.state_dict()
    folds = [fold_model("regression", fitted.model_args, state, j, 1) for j in range(PLAN.folds)]
    with torch.no_grad():
        mean = torch.stack([m(numeric, categorical) for m in folds]).mean(dim=0)
        assert torch.allclose(fitted.model(numeric, categorical), mean, atol=1e-6)
    assert len(fitted.model.members) == PLAN.folds and len(fitted.histories) == PLAN.folds


def test_out_of_fold_reproduces_the_training_runs_predictions(songs, fitted):
    again, fold = out_of_fold("regression", fitted.model, fitted.model_args, fitted.encoder, songs, PLAN, 1)
    assert np.array_equal(fold, fitted.fold)
    assert np.allclose(again, fitted.predictions, atol=1e-6)


def test_merge_states_renumbers_members():
    states = [{"members.0.w": torch.zeros(1), "members.1.w": torch.ones(1)}, {"members.0.w": torch.full((1,), 2.0),
                                                                              "members.1.w": torch.full((1,), 3.0)}]
    merged = merge_states(states, 2)
    assert [float(merged[f"members.{i}.w"]) for i in range(4)] == [0.0, 1.0, 2.0, 3.0]


def test_metrics_are_out_of_fold_with_an_out_of_fold_baseline(songs, fitted):
    metrics = out_of_fold_metrics("regression", songs, fitted.predictions, fitted.fold, fitted.seen)
    y = songs[TARGET].to_numpy()
    assert metrics["test_mae"] == pytest.approx(np.abs(fitted.predictions - y).mean())
    assert metrics["test_mae"] < metrics["baseline_mae"]
    baseline = np.array([y[fitted.fold != f].mean() for f in fitted.fold])
    assert metrics["baseline_mae"] == pytest.approx(np.abs(baseline - y).mean())
    assert metrics["test_rows_seen_artist"] + metrics["test_rows_unseen_artist"] == len(songs)


def test_classification_cross_fit_gives_probabilities(songs):
    fitted = cross_fit("classification", songs, QUICK, FoldPlan(folds=2))
    assert fitted.predictions.shape == (len(songs), 3)
    assert np.allclose(fitted.predictions.sum(axis=1), 1.0, atol=1e-5)
    served = predict_arrays(fitted.model, fitted.encoder.transform(songs.iloc[:10]))
    assert served.shape == (10, 3)
    metrics = out_of_fold_metrics("classification", songs, fitted.predictions, fitted.fold, fitted.seen)
    assert sum(map(sum, metrics["test_confusion_matrix"])) == len(songs)


def test_soft_classes_are_probabilities_of_the_blurred_valence():
    valence = np.array([0.0, 0.2, 0.34, 0.36, 0.5, 0.64, 0.66, 0.8, 1.0], dtype=np.float32)
    soft = soft_classes(valence, 0.1)
    assert soft.shape == (9, 3) and np.allclose(soft.sum(axis=1), 1.0, atol=1e-6) and (soft >= 0).all()
    assert (soft.argmax(axis=1) == to_classes(valence)).all()  # the likeliest class is the valence's own
    assert soft[0, 0] > 0.9993 and soft[4, 1] == pytest.approx(1 - 2 * 0.0668072, abs=1e-5)  # 1.5 widths each side
    assert 0.5 < soft[3, 1] < 0.6 and 0.4 < soft[3, 0] < 0.5  # just above 0.35: nearly as likely sad
    assert np.array_equal(soft_classes(valence, 1e-6).argmax(axis=1), to_classes(valence))


def test_default_classifiers_learn_from_soft_classes(songs, monkeypatch):
    seen = []
    real = crossfit.fit_model

    def spy(model, kind, train, y_train, val, y_val, config, **kwargs):
        seen.append((np.asarray(y_train), np.asarray(y_val)))
        return real(model, kind, train, y_train, val, y_val, dataclasses.replace(config, epochs=1), **kwargs)
    monkeypatch.setattr(crossfit, "fit_model", spy)
    assert TrainConfig().soft_targets == 0.1  # measured: see docs/quality.md, round 2
    cross_fit("classification", songs, dataclasses.replace(TrainConfig(), workers=1), FoldPlan(folds=2))
    assert len(seen) == 2  # (workers=1: a spy in a worker process would record there)
    for y_train, y_val in seen:
        assert y_train.shape == (len(y_train), 3) and np.allclose(y_train.sum(axis=1), 1.0, atol=1e-5)
        assert 0 < y_train.max(axis=1).min() < 0.9  # some tracks near an edge share their weight
        assert y_val.shape == (len(y_val), 3)


def test_too_few_tracks_for_the_folds_is_a_clear_error(songs):
    with pytest.raises(ValenceError, match="fold .* empty; use fewer folds"):
        cross_fit("regression", songs.iloc[:3], QUICK, FoldPlan(folds=5))


def test_the_served_encoder_is_fitted_while_the_fold_models_train(songs, monkeypatch):
    # The fold models need only the input layout; the served encoder's statistics (every labelled row) are
    # fitted in this process while the workers train, and are the encoder a fit of every row gives.
    alive = []
    original = FeatureEncoder.fit

    def spy(self, frame, y, schema=None):
        alive.append(len(multiprocessing.active_children()))
        return original(self, frame, y, schema)
    monkeypatch.setattr(FeatureEncoder, "fit", spy)
    fitted = cross_fit("regression", songs, dataclasses.replace(QUICK, workers=2), PLAN)
    assert len(alive) == 1 and alive[0] >= 1
    whole = original(FeatureEncoder(), songs, songs[TARGET].to_numpy())
    assert json.dumps(fitted.encoder.to_state(), default=np.ndarray.tolist) == json.dumps(whole.to_state(), default=np.ndarray.tolist)


def test_seen_artists_normalises_each_distinct_name_once(songs, monkeypatch):
    from valence import config
    held_out = crossfit.track_folds(songs, 3) == 0
    expected = crossfit.seen_artists(songs, held_out, songs[~held_out])
    calls = []
    original = config.normalise_name
    spy = lambda text: calls.append(text) or original(text)  # noqa: E731
    monkeypatch.setattr(config, "normalise_name", spy)
    monkeypatch.setattr(crossfit, "normalise_name", spy, raising=False)  # wherever the module reads it from
    assert np.array_equal(crossfit.seen_artists(songs, held_out, songs[~held_out]), expected)
    assert len(calls) == songs[~held_out]["artist_name"].nunique() + songs[held_out]["artist_name"].nunique()
    assert len(calls) < len(songs) / 2
    names = songs["artist_name"].map(original)
    assert np.array_equal(expected, names[held_out].isin(set(names[~held_out])).to_numpy())
