"""Feature encoder: clean frame -> numeric and categorical arrays, fitted on training rows only."""
from statistics import NormalDist

import numpy as np
import pandas as pd

from valence import config

ARTIST_FEATURES = ("artist_mean_valence", "artist_log_tracks", "artist_seen")
UNKNOWN = 0  # index of the unknown bucket in every categorical vocabulary


def valence_to_class(valence):
    """Map valence values to class indices 0 (sad), 1 (neutral), 2 (happy) by config.CLASS_EDGES."""
    low, high = config.CLASS_EDGES
    v = np.asarray(valence, dtype=np.float64)
    # sad < 0.35 <= neutral <= 0.65 < happy: both edges belong to neutral.
    return np.where(v < low, 0, np.where(v > high, 2, 1)).astype(np.int64)


def _norm_ppf(p):
    """Inverse standard normal CDF of each probability (stdlib, so no scipy dependency)."""
    nd = NormalDist()
    return [nd.inv_cdf(float(x)) for x in p]


def _interp_ties(x, xp, fp):
    """Interpolate through a non-decreasing xp with ties, averaging both directions (as sklearn does)."""
    xp, fp = np.asarray(xp), np.asarray(fp)
    return 0.5 * (np.interp(x, xp, fp) - np.interp(-x, -xp[::-1], -fp[::-1]))


