"""Shapley explanations by the served numpy network: the served prediction, additive, the same on every
request, zero for groups equal to the background, Captum's numbers for the torch module with the same
permutations, and near the exact values (all 2**16 coalitions of the 16 groups enumerated through it)."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from valence import config
from valence.model.bundle import load_bundle_from_dir
from valence.model import explain
from valence.model.explain import GROUPS, Explainer, antithetic_permutations, prefix_masks, typical_song
from valence.training.modules import build_model, model_config_for, torch_module
from valence.model.network import Network
from valence.data.synthetic import generate_dataset


def torch_predict(model, arrays):
    with torch.no_grad():
        return model(torch.as_tensor(arrays["numeric"]), torch.as_tensor(arrays["categorical"])).clamp(0, 1).numpy()


@pytest.fixture(scope="module")
def bundle(trained):
    return load_bundle_from_dir(trained[0], "regression")


@pytest.fixture(scope="module")
def explainer(bundle):
    return Explainer(bundle)


@pytest.fixture(scope="module")
def songs(demo_csv):
    return pd.read_csv(demo_csv).sample(80, random_state=3).reset_index(drop=True)


def test_contributions_add_up_to_the_served_prediction(explainer, bundle, songs):
    explanation = explainer.explain(songs)
    arrays = bundle.encoder.transform(songs)
    assert explanation.contributions.shape == (80, len(GROUPS))
    np.testing.assert_array_equal(explanation.prediction, bundle.network.predict(arrays))  # /predict's numbers
    np.testing.assert_allclose(explanation.prediction, torch_predict(torch_module(bundle), arrays), atol=1e-5)
    total = explanation.contributions.sum(axis=1) + explanation.base_value
    assert np.abs(total - explanation.prediction).max() < 1e-5  # the API promises 0.001
    # Not a trivial explanation: most songs are moved by several groups.
    assert (np.abs(explanation.contributions) > 0.005).sum(axis=1).mean() > 3


def test_the_base_value_is_the_prediction_for_the_background(explainer, bundle):
    background = pd.DataFrame([explainer.background])
    served = float(bundle.network.predict(bundle.encoder.transform(background))[0])
    assert explainer.base_value == served
    explanation = explainer.explain(background)
    assert explanation.prediction[0] == served
    assert np.all(explanation.contributions == 0)


def test_a_group_equal_to_the_background_contributes_exactly_zero(explainer, songs):
    songs = songs.head(20).copy()
    songs["tempo"] = explainer.background["tempo"]
    songs["key"] = explainer.background["key"]
    songs["artist_name"] = "nobody the model has heard of"  # an unknown artist is the background's
    explanation = explainer.explain(songs)
    for group in ("tempo", "key", "artist"):
        assert np.all(explanation.contributions[:, GROUPS.index(group)] == 0), group
    for group in ("danceability", "energy"):
        assert np.count_nonzero(explanation.contributions[:, GROUPS.index(group)]) == 20, group


def test_the_same_song_gets_the_same_explanation_alone_or_in_a_batch(explainer, demo_csv, monkeypatch):
    monkeypatch.setattr(explain, "MAX_ROWS", 1)  # one song a pass: a list takes many passes
    many = pd.read_csv(demo_csv).head(12)
    together = explainer.explain(many)
    monkeypatch.undo()
    alone = explainer.explain(many.iloc[[7]])
    np.testing.assert_allclose(alone.contributions[0], together.contributions[7], atol=1e-6)
    assert alone.prediction[0] == pytest.approx(together.prediction[7], abs=1e-6)


def test_every_request_gets_the_same_answer_and_the_global_generators_are_left_alone(explainer, songs):
    state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    first = explainer.explain(songs.head(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.random.seed(12345)  # whatever the global generator holds, the permutations are the explainer's
    again = explainer.explain(songs.head(5))
    np.random.set_state(numpy_state)
    np.testing.assert_array_equal(first.contributions, again.contributions)
    np.testing.assert_array_equal(first.prediction, again.prediction)


def test_prefix_masks_hold_the_first_k_groups_of_each_permutation():
    permutations = np.array([[2, 0, 1], [1, 2, 0]])
    masks = prefix_masks(permutations)
    assert masks.tolist() == [[[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1]],
                              [[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 1]]]


@pytest.mark.slow  # a fresh interpreter: in the slow run, which CI runs
def test_explaining_never_imports_torch(trained):
    import subprocess
    import sys
    code = ("import sys, pandas as pd\n"
            "from valence.model.bundle import load_bundle_from_dir\n"
            "from valence.model.explain import Explainer\n"
            f"e = Explainer(load_bundle_from_dir({str(trained[0])!r}, 'regression'))\n"
            "e.explain(pd.DataFrame([e.background]))\n"
            "print(sorted(m for m in ('torch', 'captum') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
def test_the_switch_game_gives_captums_numbers_for_the_plain_model(explainer, bundle, songs):
    """Captum on the whole model with a feature mask per group, the same permutations: the first-layer
    shortcut of the explainer's forward function changes nothing but rounding."""
    from captum.attr import ShapleyValueSampling

    arrays = bundle.encoder.transform(songs.head(3))
    numeric, categorical = torch.as_tensor(arrays["numeric"]), torch.as_tensor(arrays["categorical"])
    model = torch_module(bundle)
    sampler = ShapleyValueSampling(lambda n, c: model(n, c).clamp(0.0, 1.0))
    permutations = explainer.permutations.tolist()
    sampler.permutation_generator = lambda n_features, n_samples: iter(permutations)
    with torch.no_grad():
        by_column = sampler.attribute(
            (numeric, categorical),
            baselines=(torch.as_tensor(explainer.base_numeric), torch.as_tensor(explainer.base_categorical)),
            feature_mask=(torch.as_tensor(explainer.numeric_groups[None]),
                          torch.as_tensor(explainer.categorical_groups[None])),
            n_samples=len(permutations), perturbations_per_eval=len(GROUPS))
    # Captum gives each column its group's value: read one column per group.
    columns = [(0, int(np.flatnonzero(explainer.numeric_groups == g)[0])) if g in explainer.numeric_groups
               else (1, int(np.flatnonzero(explainer.categorical_groups == g)[0])) for g in range(len(GROUPS))]
    captum = torch.stack([by_column[part][:, column] for part, column in columns], dim=1).numpy()
    ours = explainer.explain_arrays(arrays["numeric"], arrays["categorical"]).contributions
    np.testing.assert_allclose(ours, captum, atol=2e-6)


