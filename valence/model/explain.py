"""Why a song gets its valence: Shapley values of the regression model over feature groups.

The game: a song's prediction is explained against one reference song, the *background*: the
training split's typical song (each numeric feature at its training median, each categorical at
its most frequent training value, and an artist the model has never seen). A coalition S of the
16 groups (each numeric feature, genre, key, mode, time signature, the version marker read off the
track name, and the artist's history: every artist statistic is one group) takes the song's values
in S and the background's elsewhere. The
base value is the prediction for the background; contributions plus base value = prediction.

How: Captum's ShapleyValueSampling (permutation sampling), one attribute() call per request.
- Captum sees each song as 16 switches, one per group (1: the song's value; the baseline, 0: the
  background's), and a forward function that turns a batch of switch vectors into predictions.
  The model's input encoding is separable by column and its first layer is linear, so the
  first-layer activations of a coalition are the background's plus the sum of its groups' deltas
  (computed once per song): only the layers after the first run per coalition.
- The songs of a request are Captum's batch, and perturbations_per_eval=16 puts a whole permutation
  in one forward call: N_PERMUTATIONS + 1 forward calls per request, however many songs it holds.
- Captum draws permutations from the global torch generator; here it is handed a fixed list
  instead (its permutation_generator, which Captum's own ShapleyValues sets the same way): 16 in
  antithetic pairs (one and its reverse: exact for models whose interactions are at most
  pairwise, a lower error otherwise) from a seeded generator of their own. A song's explanation
  is the same on every request, alone or in a list, and the global RNG is never read or moved.
- Additivity holds by construction: each permutation's steps telescope from the base value to the
  prediction (float rounding leaves about 1e-7); a group where the song equals the background
  contributes exactly 0 (the null-player axiom, set explicitly against rounding).

Why, measured in one run (a /tmp script, p50 of interleaved rounds) with one torch thread on the
2-core dev machine at load average 2.6, a 5-member 128 x 128 model, with the 15 groups there were
before the version group:
- exact Shapley values need all 2**15 = 32,768 coalitions: 435 ms a song even with the
  first-layer shortcut, far over the 30 ms target; SHAP's exact explainer needs them too.
- Captum's own loop costs about 0.5 ms of Python per permutation whatever the forward function
  (7.9 ms for 16 permutations, 15.0 ms for 32, with a trivial one), so the permutation count sets
  the time of one song: 13.4 ms at 16 permutations, 24.2 ms at 32, against 3.6 ms for the former
  batched reimplementation of the same estimator (equal to Captum's numbers within 1e-7 at 32).
  100 songs: 134 ms at 16, 243 ms at 32, 236 ms for the former one (in 64-song passes).
- against exact values (40 generated songs x 15 groups, valence units), 16 antithetic permutations
  err by 0.00030 on average, 0.0010 at p95, 0.0095 at most; 32 by 0.00017, 0.0006, 0.0058;
  Captum's own kind, 16 independent random permutations, by 0.00040, 0.0017, 0.0086. So 16:
  one song leaves room under the 30 ms target for the request around it; 32 would leave little.
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from valence import config

GROUPS = config.EXPLANATION_GROUPS
ARTIST_GROUP = GROUPS[-1]
N_PERMUTATIONS = 16  # 8 antithetic pairs; 32 cut the mean error from 0.0003 to 0.00017 at twice the time (docstring)
SEED = 0
CHUNK_SONGS = 100  # songs per attribute() call: a request's list (at most 100) in one; bounds the activations

# Bundles saved before the background was stored: the encoder knows the medians but no
# category frequencies, so these (the most common values of the Kaggle file) stand in.
FALLBACK_CATEGORIES = {"key": "C", "mode": "Major", "time_signature": "4/4"}


def typical_song(frame):
    """Return the background song of a training split: medians, most frequent categories, no artist."""
    if len(frame) == 0:
        raise config.ValenceError("cannot describe a typical song of an empty training split")
    song = {col: float(frame[col].median()) for col in config.NUMERIC_FEATURES}
    for col in config.CATEGORICAL_FEATURES:
        counts = frame[col].astype(str).value_counts()
        song[col] = str(min(counts.index[counts == counts.max()]))  # ties: the first by name
    song["artist_name"] = ""
    return song


def fallback_song(encoder):
    """Return a background for a bundle saved without one, from the encoder's fitted state."""
    levels = np.linspace(0.0, 1.0, len(encoder.normal_scores_))
    song = {col: float(np.interp(0.5, levels, encoder.quantiles_[col])) for col in config.NUMERIC_FEATURES}
    for col in config.CATEGORICAL_FEATURES:
        known = sorted(encoder.vocab_[col])
        fallback = FALLBACK_CATEGORIES.get(col)
        song[col] = fallback if fallback in encoder.vocab_[col] else (known[0] if known else "")
    song["artist_name"] = ""
    return song


