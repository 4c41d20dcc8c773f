"""Feature encoder: clean frame -> numeric and categorical arrays, fitted on training rows only."""
from statistics import NormalDist

import numpy as np
import pandas as pd

from valence import config
from valence.model.artists import (ArtistStatistics, ArtistTable, matched_artists, mood_prior_of, rows_of,
                                   song_keys)
from valence.model.versions import NO_VERSION, VERSION, versions

ARTIST_FEATURES = ("artist_mean_valence", "artist_log_tracks", "artist_seen")
ARTIST_MOOD_FEATURES = ("artist_valence_spread", "artist_sad_share", "artist_happy_share")
SONG_FEATURES = ("song_versions_valence", "song_versions_log_tracks")
UNKNOWN = 0  # index of the unknown bucket in every categorical vocabulary
# Columns whose values match in any case: "dance" is Dance, as artist names match (case is how a file
# or a client happens to spell a genre, not a different genre).
CASELESS = ("genre",)


def _norm_ppf(p):
    """Inverse standard normal CDF of each probability (stdlib, so no scipy dependency)."""
    nd = NormalDist()
    return [nd.inv_cdf(float(x)) for x in p]


def _interp_ties(x, xp, fp):
    """Interpolate through a non-decreasing xp with ties, averaging both directions (as sklearn does)."""
    xp, fp = np.asarray(xp), np.asarray(fp)
    return 0.5 * (np.interp(x, xp, fp) - np.interp(-x, -xp[::-1], -fp[::-1]))