def exact_shapley(model, numeric, categorical, base_numeric, base_categorical, numeric_groups, categorical_groups):
    """Shapley values of one song by enumerating all 2**G coalitions through the plain model."""
    n_groups = len(GROUPS)
    codes = torch.arange(2 ** n_groups)
    members = ((codes[:, None] >> torch.arange(n_groups)) & 1).bool()
    base_numeric, base_categorical = torch.as_tensor(base_numeric), torch.as_tensor(base_categorical)
    numeric_groups, categorical_groups = torch.as_tensor(numeric_groups), torch.as_tensor(categorical_groups)
    with torch.no_grad():
        values = model(torch.where(members[:, numeric_groups], numeric, base_numeric),
                       torch.where(members[:, categorical_groups], categorical, base_categorical)).clamp(0, 1)
    values = values.double()
    sizes = members.sum(dim=1)
    weight = torch.tensor([math.factorial(s) * math.factorial(n_groups - s - 1) / math.factorial(n_groups)
                           for s in range(n_groups)], dtype=torch.float64)
    phi = []
    for g in range(n_groups):
        without = codes[~members[:, g]]
        phi.append((weight[sizes[without]] * (values[without | (1 << g)] - values[without])).sum())
    return torch.stack(phi).numpy()


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_close_to_exact_shapley_values(explainer, bundle, songs):
    """The served estimate on the demo model (3 networks of 128 x 128)."""
    arrays = bundle.encoder.transform(songs.head(1))
    ours = explainer.explain_arrays(arrays["numeric"], arrays["categorical"]).contributions[0]
    exact = exact_for(explainer, torch_module(bundle), arrays, 0)
    assert np.abs(exact).max() > 0.02  # the song is explained by something, so the bound means something
    error = np.abs(ours - exact)
    assert error.max() < 0.02 and error.mean() < 0.003, (error.max(), error.mean())


def tiny_bundle(bundle, hidden, scale=0.1):
    """The demo bundle with its network replaced by 2 small random ones (weights from a seeded generator),
    scaled so that their predictions stay inside (0, 1), where the clamp leaves them alone."""
    with torch.random.fork_rng():  # nn.Linear's initial weights come from the global generator
        model = build_model("regression", dataclasses.asdict(
            model_config_for("regression", bundle.encoder, hidden=hidden, n_members=2)))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
        for member in model.members:
            member[-1].bias.fill_(0.5)
    weights = {key: value.numpy() for key, value in model.state_dict().items()}
    model_args = dataclasses.asdict(model.config)
    return dataclasses.replace(bundle, network=Network("regression", model_args, weights), weights=weights,
                               meta={**bundle.meta, "model_args": model_args})


