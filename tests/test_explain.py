"""Shapley explanations: Captum's, additive, the same on every request, zero for groups equal to the
background, and near the exact values (all 2**16 coalitions of the 16 groups enumerated through the plain model)."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from valence import config
from valence.model.bundle import load_bundle_from_dir
from valence.model import explain
from valence.model.explain import GROUPS, Explainer, antithetic_permutations, fallback_song, typical_song
from valence.training.modules import build_model, model_config_for, predict_arrays
from valence.model.network import Network
from valence.data.synthetic import generate_dataset


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
    served = predict_arrays(bundle.model, bundle.encoder.transform(songs))
    assert explanation.contributions.shape == (80, len(GROUPS))
    np.testing.assert_allclose(explanation.prediction, served, atol=1e-5)
    total = explanation.contributions.sum(axis=1) + explanation.base_value
    assert np.abs(total - explanation.prediction).max() < 1e-5  # the API promises 0.001
    # Not a trivial explanation: most songs are moved by several groups.
    assert (np.abs(explanation.contributions) > 0.005).sum(axis=1).mean() > 3


def test_the_base_value_is_the_prediction_for_the_background(explainer, bundle):
    background = pd.DataFrame([explainer.background])
    served = predict_arrays(bundle.model, bundle.encoder.transform(background))[0]
    assert explainer.base_value == pytest.approx(served, abs=1e-6)
    explanation = explainer.explain(background)
    assert explanation.prediction[0] == pytest.approx(served, abs=1e-6)
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


def test_the_same_song_gets_the_same_explanation_alone_or_in_a_batch(explainer, demo_csv):
    many = pd.read_csv(demo_csv).head(explain.CHUNK_SONGS + 5)  # more than one Captum call
    together = explainer.explain(many)
    alone = explainer.explain(many.iloc[[explain.CHUNK_SONGS + 2]])
    np.testing.assert_allclose(alone.contributions[0], together.contributions[explain.CHUNK_SONGS + 2], atol=1e-6)


def test_every_request_gets_the_same_answer_and_the_global_generator_is_left_alone(explainer, songs):
    state = torch.random.get_rng_state()
    first = explainer.explain(songs.head(5))
    assert torch.equal(torch.random.get_rng_state(), state)  # Captum's own draws would move it
    try:
        torch.manual_seed(12345)  # whatever the global generator holds, the permutations are the explainer's
        again = explainer.explain(songs.head(5))
    finally:
        torch.random.set_rng_state(state)
    np.testing.assert_array_equal(first.contributions, again.contributions)
    np.testing.assert_array_equal(first.prediction, again.prediction)


def test_the_songs_of_a_request_are_one_captum_call(explainer, demo_csv, monkeypatch):
    from captum.attr import ShapleyValueSampling

    calls, attribute = [], ShapleyValueSampling.attribute

    def counted(self, inputs, **kwargs):
        calls.append((len(inputs), kwargs))
        return attribute(self, inputs, **kwargs)

    monkeypatch.setattr(ShapleyValueSampling, "attribute", counted)
    explainer.explain(pd.read_csv(demo_csv).head(explain.CHUNK_SONGS))
    assert [(songs, kwargs["n_samples"], kwargs["perturbations_per_eval"]) for songs, kwargs in calls] == [
        (explain.CHUNK_SONGS, explain.N_PERMUTATIONS, len(GROUPS))]


def test_the_switch_game_gives_captums_numbers_for_the_plain_model(explainer, bundle, songs):
    """Captum on the whole model with a feature mask per group, the same permutations: the first-layer
    shortcut of the explainer's forward function changes nothing but rounding."""
    from captum.attr import ShapleyValueSampling

    arrays = bundle.encoder.transform(songs.head(3))
    numeric, categorical = torch.as_tensor(arrays["numeric"]), torch.as_tensor(arrays["categorical"])
    sampler = ShapleyValueSampling(lambda n, c: bundle.model(n, c).clamp(0.0, 1.0))
    permutations = explainer.permutations.tolist()
    sampler.permutation_generator = lambda n_features, n_samples: iter(permutations)
    with torch.no_grad():
        by_column = sampler.attribute(
            (numeric, categorical), baselines=(explainer.base_numeric, explainer.base_categorical),
            feature_mask=(explainer.numeric_groups[None], explainer.categorical_groups[None]),
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


def test_close_to_exact_shapley_values(explainer, bundle, songs):
    """The served estimate on the demo model (3 networks of 128 x 128)."""
    arrays = bundle.encoder.transform(songs.head(1))
    ours = explainer.explain_arrays(arrays["numeric"], arrays["categorical"]).contributions[0]
    exact = exact_shapley(bundle.model, torch.as_tensor(arrays["numeric"]), torch.as_tensor(arrays["categorical"]),
                          explainer.base_numeric, explainer.base_categorical,
                          explainer.numeric_groups, explainer.categorical_groups)
    assert np.abs(exact).max() > 0.02  # the song is explained by something, so the bound means something
    # The explainer's own exhaustive pass (first layer by deltas) is the plain model's, enumerated.
    np.testing.assert_allclose(explainer.exact(arrays["numeric"], arrays["categorical"]), exact, atol=1e-5)
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


def exact_for(explainer, arrays, i):
    """Song i's exact Shapley values under an explainer's model and background."""
    return exact_shapley(explainer.model, torch.as_tensor(arrays["numeric"][i:i + 1]),
                         torch.as_tensor(arrays["categorical"][i:i + 1]), explainer.base_numeric,
                         explainer.base_categorical, explainer.numeric_groups, explainer.categorical_groups)


def test_on_a_tiny_model_the_estimate_is_near_exact_and_nearer_with_more_permutations(bundle, songs):
    tiny = tiny_bundle(bundle, hidden=[16])
    arrays = bundle.encoder.transform(songs.head(3))
    exact = np.stack([exact_for(Explainer(tiny), arrays, i) for i in range(3)])
    assert np.abs(exact).max() > 0.03  # the tiny model is moved by its inputs: the bounds below mean something
    for n_permutations, largest, mean in ((explain.N_PERMUTATIONS, 0.02, 0.003), (256, 0.003, 0.0006)):
        explainer = Explainer(tiny, n_permutations=n_permutations)
        estimate = explainer.explain_arrays(arrays["numeric"], arrays["categorical"])
        total = estimate.contributions.sum(axis=1) + estimate.base_value
        assert np.abs(total - estimate.prediction).max() < 1e-5
        error = np.abs(estimate.contributions - exact)
        # Measured here: 16 permutations err by 0.0039 at most, 0.00087 on average; 256 by 0.00075 and 0.00017.
        assert error.max() < largest and error.mean() < mean, (n_permutations, error.max(), error.mean())


def test_on_a_network_without_hidden_layers_every_permutation_gives_the_exact_values(bundle, songs):
    # A linear model inside (0, 1) is an additive game: each group's step is the same in any order.
    linear = Explainer(tiny_bundle(bundle, hidden=[], scale=0.01))
    arrays = bundle.encoder.transform(songs.head(3))
    estimate = linear.explain_arrays(arrays["numeric"], arrays["categorical"]).contributions
    exact = np.stack([exact_for(linear, arrays, i) for i in range(3)])
    assert np.abs(exact).max() > 0.01
    np.testing.assert_allclose(estimate, exact, atol=1e-6)


def test_permutations_come_in_reversed_pairs_and_do_not_change_between_runs():
    first = antithetic_permutations(15, 6, seed=0)
    assert first.shape == (6, 15)
    for permutation in first:
        assert sorted(permutation.tolist()) == list(range(15))
    assert torch.equal(first[1], first[0].flip(0)) and torch.equal(first[3], first[2].flip(0))
    assert not torch.equal(first[0], first[2])
    assert torch.equal(first, antithetic_permutations(15, 6, seed=0))


def test_typical_song_takes_medians_and_most_frequent_categories():
    frame = generate_dataset(9, seed=1)
    frame["key"] = ["D", "D", "A", "A", "C", "E", "F", "G", "B"]  # a tie: the first by name wins
    frame["mode"] = ["Minor"] * 5 + ["Major"] * 4
    song = typical_song(frame)
    assert song["tempo"] == float(np.median(frame["tempo"]))
    assert song["popularity"] == float(np.median(frame["popularity"]))
    assert (song["key"], song["mode"], song["artist_name"]) == ("A", "Minor", "")
    assert set(song) == {*config.FEATURE_COLUMNS, "artist_name"}


def test_an_old_bundle_without_a_background_explains_against_its_encoder_medians(bundle, demo_csv):
    old = dataclasses.replace(bundle, meta={k: v for k, v in bundle.meta.items() if k != "background"})
    explainer = Explainer(old)
    song = fallback_song(bundle.encoder)
    assert explainer.background == song and not explainer.background_is_stored
    training = pd.read_csv(demo_csv)
    for column in ("tempo", "energy"):
        # The encoder keeps 128 quantiles of the training split: the median lies between two of them.
        low, high = np.quantile(training[column], [0.45, 0.55])
        assert low <= song[column] <= high, column
    assert (song["key"], song["mode"], song["time_signature"], song["artist_name"]) == ("C", "Major", "4/4", "")
    assert song["genre"] == sorted(bundle.encoder.vocab_["genre"])[0]


def test_a_classification_bundle_cannot_be_explained(trained):
    with pytest.raises(config.ValenceError, match="explanations need a regression model"):
        Explainer(load_bundle_from_dir(trained[0], "classification"))


def test_a_training_run_stores_the_typical_training_song_in_the_regression_bundle(trained, bundle, explainer):
    _model_dir, run = trained
    assert bundle.meta["background"] == typical_song(run.splits.train)
    assert explainer.background_is_stored and explainer.background == bundle.meta["background"]
    assert "background" not in load_bundle_from_dir(trained[0], "classification").meta


def test_a_background_that_cannot_be_encoded_is_refused_with_a_message(bundle):
    broken = dataclasses.replace(bundle, meta={**bundle.meta, "background": {"tempo": "fast"}})
    with pytest.raises(config.ValenceError, match="background song cannot be encoded.*train the model again"):
        Explainer(broken)