class FeatureEncoder:
    """Quantile-normal numerics, categorical indices, and out-of-fold artist valence statistics.

    Statistics come from the frame given to fit(); transform() only applies them.
    """

    def __init__(self, n_quantiles=128, artist_stats=True, artist_smoothing=3.0,
                 n_folds=5, seed=0):
        self.n_quantiles = n_quantiles
        self.artist_stats = artist_stats
        self.artist_smoothing = artist_smoothing  # pseudo-tracks of the prior in the smoothed mean
        self.n_folds = n_folds
        self.seed = seed

    # ---- fitting -------------------------------------------------------------
    def fit(self, frame, y):
        """Learn quantiles, vocabularies and artist statistics from the training rows."""
        self._fit(frame, y)
        return self

    def fit_transform(self, frame, y):
        """Fit, then encode the training rows with out-of-fold artist statistics."""
        self._fit(frame, y)
        out = self._encode(frame, artist_block=None)
        if self.artist_stats:
            out["numeric"][:, self._n_plain:] = self._oof_artist_block(frame, y)
        return out

    def _fit(self, frame, y):
        y = np.asarray(y, dtype=np.float64)
        if len(frame) != len(y):
            raise config.ValenceError(f"encoder: {len(frame)} rows but {len(y)} targets")
        if len(frame) == 0:
            raise config.ValenceError("encoder: cannot fit on an empty frame")
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        # Clip the extreme levels so the normal scores stay finite (about +-3.3 sigma).
        eps = 0.5 / max(len(frame), 1000)
        self.normal_scores_ = [float(v) for v in _norm_ppf(np.clip(levels, eps, 1 - eps))]
        self.quantiles_ = {}
        for col in config.NUMERIC_FEATURES:
            values = frame[col].to_numpy(dtype=np.float64)
            self.quantiles_[col] = [float(v) for v in np.quantile(values, levels)]
        self.vocab_ = {}
        for col in config.CATEGORICAL_FEATURES:
            # Sorted so that the same training data gives the same indices on any machine.
            values = sorted(set(frame[col].astype(str)))
            self.vocab_[col] = {v: i + 1 for i, v in enumerate(values)}
        self.prior_ = float(y.mean())
        self.artist_table_ = {}
        if self.artist_stats:
            sums, counts = self._artist_sums(frame, y)
            self.artist_table_ = {a: [float(sums[a]), int(counts[a])] for a in sums.index}

    @staticmethod
    def _artist_sums(frame, y):
        """Per-artist sum of valence and count of distinct tracks (a track listed twice counts once)."""
        tracks = pd.DataFrame({"artist": _artists(frame), "track": frame["track_id"].astype(str).to_numpy(), "y": y})
        # "" is a missing name, not an artist: it must never look like a known one.
        tracks = tracks[tracks["artist"] != ""].drop_duplicates("track")
        grouped = tracks.groupby("artist")["y"]
        return grouped.sum(), grouped.count()

    def _artist_block(self, artists, table):
        """Smoothed mean valence, log track count and a seen flag for each artist name."""
        m, prior = self.artist_smoothing, self.prior_
        names = pd.Series(artists)
        s = names.map({a: v[0] for a, v in table.items()}).fillna(0.0).to_numpy(dtype=np.float64)
        n = names.map({a: v[1] for a, v in table.items()}).fillna(0).to_numpy(dtype=np.float64)
        # Centred on the prior so an unseen artist reads 0, like a song with no artist signal.
        return np.stack([(s + m * prior) / (n + m) - prior, np.log1p(n), (n > 0).astype(np.float64)],
                        axis=1).astype(np.float32)

    def _oof_artist_block(self, frame, y):
        """Artist statistics for training rows from the other folds only; folds group whole tracks."""
        tracks = frame["track_id"].astype(str).to_numpy()
        unique = np.unique(tracks)
        rng = np.random.default_rng(self.seed)
        fold_of_track = dict(zip(unique, rng.integers(0, self.n_folds, len(unique))))
        fold = np.array([fold_of_track[t] for t in tracks])
        artists = _artists(frame)
        block = np.empty((len(frame), 3), dtype=np.float32)
        for k in range(self.n_folds):
            inside = fold == k
            sums, counts = self._artist_sums(frame[~inside], np.asarray(y)[~inside])
            table = {a: (sums[a], counts[a]) for a in sums.index}
            block[inside] = self._artist_block(artists[inside], table)
        return block

    # ---- applying ------------------------------------------------------------
    def transform(self, frame):
        """Encode rows with the fitted statistics; unknown categories and artists go to the unknown bucket."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: call fit() or load a fitted state first")
        return self._encode(frame, artist_block=True)

    def _encode(self, frame, artist_block):
        missing = [c for c in (*config.NUMERIC_FEATURES, *config.CATEGORICAL_FEATURES) if c not in frame.columns]
        if missing:
            raise config.ValenceError(f"encoder: missing columns {missing}")
        n = len(frame)
        numeric = np.zeros((n, self.n_numeric_), dtype=np.float32)
        for j, col in enumerate(config.NUMERIC_FEATURES):
            x = frame[col].to_numpy(dtype=np.float64)
            numeric[:, j] = _interp_ties(x, self.quantiles_[col], self.normal_scores_)
        if self.artist_stats and artist_block:
            numeric[:, self._n_plain:] = self._artist_block(_artists(frame), self.artist_table_)
        categorical = np.zeros((n, len(config.CATEGORICAL_FEATURES)), dtype=np.int64)
        for j, col in enumerate(config.CATEGORICAL_FEATURES):
            vocab = self.vocab_[col]
            categorical[:, j] = frame[col].astype(str).map(vocab).fillna(UNKNOWN).to_numpy(dtype=np.int64)
        return {"numeric": numeric, "categorical": categorical}

    # ---- shape and state -----------------------------------------------------
    @property
    def _n_plain(self):
        return len(config.NUMERIC_FEATURES)

    @property
    def n_numeric_(self):
        """Width of the numeric array."""
        return self._n_plain + (len(ARTIST_FEATURES) if self.artist_stats else 0)

    @property
    def category_sizes_(self):
        """Vocabulary size of each categorical column, the unknown bucket included."""
        return [len(self.vocab_[c]) + 1 for c in config.CATEGORICAL_FEATURES]

    def feature_names(self):
        """Return the names of the numeric and categorical columns, in array order."""
        artist = list(ARTIST_FEATURES) if self.artist_stats else []
        return {"numeric": [*config.NUMERIC_FEATURES, *artist], "categorical": list(config.CATEGORICAL_FEATURES)}

    def to_state(self):
        """Return the settings and fitted state as plain Python types (JSON- and weights_only-safe)."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: nothing to save")
        return {
            "settings": {"n_quantiles": self.n_quantiles, "artist_stats": self.artist_stats,
                         "artist_smoothing": self.artist_smoothing, "n_folds": self.n_folds, "seed": self.seed},
            "normal_scores": list(self.normal_scores_),
            "quantiles": {c: list(q) for c, q in self.quantiles_.items()},
            "vocab": {c: dict(v) for c, v in self.vocab_.items()},
            "prior": self.prior_,
            "artist_table": {a: list(v) for a, v in self.artist_table_.items()},
        }

    @classmethod
    def from_state(cls, state):
        """Rebuild a fitted encoder from to_state()'s output."""
        enc = cls(**state["settings"])
        enc.normal_scores_ = [float(v) for v in state["normal_scores"]]
        enc.quantiles_ = {c: [float(v) for v in q] for c, q in state["quantiles"].items()}
        enc.vocab_ = {c: {str(k): int(i) for k, i in v.items()} for c, v in state["vocab"].items()}
        enc.prior_ = float(state["prior"])
        enc.artist_table_ = {str(a): [float(v[0]), int(v[1])] for a, v in state["artist_table"].items()}
        return enc


def _artists(frame):
    """Artist names as str; a frame without the column (serving) means every artist is unknown."""
    if "artist_name" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    return frame["artist_name"].fillna("").astype(str).to_numpy(dtype=object)