def exact_for(explainer, model, arrays, i):
    """Song i's exact Shapley values under a torch model and an explainer's background."""
    return exact_shapley(model, torch.as_tensor(arrays["numeric"][i:i + 1]),
                         torch.as_tensor(arrays["categorical"][i:i + 1]), explainer.base_numeric,
                         explainer.base_categorical, explainer.numeric_groups, explainer.categorical_groups)


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_on_a_tiny_model_the_estimate_is_near_exact_and_nearer_with_more_permutations(bundle, songs):
    tiny = tiny_bundle(bundle, hidden=[16])
    arrays = bundle.encoder.transform(songs.head(3))
    exact = np.stack([exact_for(Explainer(tiny), torch_module(tiny), arrays, i) for i in range(3)])
    assert np.abs(exact).max() > 0.03  # the tiny model is moved by its inputs: the bounds below mean something
    for n_permutations, largest, mean in ((explain.N_PERMUTATIONS, 0.02, 0.003), (256, 0.003, 0.0006)):
        explainer = Explainer(tiny, n_permutations=n_permutations)
        estimate = explainer.explain_arrays(arrays["numeric"], arrays["categorical"])
        total = estimate.contributions.sum(axis=1) + estimate.base_value
        assert np.abs(total - estimate.prediction).max() < 1e-5
        error = np.abs(estimate.contributions - exact)
        # Measured here: 16 permutations err by 0.0039 at most, 0.00087 on average; 256 by 0.00075 and 0.00017.
        assert error.max() < largest and error.mean() < mean, (n_permutations, error.max(), error.mean())


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_on_a_network_without_hidden_layers_every_permutation_gives_the_exact_values(bundle, songs):
    # A linear model inside (0, 1) is an additive game: each group's step is the same in any order.
    tiny = tiny_bundle(bundle, hidden=[], scale=0.01)
    linear = Explainer(tiny)
    arrays = bundle.encoder.transform(songs.head(3))
    estimate = linear.explain_arrays(arrays["numeric"], arrays["categorical"]).contributions
    exact = np.stack([exact_for(linear, torch_module(tiny), arrays, i) for i in range(3)])
    assert np.abs(exact).max() > 0.01
    np.testing.assert_allclose(estimate, exact, atol=1e-6)


def test_permutations_come_in_reversed_pairs_and_do_not_change_between_runs():
    first = antithetic_permutations(15, 6, seed=0)
    assert first.shape == (6, 15)
    for permutation in first:
        assert sorted(permutation.tolist()) == list(range(15))
    assert np.array_equal(first[1], first[0][::-1]) and np.array_equal(first[3], first[2][::-1])
    assert not np.array_equal(first[0], first[2])
    assert np.array_equal(first, antithetic_permutations(15, 6, seed=0))


def test_typical_song_takes_medians_and_most_frequent_categories():
    frame = generate_dataset(9, seed=1)
    frame["key"] = ["D", "D", "A", "A", "C", "E", "F", "G", "B"]  # a tie: the first by name wins
    frame["mode"] = ["Minor"] * 5 + ["Major"] * 4
    song = typical_song(frame)
    assert song["tempo"] == float(np.median(frame["tempo"]))
    assert song["popularity"] == float(np.median(frame["popularity"]))
    assert (song["key"], song["mode"], song["artist_name"]) == ("A", "Minor", "")
    assert set(song) == {*config.FEATURE_COLUMNS, "artist_name"}


def test_a_bundle_without_a_background_is_refused_with_a_message(bundle):
    old = dataclasses.replace(bundle, meta={k: v for k, v in bundle.meta.items() if k != "background"})
    with pytest.raises(config.ValenceError, match="no background song.*train the model again"):
        Explainer(old)


def test_a_classification_bundle_cannot_be_explained(trained):
    with pytest.raises(config.ValenceError, match="explanations need a regression model"):
        Explainer(load_bundle_from_dir(trained[0], "classification"))


def test_a_training_run_stores_the_typical_training_song_in_the_regression_bundle(trained, bundle, explainer):
    _model_dir, run = trained
    assert bundle.meta["background"] == typical_song(run.splits.train)
    assert explainer.background == bundle.meta["background"]
    assert "background" not in load_bundle_from_dir(trained[0], "classification").meta


def test_a_background_that_cannot_be_encoded_is_refused_with_a_message(bundle):
    broken = dataclasses.replace(bundle, meta={**bundle.meta, "background": {"tempo": "fast"}})
    with pytest.raises(config.ValenceError, match="background song cannot be encoded.*train the model again"):
        Explainer(broken)