class FeatureEncoder(ArtistStatistics):
    """Quantile-normal numerics, categorical indices, and out-of-fold artist statistics.

    Statistics come from the frame given to fit(); transform() only applies them.
    """

    def __init__(self, n_quantiles=128, artist_stats=True, artist_smoothing=3.0,
                 artist_feature_means=True, knn_bandwidth=0.1, knn_smoothing=0.3, n_folds=5, seed=0,
                 artist_moods=True, song_versions=True, song_smoothing=1.0, artist_dropout=0.15):
        self.n_quantiles = n_quantiles
        self.artist_stats = artist_stats
        self.artist_smoothing = artist_smoothing  # pseudo-tracks of the prior in each smoothed mean
        self.artist_feature_means = artist_feature_means  # the artist's typical sound, beside the song's
        # >0: also a similarity-weighted mean valence of the artist's songs (songs of one album sound alike).
        self.knn_bandwidth = knn_bandwidth
        self.knn_smoothing = knn_smoothing  # pseudo-weight of the prior in that mean
        self.n_folds = n_folds
        self.seed = seed
        # The spread of the artist's valence and the shares of its sad and happy songs, beside its mean: an
        # artist whose songs average 0.5 may be all neutral or half sad, half happy (docs/quality.md).
        self.artist_moods = artist_moods
        # The mean valence of the artist's other tracks of the same title (other releases, remixes, live takes):
        # where a song has one among the labelled rows, its valence alone errs less than the model's (docs/quality.md).
        self.song_versions = song_versions
        self.song_smoothing = song_smoothing
        # The share of training tracks whose artist statistics fit_transform gives as an unseen artist's: the
        # network then learns to predict new artists' songs from their sound (docs/quality.md, "New artists").
        self.artist_dropout = artist_dropout
        self._lookup = None  # ArtistLookup of the fitted statistics, built on first use
        self._folded = {}  # column -> (its vocabulary, that vocabulary keyed by folded values), built on first use

    # ---- fitting -------------------------------------------------------------
    def fit(self, frame, y, schema=None):
        """Learn quantiles, vocabularies and artist statistics from the training rows.

        `schema`, a fitted encoder, lends its quantiles and vocabularies instead (they hold no
        valence), so that models fitted on parts of one data set share one input layout.
        """
        self._fit(frame, y, schema)
        return self

    def fit_layout(self, frame):
        """Learn only the quantiles and vocabularies (no valence): the input layout that fold encoders take
        as their `schema` and a ModelConfig reads its widths from, without the artist statistics."""
        if len(frame) == 0:
            raise config.ValenceError("encoder: cannot fit on an empty frame")
        _check_columns(frame)
        self._fit_schema(frame)
        return self

    def fit_transform(self, frame, y, schema=None):
        """Fit (see fit), then encode the training rows with out-of-fold artist statistics."""
        # The artists, song keys and encoded numerics, read once for the fit, the encoding and the folds.
        artists = matched_artists(frame) if self.artist_stats else None
        keys = song_keys(frame, artists) if self._songs else None
        plain = self._fit(frame, y, schema, keys, artists)
        out = self._encode(frame, with_artist_block=False, plain=plain)
        if self.artist_stats:
            out["numeric"][:, self._n_plain:] = self._oof_artist_block(frame, y, out["numeric"], keys, artists)
        return out

    def _fit(self, frame, y, schema=None, keys=None, artists=None):
        """Fit (see fit); return the frame's encoded plain numerics."""
        self._lookup = None
        y = np.asarray(y, dtype=np.float64)
        if len(frame) != len(y):
            raise config.ValenceError(f"encoder: {len(frame)} rows but {len(y)} targets")
        if len(frame) == 0:
            raise config.ValenceError("encoder: cannot fit on an empty frame")
        _check_columns(frame)
        if schema is not None:
            self.normal_scores_ = list(schema.normal_scores_)
            self.quantiles_ = {c: list(q) for c, q in schema.quantiles_.items()}
            self.vocab_ = {c: dict(v) for c, v in schema.vocab_.items()}
        else:
            self._fit_schema(frame)
        self.prior_ = float(y.mean())
        self.mood_prior_ = mood_prior_of(y)
        plain = self._plain_numeric(frame)
        self.artist_table_ = ArtistTable((), (), self._table_width)
        tracks = frame["track_id"].astype(str).to_numpy()
        if self.artist_stats:
            artists = matched_artists(frame) if artists is None else artists
            self.artist_table_ = self._artist_table(tracks, y, plain, artists)
        self.reference_ = {}
        if self.artist_stats and self.knn_bandwidth > 0:
            self.reference_ = self._reference(tracks, y, plain, artists)
        self.song_table_ = ArtistTable((), (), 2)
        if self._songs:
            self.song_table_ = self._song_table(song_keys(frame, artists) if keys is None else keys, frame, y)
        return plain

    def _fit_schema(self, frame):
        """Quantiles of each numeric and the vocabulary of each categorical."""
        # Quantile-normal scores by hand, not sklearn's QuantileTransformer: the fitted state must be plain
        # values and arrays that a bundle stores without pickle (parity: tests/test_encoding.py).
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        # Clip the extreme levels so the normal scores stay finite (about +-3.3 sigma).
        eps = 0.5 / max(len(frame), 1000)
        self.normal_scores_ = [float(v) for v in _norm_ppf(np.clip(levels, eps, 1 - eps))]
        self.quantiles_ = {}
        for col in config.NUMERIC_FEATURES:
            values = frame[col].to_numpy(dtype=np.float64)
            self.quantiles_[col] = [float(v) for v in np.quantile(values, levels)]
        self.vocab_ = {}
        for col in (*config.CATEGORICAL_FEATURES, VERSION):
            # Sorted so that the same training data gives the same indices on any machine.
            values = sorted(set(_category_values(frame, col)))
            if col in CASELESS:  # one entry per name in any case, spelt as its first spelling in sort order
                values = list({_fold(v): v for v in reversed(values)}.values())[::-1]
            self.vocab_[col] = {v: i + 1 for i, v in enumerate(sorted(values))}

    # ---- applying ------------------------------------------------------------
    def transform(self, frame, artists=None):
        """Encode rows with the fitted statistics; unknown categories and artists go to the unknown bucket.
        `artists`: the frame's matched_artists, when the caller has them already."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: call fit() or load a fitted state first")
        _check_columns(frame)
        return self._encode(frame, with_artist_block=True, artists=artists)

    def unknown_artists(self, frame, artists=None):
        """Return a boolean mask of the rows that name an artist the fitted statistics do not know
        (`artists`: the frame's matched_artists, when the caller has them already)."""
        artists = matched_artists(frame) if artists is None else artists
        if not self.artist_stats:
            return np.zeros(len(frame), dtype=bool)
        return (artists != "") & (rows_of(artists, self.artist_table_.index) < 0)

    def _plain_numeric(self, frame):
        out = np.empty((len(frame), self._n_plain), dtype=np.float32)
        for j, col in enumerate(config.NUMERIC_FEATURES):
            out[:, j] = _interp_ties(frame[col].to_numpy(dtype=np.float64), self.quantiles_[col], self.normal_scores_)
        return out

    def _encode(self, frame, with_artist_block, plain=None, artists=None):
        numeric = np.zeros((len(frame), self.n_numeric_), dtype=np.float32)
        numeric[:, :self._n_plain] = self._plain_numeric(frame) if plain is None else plain
        if self.artist_stats and with_artist_block:
            artists = matched_artists(frame) if artists is None else artists
            lookup = self._fitted_lookup()
            numeric[:, self._n_plain:self._n_plain + self._n_stats] = self._artist_block(artists, lookup, self.prior_)
            if self.knn_bandwidth > 0:
                numeric[:, self._n_plain + self._n_stats:self._n_plain + self._n_stats + 2] = self._knn_block(
                    artists, numeric[:, :self._n_plain], lookup, self.prior_)
            if self._songs:
                numeric[:, -2:] = self._song_block(song_keys(frame, artists), self.song_table_, self.prior_)
        columns = list(self.vocab_)  # the fitted vocabulary names the categorical columns, in order
        categorical = np.zeros((len(frame), len(columns)), dtype=np.int64)
        for j, col in enumerate(columns):
            # Each distinct value folded and looked up once, then spread to its rows: a file of 232,725 rows
            # holds a few dozen genres (Series.map(dict) would build a Series of the vocabulary every call).
            vocab = self._vocabulary(col)
            codes, values = pd.factorize(_category_values(frame, col), use_na_sentinel=False)
            if col in CASELESS:
                values = [_fold(v) for v in values]
            # A version marker that no training title had means nothing to the model: it reads as none.
            unknown = vocab.get(NO_VERSION, UNKNOWN) if col == VERSION else UNKNOWN
            index = np.fromiter((vocab.get(v, unknown) for v in values), dtype=np.int64, count=len(values))
            categorical[:, j] = index[codes]
        return {"numeric": numeric, "categorical": categorical}

    def _vocabulary(self, column):
        """Return the fitted vocabulary of a column as transform looks values up in it (caseless: folded)."""
        if column not in CASELESS:
            return self.vocab_[column]
        vocab, cached = self.vocab_[column], self._folded.get(column)
        if cached is None or cached[0] is not vocab:  # fitted again since
            cached = self._folded[column] = (vocab, {_fold(v): i for v, i in vocab.items()})
        return cached[1]

    def known(self, frame, column):
        """Return a boolean mask of the rows whose value of a categorical column the fitted vocabulary holds."""
        codes, values = pd.factorize(frame[column].astype(str).to_numpy(), use_na_sentinel=False)
        vocab = self._vocabulary(column)
        fold = _fold if column in CASELESS else str
        return np.fromiter((fold(v) in vocab for v in values), dtype=bool, count=len(values))[codes]

    # ---- shape and state -----------------------------------------------------
    @property
    def _n_plain(self):
        return len(config.NUMERIC_FEATURES)

    @property
    def _n_stats(self):
        return 3 + (self._n_plain if self.artist_feature_means else 0) + (3 if self.artist_moods else 0)

    @property
    def n_numeric_(self):
        """Width of the numeric array."""
        if not self.artist_stats:
            return self._n_plain
        return self._n_plain + self._n_stats + (2 if self.knn_bandwidth > 0 else 0) + (2 if self._songs else 0)

    @property
    def category_sizes_(self):
        """Vocabulary size of each categorical column, the unknown bucket included."""
        return [len(v) + 1 for v in self.vocab_.values()]

    def feature_names(self):
        """Return the names of the numeric and categorical columns, in array order."""
        artist = []
        if self.artist_stats:
            artist = list(ARTIST_FEATURES)
            if self.artist_feature_means:
                artist += [f"artist_mean_{c}" for c in config.NUMERIC_FEATURES]
            if self.artist_moods:
                artist += list(ARTIST_MOOD_FEATURES)
            if self.knn_bandwidth > 0:
                artist += ["artist_similar_valence", "artist_similar_log_weight"]
            if self._songs:
                artist += list(SONG_FEATURES)
        categorical = list(self.vocab_) if hasattr(self, "vocab_") else [*config.CATEGORICAL_FEATURES, VERSION]
        return {"numeric": [*config.NUMERIC_FEATURES, *artist], "categorical": categorical}

    def _reference_codes(self):
        """Return each reference song's artist as its row in the artist table (every one has a row)."""
        return rows_of(self.reference_["artist"], self.artist_table_.index).astype(np.int32)

    def to_state(self):
        """Return the settings and fitted state as plain Python types and numpy arrays (a bundle stores
        the arrays as safetensors tensors and the rest as JSON)."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: nothing to save")
        return {
            "name_rule": config.NAME_RULE,  # the artist, song and genre names below are keyed by this rule
            "settings": {"n_quantiles": self.n_quantiles, "artist_stats": self.artist_stats,
                         "artist_smoothing": self.artist_smoothing,
                         "artist_feature_means": self.artist_feature_means,
                         "knn_bandwidth": self.knn_bandwidth, "knn_smoothing": self.knn_smoothing,
                         "n_folds": self.n_folds, "seed": self.seed, "artist_moods": self.artist_moods,
                         "song_versions": self.song_versions, "song_smoothing": self.song_smoothing,
                         "artist_dropout": self.artist_dropout},
            "normal_scores": np.array(self.normal_scores_, dtype=np.float64),
            "quantiles": {c: np.array(q, dtype=np.float64) for c, q in self.quantiles_.items()},
            "vocab": {c: dict(v) for c, v in self.vocab_.items()},
            "prior": self.prior_,
            "mood_prior": list(self.mood_prior_),
            "artist_table": {"names": list(self.artist_table_.names), "rows": self.artist_table_.rows},
            "song_table": {"names": list(self.song_table_.names), "rows": self.song_table_.rows},
            # Each reference song's artist as its row in the artist table: one number, not a name, per song.
            "reference": {"artist_codes": self._reference_codes(),
                          "values": np.asarray(self.reference_["values"], dtype=np.float32)} if self.reference_ else {},
        }

    @classmethod
    def from_state(cls, state):
        """Rebuild a fitted encoder from to_state()'s output."""
        enc = cls(**state["settings"])
        enc.normal_scores_ = np.asarray(state["normal_scores"], dtype=np.float64).tolist()
        enc.quantiles_ = {c: np.asarray(q, dtype=np.float64).tolist() for c, q in state["quantiles"].items()}
        enc.vocab_ = {c: {str(k): int(i) for k, i in v.items()} for c, v in state["vocab"].items()}
        enc.prior_ = float(state["prior"])
        enc.mood_prior_ = [float(v) for v in state["mood_prior"]]
        table = state["artist_table"]
        enc.artist_table_ = ArtistTable(table["names"], table["rows"], enc._table_width)
        songs = state["song_table"]
        enc.song_table_ = ArtistTable(songs["names"], songs["rows"], 2)
        enc.reference_ = {}
        if state.get("reference"):
            codes = np.asarray(state["reference"]["artist_codes"], dtype=np.int64)
            names = np.asarray(enc.artist_table_.names, dtype=object)  # one string per artist, shared by its songs
            values = np.asarray(state["reference"]["values"], dtype=np.float32)
            enc.reference_ = {"artist": names[codes], "values": values.reshape(len(codes), -1)}
        return enc


def _check_columns(frame):
    missing = [c for c in (*config.NUMERIC_FEATURES, *config.CATEGORICAL_FEATURES) if c not in frame.columns]
    if missing:
        raise config.ValenceError(f"encoder: missing columns {missing}")


def _category_values(frame, column):
    """A categorical column's values as strings; VERSION is read off the track names."""
    return versions(frame) if column == VERSION else frame[column].astype(str).to_numpy()



def _fold(value):
    """Return a caseless categorical value (a genre's name) as names are matched: config.normalise_name."""
    return config.normalise_name(value)
