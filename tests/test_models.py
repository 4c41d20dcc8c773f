"""Networks: shapes, rebuilding from plain-type arguments, the piecewise-linear encoding."""
import dataclasses
import json

import pytest
import torch

from valence.training.modules import ClassificationModel, ModelConfig, RegressionModel, build_model

SIZES = [4, 13, 3, 6]


def inputs(n=7, n_numeric=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    categorical = torch.stack([torch.randint(0, s, (n,), generator=generator) for s in SIZES], dim=1)
    return torch.randn(n, n_numeric, generator=generator), categorical


@pytest.mark.parametrize("kind, shape", [("regression", (7,)), ("classification", (7, 3))])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("embedding", ["ple", "none"])
def test_output_shapes(kind, shape, members, embedding):
    model = build_model(kind, {"n_numeric": 5, "category_sizes": SIZES, "n_members": members,
                               "numeric_embedding": embedding})
    assert model(*inputs()).shape == shape


def test_build_model_rebuilds_from_plain_arguments():
    config = ModelConfig(n_numeric=5, category_sizes=SIZES, n_members=2, hidden=[16, 8])
    args = json.loads(json.dumps(dataclasses.asdict(config)))  # what a bundle stores
    model = build_model("regression", args)
    assert isinstance(model, RegressionModel) and model.config == config
    assert len(model.members) == 2
    assert isinstance(build_model("classification", {"n_numeric": 5, "category_sizes": SIZES}), ClassificationModel)


def test_input_width_comes_from_the_config():
    model = build_model("regression", {"n_numeric": 9, "category_sizes": [2, 50]})
    first = model.members[0][0]
    # 9 raw numerics + 9 x 8 piecewise-linear levels + a one-hot block per categorical.
    assert first.in_features == 9 + 9 * 8 + 2 + 50
    assert model.inputs.out_dim == first.in_features


def test_one_hot_blocks_mark_each_category():
    model = build_model("regression", {"n_numeric": 2, "category_sizes": [3, 4], "numeric_embedding": "none"})
    numeric = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    categorical = torch.tensor([[2, 0], [0, 3]])
    dense = model.inputs(numeric, categorical)
    assert torch.equal(dense[:, :2], numeric)
    assert torch.equal(dense[:, 2:], torch.tensor([[0.0, 0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 1]]))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("clustering", {"n_numeric": 5, "category_sizes": SIZES})
    with pytest.raises(ValueError, match="numeric_embedding"):
        build_model("regression", {"n_numeric": 5, "category_sizes": SIZES, "numeric_embedding": "fourier"})


def test_piecewise_linear_levels_fill_bins_in_order():
    model = build_model("regression", {"n_numeric": 1, "category_sizes": [], "n_bins": 4})
    ple = model.inputs.numeric
    x = torch.tensor([[-5.0], [0.0], [5.0]])
    levels = ple(x)
    assert levels.shape == (3, 4)
    assert torch.equal(levels[0], torch.zeros(4)) and torch.equal(levels[2], torch.ones(4))
    # The median fills exactly the lower half of the equal-probability bins.
    assert torch.allclose(levels[1], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_ensemble_is_the_mean_of_its_members():
    model = build_model("classification", {"n_numeric": 5, "category_sizes": SIZES, "n_members": 3}).eval()
    x = inputs()
    dense = model.inputs(*x)
    assert torch.allclose(model(*x), torch.stack([m(dense) for m in model.members]).mean(dim=0), atol=1e-6)
    assert len(model.member_outputs(dense)) == 3
