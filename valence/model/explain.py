"""Why a song gets its valence: Shapley values of the regression model over feature groups.

The game: a song's prediction is explained against one reference song, the *background*: the
training split's typical song (each numeric feature at its training median, each categorical at
its most frequent training value, and an artist the model has never seen). A coalition S of the
16 groups (each numeric feature, genre, key, mode, time signature, the version marker read off the
track name, and the artist's history: every artist statistic is one group) takes the song's values
in S and the background's elsewhere. The base value is the prediction for the background;
contributions plus base value = prediction, the same number `/predict` serves.

How: permutation sampling, run by the served numpy network (valence.model.network), so an
explanation needs no torch and its prediction is the served one to the last bit.
- The input encoding is separable by column and the first layer is linear, so a coalition's
  first-layer pre-activations are the background's plus the sum of its groups' deltas (computed
  once per song): only the layers after the first run per coalition.
- 16 fixed permutations in antithetic pairs (one and its reverse: exact for models whose
  interactions are at most pairwise, a lower error otherwise), from a seeded generator of their
  own: a song's explanation is the same on every request, alone or in a list.
- Each permutation's steps telescope from the background's prediction to the song's, both from the
  network's own forward pass, so additivity holds up to float rounding; a group where the song
  equals the background contributes exactly 0 (the null-player axiom, set explicitly).
Exact Shapley values need all 2**16 coalitions, far over a request's budget; docs/quality.md gives
the sampling error of 16 permutations against them.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from valence import config
from valence.model.honest import plan as honest_plan
from valence.model.intervals import DEFAULT_LEVEL

GROUPS = config.EXPLANATION_GROUPS
ARTIST_GROUP = GROUPS[-1]
N_PERMUTATIONS = 16  # 8 antithetic pairs: the error against exact values is in docs/quality.md
SEED = 0
MAX_ROWS = 1 << 21  # coalition rows x hidden units of one pass: bounds the activations (8 MiB a buffer)


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


@dataclass
class Explanation:
    """Predictions of a batch of songs and each group's contribution, row for row, in valence units."""

    prediction: np.ndarray  # (n,)
    base_value: float  # of the served network; a learned catalog track's is its fold model's (base_values)
    contributions: np.ndarray  # (n, len(GROUPS)), columns in GROUPS order
    groups: tuple = GROUPS
    low: np.ndarray | None = None  # each prediction's interval (intervals.py)
    high: np.ndarray | None = None
    base_values: np.ndarray | None = None  # (n,): each song's own base value
    level: object = DEFAULT_LEVEL  # of the intervals: one for all songs, or one per song

    def row(self, i):
        """Return song i's explanation as plain JSON-able values."""
        base = self.base_value if self.base_values is None else float(self.base_values[i])
        row = {"prediction": float(self.prediction[i])}
        if self.low is not None:
            level = self.level if np.ndim(self.level) == 0 else self.level[i]
            row["interval"] = {"level": float(level), "low": float(self.low[i]), "high": float(self.high[i])}
        return {**row, "base_value": base, "contributions": dict(zip(self.groups, self.contributions[i].tolist()))}


