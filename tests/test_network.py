"""The numpy forward pass that serves the networks: the same answers as the torch modules they train as."""
import dataclasses

import numpy as np
import pytest
import torch

from valence.training.modules import ModelConfig, build_model, predict_arrays
from valence.model.network import Network, state_shapes


def random_model(kind, seed, **settings):
    """A torch network of `kind` with seeded random weights (larger than at initialisation, so the
    ReLUs and the clamp are all exercised), and its plain-typed model_args."""
    cfg = ModelConfig(**{"n_numeric": 6, "category_sizes": [4, 13, 2], **settings})
    model_args = dataclasses.asdict(cfg)
    model_args.pop("n_outputs")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(kind, model_args)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(2.0)
            if kind == "regression":  # centred on 0.5, where the clamp cuts only the tails
                for member in model.members:
                    member[-1].bias.fill_(0.5)
    return model.eval(), model_args


def random_rows(cfg, n, seed):
    rng = np.random.default_rng(seed)
    numeric = rng.normal(scale=1.5, size=(n, cfg.n_numeric)).astype(np.float32)
    categorical = np.zeros((n, len(cfg.category_sizes)), dtype=np.int64)
    for j, size in enumerate(cfg.category_sizes):
        categorical[:, j] = rng.integers(0, size, n)
    return {"numeric": numeric, "categorical": categorical}


def weights_of(model):
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["regression", "classification"])
@pytest.mark.parametrize("settings", [
    {},
    {"n_members": 5},
    {"n_members": 3, "hidden": [16], "numeric_embedding": "none"},
    {"hidden": [], "n_bins": 4},
    {"hidden": [8, 8, 8], "dropout": 0.1, "n_members": 2},
    {"category_sizes": [], "n_members": 2},
    {"n_numeric": 0, "n_members": 2},
], ids=["default", "5 members", "no bins", "linear", "dropout", "no categoricals", "no numerics"])
def test_numpy_answers_as_the_torch_model(kind, settings):
    model, model_args = random_model(kind, seed=len(str(settings)), **settings)
    network = Network(kind, model_args, weights_of(model))
    rows = random_rows(model.config, 300, seed=1)
    expected = predict_arrays(model, rows, batch_size=128)
    got = network.predict(rows, batch_size=64)  # other batch edges: rows never mix across a batch
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)
    if kind == "regression":  # the weights are large: some answers are clamped, most are not
        assert 0 < np.mean((expected == 0) | (expected == 1)) < 0.9
    else:
        assert expected.std(axis=0).max() > 1e-3  # the inputs move the answers
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_no_rows_give_an_empty_answer():
    model, model_args = random_model("classification", seed=0)
    rows = random_rows(model.config, 0, seed=0)
    assert Network("classification", model_args, weights_of(model)).predict(rows).shape == (0, 3)


@pytest.mark.parametrize("damage, message", [
    (lambda w: w.pop("members.0.2.weight"), r"missing weights \['members.0.2.weight'\]"),
    (lambda w: w.update({"members.0.9.bias": np.zeros(3, np.float32)}), r"unexpected weights \['members.0.9.bias'\]"),
    (lambda w: w.update({"members.0.0.weight": w["members.0.0.weight"][:, 1:]}),
     r"size mismatch for members.0.0.weight: saved \(128, \d+\), expected \(128, \d+\)"),
])
def test_weights_that_do_not_fit_the_architecture_are_refused(damage, message):
    model, model_args = random_model("regression", seed=0)
    weights = weights_of(model)
    damage(weights)
    with pytest.raises(ValueError, match=message):
        Network("regression", model_args, weights)


def test_the_expected_shapes_are_those_of_the_torch_state_dict():
    for settings in ({}, {"dropout": 0.2, "hidden": [5, 7]}, {"numeric_embedding": "none", "n_members": 3}):
        model, model_args = random_model("classification", seed=0, **settings)
        assert state_shapes(model.config) == {key: tuple(v.shape) for key, v in model.state_dict().items()}


@pytest.mark.parametrize("kind, args, message", [
    ("svm", {}, "unknown model kind 'svm'"),
    ("regression", {"n_outputs": 3}, "a regression model needs n_outputs=1"),
    ("regression", {"numeric_embedding": "fourier"}, "unknown numeric_embedding 'fourier'"),
    ("regression", {"n_numeric": 0, "category_sizes": []}, "at least one input"),
])
def test_architectures_this_version_cannot_build_are_refused(kind, args, message):
    with pytest.raises(ValueError, match=message):
        Network(kind, {"n_numeric": 2, "category_sizes": [3], **args}, {})


def test_networks_sharing_the_workspace_answer_as_if_alone():
    """The forward pass reuses a thread's buffers across calls and networks: a call never sees another's rows."""
    first, first_args = random_model("regression", seed=1)
    second, second_args = random_model("classification", seed=2, hidden=[32, 16, 8], n_members=3)
    a, b = Network("regression", first_args, weights_of(first)), Network("classification", second_args, weights_of(second))
    small, large = random_rows(first.config, 7, seed=3), random_rows(second.config, 500, seed=4)
    alone = a.predict(small).copy()
    other = b.predict(large)
    assert np.array_equal(a.predict(small), alone)
    np.testing.assert_allclose(other, predict_arrays(second, large), atol=2e-6, rtol=0)
    assert np.array_equal(b.predict(large), other)