@dataclass
class Explanation:
    """Predictions of a batch of songs and each group's contribution, row for row, in valence units."""

    prediction: np.ndarray  # (n,)
    base_value: float
    contributions: np.ndarray  # (n, len(GROUPS)), columns in GROUPS order
    groups: tuple = GROUPS

    def row(self, i):
        """Return song i's explanation as plain JSON-able values."""
        return {"prediction": float(self.prediction[i]), "base_value": self.base_value,
                "contributions": dict(zip(self.groups, self.contributions[i].tolist()))}


def antithetic_permutations(n_groups, n_permutations, seed):
    """Return (n_permutations, n_groups) permutations in pairs: a random one, then its reverse."""
    generator = torch.Generator().manual_seed(seed)
    pairs = [torch.randperm(n_groups, generator=generator) for _ in range((n_permutations + 1) // 2)]
    return torch.stack([p for first in pairs for p in (first, first.flip(0))])[:n_permutations]


def captum_sampler(forward_func, permutations):
    """Return Captum's ShapleyValueSampling of forward_func over a fixed list of permutations instead of
    fresh torch.randperm draws from the global generator: the same answer on every request, and no
    global RNG state touched (Captum's own ShapleyValues sets permutation_generator the same way)."""
    # Imported here, not at the top: importing captum imports matplotlib too (0.7 s); a gunicorn
    # worker pays it on its first explanation, not at start (lookups and start-up don't need it).
    from captum.attr import ShapleyValueSampling

    sampler = ShapleyValueSampling(forward_func)
    orders = [[int(group) for group in order] for order in permutations]
    sampler.permutation_generator = lambda n_features, n_samples: iter(orders)
    return sampler


class Explainer:
    """Shapley values of a regression bundle's prediction over GROUPS, against its background song."""

    def __init__(self, bundle, n_permutations=N_PERMUTATIONS, seed=SEED):
        if bundle.kind != "regression":
            raise config.ValenceError(f"explanations need a regression model, not a {bundle.kind} model")
        self.model, self.encoder = bundle.model, bundle.encoder
        self.background = dict(bundle.meta.get("background") or fallback_song(self.encoder))
        self.background_is_stored = bool(bundle.meta.get("background"))
        names = self.encoder.feature_names()
        group_of = {name: GROUPS.index(name) for name in GROUPS}
        self.numeric_groups = torch.tensor([group_of.get(c, group_of[ARTIST_GROUP]) for c in names["numeric"]])
        self.categorical_groups = torch.tensor([group_of[c] for c in names["categorical"]], dtype=torch.int64)
        try:
            base = self.encoder.transform(pd.DataFrame([self.background]))
        except (KeyError, TypeError, ValueError, config.ValenceError) as error:
            raise config.ValenceError(f"the model's background song cannot be encoded ({error}); "
                                      "train the model again") from None
        self.base_numeric = torch.as_tensor(base["numeric"])
        self.base_categorical = torch.as_tensor(base["categorical"])
        self.permutations = antithetic_permutations(len(GROUPS), n_permutations, seed)
        # Every member's first layer as one: (hidden of all members, inputs); each later layer of all the
        # members as one batched product (the members share one architecture).
        members = self.model.members
        kinds = [[type(layer) for layer in member if not isinstance(layer, nn.Dropout)] for member in members]
        assert all(k == [nn.Linear, nn.ReLU] * (len(k) // 2) + [nn.Linear] for k in kinds), "Linear, ReLU, ..., Linear"
        self.first_weight = torch.cat([member[0].weight for member in members]).detach()
        self.width = members[0][0].out_features
        later = [[layer for layer in member[1:] if isinstance(layer, nn.Linear)] for member in members]
        self.later = [(torch.stack([layers[i].weight.T for layers in later]).detach(),
                       torch.stack([layers[i].bias for layers in later])[:, None, :].detach())
                      for i in range(len(later[0]))]
        with torch.no_grad():
            self.base_dense = self.model.inputs(self.base_numeric, self.base_categorical)
            self.base_first = torch.cat([member[0](self.base_dense) for member in self.model.members], dim=1)
            self.base_value = float(self._after_first(self.base_first)[0])

    def explain(self, frame):
        """Return the Explanation of every row of a frame of songs (features, artist_name optional)."""
        arrays = self.encoder.transform(frame)
        return self.explain_arrays(arrays["numeric"], arrays["categorical"])

    def explain_arrays(self, numeric, categorical):
        """Return the Explanation of encoded songs, CHUNK_SONGS at a time."""
        numeric = torch.as_tensor(np.asarray(numeric, dtype=np.float32))
        categorical = torch.as_tensor(np.asarray(categorical, dtype=np.int64))
        predictions, contributions = [], []
        with torch.no_grad():
            for start in range(0, len(numeric), CHUNK_SONGS):
                end = start + CHUNK_SONGS
                prediction, contribution = self._shapley(numeric[start:end], categorical[start:end])
                predictions.append(prediction)
                contributions.append(contribution)
        if not predictions:
            return Explanation(np.zeros(0, np.float32), self.base_value, np.zeros((0, len(GROUPS)), np.float32))
        return Explanation(torch.cat(predictions).numpy(), self.base_value, torch.cat(contributions).numpy())

    def group_deltas(self, numeric, categorical):
        """Return what each group of each song adds to the first layers' pre-activations, (songs, groups,
        hidden of all members), and the mask of groups where a song equals the background.

        The input encoding is separable by column and the first layer is linear, so a coalition's
        first-layer pre-activations are the background's plus the sum of its groups' deltas."""
        n, n_groups = len(numeric), len(GROUPS)
        # Single swaps: the background with one group taken from the song, for every song and group.
        alone = torch.eye(n_groups, dtype=torch.bool)
        swapped_numeric = torch.where(alone[:, self.numeric_groups][None], numeric[:, None, :], self.base_numeric)
        swapped_categorical = torch.where(alone[:, self.categorical_groups][None], categorical[:, None, :],
                                          self.base_categorical)
        dense = self.model.inputs(swapped_numeric.reshape(n * n_groups, -1),
                                  swapped_categorical.reshape(n * n_groups, -1))
        # Differences first, then the weights: a group equal to the background moves nothing, exactly.
        change = (dense - self.base_dense).reshape(n, n_groups, -1)
        return nn.functional.linear(change, self.first_weight), (change == 0).all(dim=2)

    def coalition_values(self, switches, deltas):
        """Return the served prediction of each row of switches: a coalition (1: the song's value of a
        group, 0: the background's) of song r % n, for the deltas of n songs. Captum's forward function:
        it stacks its perturbations of the n songs' switches one block of n rows after another."""
        n, n_groups = deltas.shape[0], deltas.shape[1]
        blocks = switches.reshape(-1, n, n_groups).transpose(0, 1)  # (songs, perturbations, groups)
        first = torch.bmm(blocks, deltas).transpose(0, 1).reshape(-1, deltas.shape[2]) + self.base_first
        return self._after_first(first)

    def _after_first(self, first):
        """Return the served prediction (clamped to [0, 1]) from all members' first-layer pre-activations,
        (rows, members x width): the model's later layers, every member's in one batched product."""
        hidden = first.reshape(len(first), -1, self.width).transpose(0, 1)  # (members, rows, width)
        for weight, bias in self.later:
            hidden = torch.baddbmm(bias, hidden.relu(), weight)
        return self.model.output(hidden.mean(dim=0)).clamp(0.0, 1.0)

    def _shapley(self, numeric, categorical):
        """Return (prediction, contributions) of a chunk of encoded songs, from one Captum call."""
        n, n_groups = len(numeric), len(GROUPS)
        deltas, null = self.group_deltas(numeric, categorical)
        sampler = captum_sampler(lambda switches: self.coalition_values(switches, deltas), self.permutations)
        # Every song at once (Captum's batch), all 16 steps (one per group) of a permutation in one forward call.
        contributions = sampler.attribute(torch.ones(n, n_groups), baselines=0.0, n_samples=len(self.permutations),
                                          perturbations_per_eval=n_groups)
        # A group whose encoded values are the background's is a null player: its Shapley value is 0.
        # Said explicitly, so that rounding in the batched matrix products leaves no 1e-9 residue.
        contributions[null] = 0.0
        prediction = self.coalition_values(torch.ones(n, n_groups), deltas)
        return prediction, contributions

    def exact(self, numeric, categorical):
        """Return one encoded song's exact Shapley values, from all 2**G coalitions (slow: for checks)."""
        n_groups = len(GROUPS)
        codes = torch.arange(2 ** n_groups)
        coalitions = ((codes[:, None] >> torch.arange(n_groups)) & 1).bool()
        with torch.no_grad():
            deltas, _ = self.group_deltas(torch.as_tensor(numeric), torch.as_tensor(categorical))
            values = self.coalition_values(coalitions.float(), deltas[:1])
        values, sizes = values.double(), coalitions.sum(dim=1)
        weight = torch.tensor([math.factorial(s) * math.factorial(n_groups - s - 1) / math.factorial(n_groups)
                               for s in range(n_groups)], dtype=torch.float64)
        phi = []
        for g in range(n_groups):
            without = codes[~coalitions[:, g]]
            phi.append((weight[sizes[without]] * (values[without | (1 << g)] - values[without])).sum())
        return torch.stack(phi).numpy()