def antithetic_permutations(n_groups, n_permutations, seed):
    """Return (n_permutations, n_groups) permutations in pairs: a random one, then its reverse."""
    generator = np.random.default_rng(seed)
    pairs = [generator.permutation(n_groups) for _ in range((n_permutations + 1) // 2)]
    return np.stack([p for first in pairs for p in (first, first[::-1])])[:n_permutations]


def prefix_masks(permutations):
    """Return (permutations, groups + 1, groups) coalitions: step k of a permutation holds its first k groups."""
    n_permutations, n_groups = permutations.shape
    steps = np.arange(n_groups + 1)[None, :, None] > np.argsort(permutations, axis=1)[:, None, :]
    assert steps.shape == (n_permutations, n_groups + 1, n_groups)
    return steps.astype(np.float32)


class Explainer:
    """Shapley values of a regression bundle's prediction over GROUPS, against its background song."""

    def __init__(self, bundle, n_permutations=N_PERMUTATIONS, seed=SEED):
        if bundle.kind != "regression":
            raise config.ValenceError(f"explanations need a regression model, not a {bundle.kind} model")
        if not bundle.meta.get("background"):
            raise config.ValenceError("the regression model has no background song to explain against; "
                                      "train the model again")
        self.bundle, self.encoder, self.intervals = bundle, bundle.encoder, bundle.intervals
        self.background = dict(bundle.meta["background"])
        names = self.encoder.feature_names()
        group_of = {name: GROUPS.index(name) for name in GROUPS}
        self.numeric_groups = np.array([group_of.get(c, group_of[ARTIST_GROUP]) for c in names["numeric"]],
                                       dtype=np.int64)
        self.categorical_groups = np.array([group_of[c] for c in names["categorical"]], dtype=np.int64)
        try:
            base = self.encoder.transform(pd.DataFrame([self.background]))
        except (KeyError, TypeError, ValueError, config.ValenceError) as error:
            raise config.ValenceError(f"the model's background song cannot be encoded ({error}); "
                                      "train the model again") from None
        self.base_numeric = np.asarray(base["numeric"], dtype=np.float32)
        self.base_categorical = np.asarray(base["categorical"], dtype=np.int64)
        self.permutations = antithetic_permutations(len(GROUPS), n_permutations, seed)
        self.masks = prefix_masks(self.permutations).reshape(-1, len(GROUPS))
        self._networks = {}
        self.use(bundle.network)

    def use(self, network):
        """Explain with `network` (the served one, or a fold model's: honest.py) from now on."""
        if id(network) not in self._networks:
            first = network.first_layer(self.base_numeric, self.base_categorical).copy()
            value = float(network.predict({"numeric": self.base_numeric, "categorical": self.base_categorical})[0])
            self._networks[id(network)] = (network, first, value)
        self.network, self.base_first, self.base_value = self._networks[id(network)]

    def explain(self, frame, level=DEFAULT_LEVEL, honest=False):
        """Return the Explanation of every row of a frame of songs (features, artist_name optional), each
        prediction with its interval at `level`. honest: as Predictor.predict's (a learned catalog track is
        explained by its fold model, on statistics without its own valence, against that model's base value)."""
        arrays = self.encoder.transform(frame)
        if not honest or not len(frame):
            explanation = self.explain_arrays(arrays["numeric"], arrays["categorical"])
        else:
            arrays, parts = honest_plan(self.bundle, frame, arrays)
            prediction, base = np.zeros(len(frame), dtype=np.float32), np.zeros(len(frame))
            contributions = np.zeros((len(frame), len(GROUPS)), dtype=np.float32)
            for network, rows in parts:
                self.use(network)
                part = self.explain_arrays(arrays["numeric"][rows], arrays["categorical"][rows])
                prediction[rows], contributions[rows], base[rows] = part.prediction, part.contributions, part.base_value
            self.use(self.bundle.network)
            explanation = Explanation(prediction, self.base_value, contributions, base_values=base)
        if self.intervals is not None:
            explanation.low, explanation.high = self.intervals.interval(arrays, explanation.prediction, level)
            explanation.level = level
        return explanation

    def explain_arrays(self, numeric, categorical):
        """Return the Explanation of encoded songs, a bounded number of songs per pass."""
        numeric = np.asarray(numeric, dtype=np.float32).reshape(len(numeric), -1)
        categorical = np.asarray(categorical, dtype=np.int64).reshape(len(categorical), -1)
        prediction = self.network.predict({"numeric": numeric, "categorical": categorical})
        contributions = np.zeros((len(numeric), len(GROUPS)), dtype=np.float32)
        songs = max(1, MAX_ROWS // (len(self.masks) * self.base_first.shape[1]))
        for start in range(0, len(numeric), songs):
            end = start + songs
            contributions[start:end] = self._shapley(numeric[start:end], categorical[start:end],
                                                     prediction[start:end])
        return Explanation(prediction, self.base_value, contributions)

    def group_deltas(self, numeric, categorical):
        """Return what each group of each song adds to the first layers' pre-activations, (songs, groups,
        members x width), and the mask of groups where a song equals the background."""
        n, n_groups = len(numeric), len(GROUPS)
        # Single swaps: the background with one group taken from the song, for every song and group.
        alone = np.eye(n_groups, dtype=bool)
        take_numeric, take_categorical = alone[:, self.numeric_groups], alone[:, self.categorical_groups]
        swapped_numeric = np.where(take_numeric[None], numeric[:, None, :], self.base_numeric)
        swapped_categorical = np.where(take_categorical[None], categorical[:, None, :], self.base_categorical)
        first = self.network.first_layer(swapped_numeric.reshape(n * n_groups, -1),
                                         swapped_categorical.reshape(n * n_groups, -1))
        deltas = first.reshape(n, n_groups, -1) - self.base_first
        same_numeric = (numeric[:, None, :] == self.base_numeric) | ~take_numeric[None]
        same_categorical = (categorical[:, None, :] == self.base_categorical) | ~take_categorical[None]
        null = same_numeric.all(axis=2) & same_categorical.all(axis=2)
        deltas[null] = 0.0
        return deltas, null

    def coalition_values(self, masks, deltas):
        """Return the served prediction of each coalition (rows of masks: 1 takes the song's value of a group,
        0 the background's) of each song, (songs, coalitions)."""
        first = np.matmul(masks[None], deltas) + self.base_first  # (songs, coalitions, members x width)
        n, rows = first.shape[:2]
        raw = self.network.after_first(first.reshape(n * rows, -1))[:, 0]
        return np.clip(raw, 0.0, 1.0).reshape(n, rows)

    def _shapley(self, numeric, categorical, prediction):
        """Return the contributions of a few encoded songs, one forward pass for all their coalitions."""
        n, n_groups = len(numeric), len(GROUPS)
        deltas, null = self.group_deltas(numeric, categorical)
        values = self.coalition_values(self.masks, deltas).reshape(n, len(self.permutations), n_groups + 1)
        # The ends of every permutation are the network's own answers: the background's and the song's.
        values[:, :, 0], values[:, :, -1] = self.base_value, prediction[:, None]
        steps = np.diff(values.astype(np.float64), axis=2)  # (songs, permutations, step): step k adds perm[k]
        order = np.argsort(self.permutations, axis=1)  # where each group comes in each permutation
        contributions = np.take_along_axis(steps, np.broadcast_to(order, steps.shape), axis=2).mean(axis=1)
        contributions[null] = 0.0
        return contributions
