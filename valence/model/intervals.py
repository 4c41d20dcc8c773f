"""Intervals on every valence: split-conformal prediction on the cross-fit's out-of-fold residuals.

Every labelled row of a training run has an out-of-fold prediction (training/crossfit.py), so its
residual |valence - prediction| is what a new song's error looks like. The interval is adaptive:

- a difficulty sigma(x) scales it: a ridge regression of the absolute residual on what the encoder
  says about the song (its normal scores and how far out they lie, the artist statistics with the
  artist's track count and seen flag, the similar-song weight, the genre) and on the prediction. It is
  cross-fitted over the same folds, so a calibration row's sigma comes from a fit that never saw its
  residual;
- the conformity score of a row is |residual| / sigma, and the scores are kept apart for songs whose
  artist the model knows and songs of an unseen artist (Mondrian conformal prediction): each kind is
  calibrated on its own kind of rows.

At level L the half-width is q * sigma(x), q the ceil(L * (n + 1))-th smallest of the n scores of the
song's group (the split-conformal quantile), clipped to valence's range [0, 1]. The sorted scores are
stored in the bundle, so serving computes an interval at any level with no data file.

Written here rather than with crepes (whose ConformalRegressor the tests check these intervals against):
serving needs one order statistic of stored scores at a caller's level, and crepes' fitted objects
exist only as pickles, which a bundle never holds.
"""
import math

import numpy as np
from threadpoolctl import threadpool_limits

from valence import config

DEFAULT_LEVEL = 0.9
MIN_GROUP_ROWS = 100  # a group with fewer calibration rows uses every row's scores
RIDGE = 1.0  # of the difficulty regression: steadies it on small files, negligible on large ones
FLOOR_SHARE = 0.1  # sigma is at least this share of the mean absolute residual (a zero width is never honest)
GROUPS = ("seen_artist", "unseen_artist")


def check_level(level):
    """Return `level` as a float strictly between 0 and 1, or raise ValueError saying what is expected."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level) \
            or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a number between 0 and 1 (exclusive), such as 0.9; got {level!r}")
    return float(level)


SIGMA_BLOCK = 8192  # rows whose design sigma() builds at a time


def design(numeric, genre, n_genres, n_plain, prediction):
    """The difficulty regression's inputs: a constant, the encoded numerics, the plain numerics' magnitudes
    (how far a song lies from the training data's middle), the genre one-hot, the prediction and its square."""
    numeric = np.asarray(numeric, dtype=np.float64)
    one_hot = np.zeros((len(numeric), n_genres))
    one_hot[np.arange(len(numeric)), np.asarray(genre, dtype=np.int64)] = 1.0
    p = np.asarray(prediction, dtype=np.float64)[:, None]
    return np.hstack([np.ones((len(numeric), 1)), numeric, np.abs(numeric[:, :n_plain]), one_hot, p, p * p])


def _solve(gram, moment):
    """Ridge weights from the sums of squares and products x'x and x'y (the constant column unpenalised)."""
    penalty = np.full(len(gram), RIDGE)
    penalty[0] = 0.0
    return np.linalg.solve(gram + np.diag(penalty), moment)


class Intervals:
    """A fitted interval model: the difficulty weights and each group's sorted conformity scores."""

    def __init__(self, weights, floor, scores, seen_column, genre_column, n_genres, n_plain):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.floor = float(floor)
        self.scores = {group: np.sort(np.asarray(values, dtype=np.float64)) for group, values in scores.items()}
        self.seen_column, self.genre_column = seen_column, int(genre_column)
        self.n_genres, self.n_plain = int(n_genres), int(n_plain)

    @classmethod
    def fit(cls, numeric, categorical, prediction, valence, fold, *, seen_column, genre_column, n_genres, n_plain):
        """Fit on out-of-fold rows: their encoded arrays (from their own fold model's encoder), prediction,
        valence and fold. seen_column: the numeric column of the artist's seen flag (None: one group)."""
        # One BLAS thread: these products are small, so a second thread adds waiting, not speed
        # (figures in docs/speed.md).
        with threadpool_limits(1):
            return cls._fit(numeric, categorical, prediction, valence, fold, seen_column, genre_column, n_genres,
                            n_plain)

    @classmethod
    def _fit(cls, numeric, categorical, prediction, valence, fold, seen_column, genre_column, n_genres, n_plain):
        x = design(numeric, np.asarray(categorical)[:, genre_column], n_genres, n_plain, prediction)
        residual = np.abs(np.asarray(valence, dtype=np.float64) - np.asarray(prediction, dtype=np.float64))
        floor = FLOOR_SHARE * float(residual.mean()) if len(residual) else 0.0
        sigma = np.empty(len(residual))
        folds = np.unique(fold)
        # Each fold's sums of squares and products once: the other folds' are the total less its own.
        sums = {j: (x[fold == j].T @ x[fold == j], x[fold == j].T @ residual[fold == j]) for j in folds.tolist()}
        gram, moment = sum(g for g, _ in sums.values()), sum(m for _, m in sums.values())
        for j, (own_gram, own_moment) in sums.items():  # each fold's sigma from the other folds' residuals
            inside = fold == j
            others = (gram - own_gram, moment - own_moment) if len(folds) > 1 else (gram, moment)
            sigma[inside] = x[inside] @ _solve(*others)
        score = residual / np.maximum(sigma, max(floor, 1e-9))
        group = _groups(numeric, seen_column)
        scores = {name: score[group == k] for k, name in enumerate(GROUPS)}
        return cls(_solve(gram, moment), floor, scores, seen_column, genre_column, n_genres, n_plain)

    @classmethod
    def fit_out_of_fold(cls, encoder, encoded, prediction, valence, fold):
        """Fit on a cross-fit's rows: each encoded by its fold model's encoder (which shares the served
        `encoder`'s layout and vocabularies), with its out-of-fold prediction, valence and fold."""
        return cls.fit(encoded["numeric"], encoded["categorical"], prediction, valence, fold, **layout(encoder))

    def sigma(self, encoded, prediction):
        """Each song's difficulty: the predicted absolute error, at least the floor. The design is built a
        block of rows at a time: whole, it would be about 1 KB a song (236 MB at 232,725 songs)."""
        numeric, genre = encoded["numeric"], np.asarray(encoded["categorical"])[:, self.genre_column]
        prediction = np.asarray(prediction)
        out = np.empty(len(numeric))
        for start in range(0, len(numeric), SIGMA_BLOCK):
            rows = slice(start, start + SIGMA_BLOCK)
            out[rows] = design(numeric[rows], genre[rows], self.n_genres, self.n_plain, prediction[rows]) @ self.weights
        return np.maximum(out, max(self.floor, 1e-9))

    def quantile(self, group, level):
        """The conformity score that `level` of a group's songs stay within (inf when too few rows say)."""
        scores = self.scores[group]
        if len(scores) < MIN_GROUP_ROWS:
            scores = np.sort(np.concatenate(list(self.scores.values())))
        rank = math.ceil(level * (len(scores) + 1))
        return float(scores[rank - 1]) if rank <= len(scores) else math.inf

    def parts(self, encoded, prediction):
        """Each song's difficulty sigma and group (0: its artist is known, 1: unseen), from its encoded arrays."""
        return self.sigma(encoded, prediction), _groups(encoded["numeric"], self.seen_column)

    def bounds(self, prediction, sigma, group, level=DEFAULT_LEVEL):
        """Return (low, high) arrays at `level` (one for all songs, or one per song), within [0, 1], from each
        song's prediction, sigma and group (parts)."""
        prediction = np.asarray(prediction, dtype=np.float64)
        group = np.asarray(group, dtype=np.int64)
        levels = np.broadcast_to(np.asarray(level, dtype=object), prediction.shape)
        scale = np.empty(len(prediction))
        for value in set(levels.tolist()):
            at = levels == value
            value = check_level(value)
            for k, name in enumerate(GROUPS):
                scale[at & (group == k)] = self.quantile(name, value)
        half = np.asarray(sigma, dtype=np.float64) * scale
        return np.clip(prediction - half, 0.0, 1.0), np.clip(prediction + half, 0.0, 1.0)

    def interval(self, encoded, prediction, level=DEFAULT_LEVEL):
        """Return (low, high) arrays: each song's interval at `level` (one for all, or one per song), within [0, 1]."""
        return self.bounds(prediction, *self.parts(encoded, prediction), level)

    def to_state(self):
        """The fitted model as plain values and arrays (a bundle stores the arrays as tensors)."""
        return {"weights": self.weights, "floor": self.floor,
                "scores": {name: values.astype(np.float32) for name, values in self.scores.items()},
                "seen_column": self.seen_column, "genre_column": self.genre_column, "n_genres": self.n_genres,
                "n_plain": self.n_plain}

    @classmethod
    def from_state(cls, state):
        scores = {name: state["scores"].get(name, np.zeros(0)) for name in GROUPS}
        return cls(state["weights"], state["floor"], scores, state["seen_column"], state["genre_column"],
                   state["n_genres"], state["n_plain"])


def layout(encoder):
    """Where the interval model reads the seen flag and the genre in a fitted encoder's arrays."""
    names = encoder.feature_names()
    genre = names["categorical"].index("genre")
    seen = names["numeric"].index("artist_seen") if "artist_seen" in names["numeric"] else None
    return {"seen_column": seen, "genre_column": genre, "n_genres": encoder.category_sizes_[genre],
            "n_plain": len(config.NUMERIC_FEATURES)}


def _groups(numeric, seen_column):
    """Each row's group index in GROUPS: 0 when its artist is known (or no column says), 1 when unseen."""
    numeric = np.asarray(numeric)
    if seen_column is None:
        return np.zeros(len(numeric), dtype=np.int64)
    return (numeric[:, seen_column] < 0.5).astype(np.int64)
