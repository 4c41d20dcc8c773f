"""Feature encoder: clean frame -> numeric and categorical arrays, fitted on training rows only."""
import base64
import json
import re
import zlib
from collections.abc import Mapping
from statistics import NormalDist

import numpy as np
import pandas as pd

from valence import config

ARTIST_FEATURES = ("artist_mean_valence", "artist_log_tracks", "artist_seen")
ARTIST_MOOD_FEATURES = ("artist_valence_spread", "artist_sad_share", "artist_happy_share")
SONG_FEATURES = ("song_versions_valence", "song_versions_log_tracks")
UNKNOWN = 0  # index of the unknown bucket in every categorical vocabulary
PAIRS_PER_CHUNK = 1 << 18  # (row, reference song) pairs the similarity-weighted artist mean handles at once

# A categorical the encoder reads off the track name: the release's version marker, as Spotify titles write it
# after " - " or in brackets ("Body Count - Remix", "Toi - live", "Falling (Acoustic Version)"). The first
# marker that matches names it; a title without one (or no title) is "none". On the real slice's five split
# seeds of bench/quality.py the regression's test MAE went from 0.1241 to 0.1239 and R² from 0.5207 to 0.5221
# (docs/quality.md): the audio features alone read a remix as happier and an acoustic version as sadder than
# they are (their mean errors shrank from -0.045 and +0.078 to -0.014 and +0.023).
VERSION = "version"
VERSION_MARKERS = (
    # "Original Mix" is a dance track's own version, and a mono or stereo mix is another version.
    ("remix", r"\b(?:remix|rmx|dub)\b|(?<!original )(?<!mono )(?<!stereo )\bmix\b"),
    ("acoustic", r"\b(?:acoustic|unplugged|stripped|piano version)\b"),
    # A qualifier that starts with live, or a live recording somewhere ("can't live without" is no concert).
    ("live", r"(?:^|\| )live\b|\blive (?:at|from|in|on|version|recording|session)\b|\b(?:en|ao) vivo\b"),
    ("instrumental", r"\b(?:instrumental|karaoke)\b"),
    ("remaster", r"\bremaster"),
    ("edit", r"\bedit(?:ed)?\b"),
    ("version", r"\b(?:version|mono|stereo|demo|take|sessions?)\b"),
    # "with" counts at a qualifier's start only ("Jealous (I Ain't With It)" features nobody).
    ("featuring", r"\b(?:feat|featuring|ft)\b|(?:^|\| )with\b"),
)
NO_VERSION = "none"
_MARKERS = [(label, re.compile(pattern)) for label, pattern in VERSION_MARKERS]
_ANY_MARKER = re.compile("|".join(pattern for _label, pattern in VERSION_MARKERS))  # one search rules most out
_QUALIFIERS = re.compile(r"[(\[]([^)\]]*)[)\]]")


def title_version(title):
    """The version marker of a track name: the first of VERSION_MARKERS found in its qualifiers (the text
    in brackets and after the first " - "), else "none"."""
    if not isinstance(title, str) or not ("(" in title or "[" in title or " - " in title):
        return NO_VERSION  # most titles: no qualifier to read
    title = title.lower()
    qualifiers = _QUALIFIERS.findall(title)
    if " - " in title:
        qualifiers.append(title.split(" - ", 1)[1])
    text = " | ".join(qualifiers)  # the markers that must start a qualifier look for "^" or "| "
    if not _ANY_MARKER.search(text):
        return NO_VERSION
    return next(label for label, marker in _MARKERS if marker.search(text))


def _versions(frame):
    """Each row's title_version (none for a frame without track names), each distinct title read once."""
    if "track_name" not in frame.columns:
        return np.full(len(frame), NO_VERSION, dtype=object)
    codes, uniques = pd.factorize(frame["track_name"].to_numpy(dtype=object), use_na_sentinel=False)
    return np.array([title_version(t) for t in uniques] or [NO_VERSION], dtype=object)[codes]


def _norm_ppf(p):
    """Inverse standard normal CDF of each probability (stdlib, so no scipy dependency)."""
    nd = NormalDist()
    return [nd.inv_cdf(float(x)) for x in p]


def _interp_ties(x, xp, fp):
    """Interpolate through a non-decreasing xp with ties, averaging both directions (as sklearn does)."""
    xp, fp = np.asarray(xp), np.asarray(fp)
    return 0.5 * (np.interp(x, xp, fp) - np.interp(-x, -xp[::-1], -fp[::-1]))


class ArtistTable(Mapping):
    """Per-artist sums (tracks, valence, encoded features), one row per normalised name, indexed once.

    A mapping of name -> row (as a list), backed by one float64 array: a fitted encoder of the
    full data set holds tens of thousands of artists, which as Python lists of floats would cost
    tens of MiB per loaded bundle and seconds to unpickle.
    """

    def __init__(self, names, rows, width):
        self.names = [str(name) for name in names]
        self.rows = np.asarray(rows, dtype=np.float64).reshape(len(self.names), width)
        self.index = {name: i for i, name in enumerate(self.names)}

    def __getitem__(self, name):
        return self.rows[self.index[name]].tolist()

    def __contains__(self, name):
        return name in self.index

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)


class _ArtistLookup:
    """An artist table and its reference songs, indexed once for per-row lookups (the fitted
    encoder keeps one, so a request does not re-index tens of thousands of artists)."""

    def __init__(self, table, reference):
        self.index, self.rows = table.index, table.rows
        artists = reference["artist"] if reference else ()
        self.ref_groups = pd.Series(np.arange(len(artists))).groupby(artists).indices if len(artists) else {}
        if self.ref_groups:
            self.ref_y, self.ref_f = reference["values"][:, 0], reference["values"][:, 1:]
            # The reference songs ordered by artist, and where each artist's run starts and how long it is.
            names = list(self.ref_groups)
            self.ref_order = np.concatenate([self.ref_groups[name] for name in names])
            sizes = np.fromiter((len(self.ref_groups[name]) for name in names), dtype=np.int64, count=len(names))
            self.ref_span = {name: (int(first), int(size))
                             for name, first, size in zip(names, np.cumsum(sizes) - sizes, sizes)}

    def ref_spans(self, artists):
        """Per artist name: the start of its run in ref_order and the run's length (0 for an unknown artist)."""
        spans = np.array([self.ref_span.get(a, (0, 0)) for a in artists], dtype=np.int64).reshape(len(artists), 2)
        return spans[:, 0], spans[:, 1]


class FeatureEncoder:
    """Quantile-normal numerics, categorical indices, and out-of-fold artist statistics.

    Statistics come from the frame given to fit(); transform() only applies them.
    """

    def __init__(self, n_quantiles=128, artist_stats=True, artist_smoothing=3.0,
                 artist_feature_means=True, knn_bandwidth=0.1, knn_smoothing=0.3, n_folds=5, seed=0,
                 artist_moods=True, song_versions=True, song_smoothing=1.0):
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
        # artist whose songs average 0.5 may be all neutral or half sad, half happy. bench/quality.py's splits
        # of the real slice (five seeds): mood accuracy 0.6341 against 0.6318, better on every seed; 1,500-row
        # files (three): MAE 0.1396 against 0.1412 (docs/quality.md, fifth pass).
        self.artist_moods = artist_moods
        # The mean valence of the artist's other tracks of the same title (other releases, remixes, live takes):
        # 5-6 % of the slice's test rows have one among the labelled rows, and its valence alone errs less than
        # the model's on them. bench/quality.py's splits of the slice (five seeds, with the mood statistics):
        # accuracy 0.6358 against 0.6341 and MAE 0.1233 against 0.1238, better on every seed on both.
        self.song_versions = song_versions
        self.song_smoothing = song_smoothing
        self._lookup = None  # _ArtistLookup of the fitted statistics, built on first use

    # ---- fitting -------------------------------------------------------------
    def fit(self, frame, y, schema=None):
        """Learn quantiles, vocabularies and artist statistics from the training rows.

        `schema`, a fitted encoder, lends its quantiles and vocabularies instead (they hold no
        valence), so that models fitted on parts of one data set share one input layout.
        """
        self._fit(frame, y, schema)
        return self

    def fit_transform(self, frame, y, schema=None):
        """Fit (see fit), then encode the training rows with out-of-fold artist statistics."""
        keys = _song_keys(frame) if self._songs else None  # read once for the fit and the folds
        self._fit(frame, y, schema, keys)
        out = self._encode(frame, with_artist_block=False)
        if self.artist_stats:
            out["numeric"][:, self._n_plain:] = self._oof_artist_block(frame, y, out["numeric"], keys)
        return out

    def _fit(self, frame, y, schema=None, keys=None):
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
        self.mood_prior_ = _mood_prior(y)
        self.artist_table_ = ArtistTable((), (), self._table_width)
        if self.artist_stats:
            self.artist_table_ = self._table(self._artist_sums(frame, y, self._plain_numeric(frame)))
        self.reference_ = {}
        if self.artist_stats and self.knn_bandwidth > 0:
            self.reference_ = self._reference(frame, y, self._plain_numeric(frame))
        self.song_table_ = ArtistTable((), (), 2)
        if self._songs:
            self.song_table_ = self._song_table(_song_keys(frame) if keys is None else keys, frame, y)

    def _fit_schema(self, frame):
        """Quantiles of each numeric and the vocabulary of each categorical."""
        # Quantile-normal scores by hand, not sklearn's QuantileTransformer: the fitted state must be plain
        # lists and floats so a bundle loads with torch.load(weights_only=True) (parity: tests/test_encoding.py).
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
            self.vocab_[col] = {v: i + 1 for i, v in enumerate(sorted(set(_category_values(frame, col))))}

    def _artist_sums(self, frame, y, plain):
        """Per artist: count of distinct tracks, sum of valence, sums of encoded features (a track listed twice counts once)."""
        cols = {"artist": _artists(frame), "track": frame["track_id"].astype(str).to_numpy(), "n": 1.0, "y": y}
        if self.artist_feature_means:
            cols.update({f"f{j}": plain[:, j] for j in range(plain.shape[1])})
        if self.artist_moods:
            cols.update(_mood_columns(y))
        tracks = pd.DataFrame(cols)
        # "" is a missing name, not an artist: it must never look like a known one.
        tracks = tracks[tracks["artist"] != ""].drop_duplicates("track")
        return tracks.drop(columns="track").groupby("artist").sum()

    @property
    def _songs(self):
        return self.artist_stats and self.song_versions

    def _song_table(self, keys, frame, y):
        """Per (artist, title) key (_song_keys of the frame): count of distinct tracks and sum of valence (a
        track listed twice counts once)."""
        tracks = pd.DataFrame({"key": keys, "track": frame["track_id"].astype(str).to_numpy(),
                               "n": 1.0, "y": np.asarray(y, dtype=np.float64)})
        sums = tracks[tracks["key"] != ""].drop_duplicates("track").drop(columns="track").groupby("key").sum()
        return ArtistTable(sums.index, sums.to_numpy(dtype=np.float64), 2)

    def _song_block(self, keys, table, prior):
        """Per row: the smoothed mean valence of the other tracks of its artist and title (centred), log count."""
        known = np.fromiter((table.index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        sums = np.zeros((len(keys), 2))
        hit = known >= 0
        if hit.any():
            sums[hit] = table.rows[known[hit]]
        return self._song_columns(sums[:, 0], sums[:, 1], prior)

    def _song_columns(self, n, total, prior):
        """The song-versions columns from each row's count of other tracks and the sum of their valence."""
        m = self.song_smoothing
        return np.column_stack([(total + m * prior) / (n + m) - prior, np.log1p(n)]).astype(np.float32)

    def _artist_block(self, artists, lookup, prior, mood_prior=None):
        """Smoothed artist means (centred so an unseen artist reads 0), log track count and a seen flag."""
        m = self.artist_smoothing
        sums = np.zeros((len(artists), lookup.rows.shape[1]))
        # A plain dict lookup: Series.map would turn the whole index into a Series on every call.
        known = np.fromiter((lookup.index.get(a, -1) for a in artists), dtype=np.int64, count=len(artists))
        hit = known >= 0
        if hit.any():
            sums[hit] = lookup.rows[known[hit]]
        n = sums[:, 0]
        # Valence shrinks toward the training mean; encoded features toward 0, their normal-score centre.
        mean_y = (sums[:, 1] + m * prior) / (n + m) - prior
        width = self._n_plain if self.artist_feature_means else 0
        parts = [mean_y[:, None], np.log1p(n)[:, None], (n > 0)[:, None], sums[:, 2:2 + width] / (n + m)[:, None]]
        if self.artist_moods:
            # Smoothed toward the training rows' own: second moment (for the spread), sad and happy shares.
            mood_prior = self.mood_prior_ if mood_prior is None else mood_prior
            smoothed = (sums[:, 2 + width:] + m * np.asarray(mood_prior)) / (n + m)[:, None]
            spread = np.sqrt(np.maximum(smoothed[:, 0] - (mean_y + prior) ** 2, 0.0))
            prior_spread = np.sqrt(max(mood_prior[0] - prior ** 2, 0.0))
            parts += [(spread - prior_spread)[:, None], smoothed[:, 1:] - np.asarray(mood_prior[1:])]
        return np.concatenate(parts, axis=1).astype(np.float32)

    @property
    def _table_width(self):
        return 2 + (self._n_plain if self.artist_feature_means else 0) + (3 if self.artist_moods else 0)

    def _table(self, sums):
        """Return the ArtistTable of _artist_sums' frame."""
        return ArtistTable(sums.index, sums.to_numpy(dtype=np.float64), self._table_width)

    def _make_lookup(self, table, reference):
        return _ArtistLookup(table, reference)

    def _fitted_lookup(self):
        if self._lookup is None:
            self._lookup = self._make_lookup(self.artist_table_, self.reference_)
        return self._lookup

    def _reference(self, frame, y, plain):
        """The training tracks the similarity-weighted artist mean looks up: artist, valence, encoded features."""
        keep = ~pd.Series(frame["track_id"].astype(str).to_numpy()).duplicated().to_numpy() & (_artists(frame) != "")
        values = np.column_stack([np.asarray(y, dtype=np.float32)[keep], plain[keep]]).astype(np.float32)
        return {"artist": _artists(frame)[keep], "values": values}

    def _knn_block(self, artists, plain, lookup, prior):
        """Per row: kernel-weighted mean valence of the same artist's reference songs (centred), log total weight."""
        out = np.zeros((len(artists), 2), dtype=np.float32)
        if not lookup.ref_groups:
            return out
        ref_y, ref_f = lookup.ref_y, lookup.ref_f
        m, h = self.knn_smoothing, self.knn_bandwidth * self._n_plain
        # Every (row, reference song of its artist) pair at once, in chunks of rows that bound the pairs'
        # (pairs x features) buffer: one pass of array operations, where a loop over tens of thousands of
        # artists spent its time in Python (an encoder fit on 150,000 generated rows: 3.1 s, against 5.1 s).
        first, count = lookup.ref_spans(artists)
        rows = np.flatnonzero(count)
        ends = np.cumsum(count[rows])
        start = 0
        while start < len(rows):
            stop = max(start + 1, int(np.searchsorted(ends, ends[start] - count[rows[start]] + PAIRS_PER_CHUNK,
                                                      side="right")))
            chunk = rows[start:stop]
            n = count[chunk]
            query = np.repeat(np.arange(len(chunk)), n)
            # Position of each pair within its row's run of references, then the reference's index.
            offset = np.arange(len(query)) - np.repeat(np.cumsum(n) - n, n)
            ref = lookup.ref_order[np.repeat(first[chunk], n) + offset]
            diff = plain[chunk][query] - ref_f[ref]
            w = np.exp(-np.einsum("ij,ij->i", diff, diff) / h)
            total = np.bincount(query, weights=w, minlength=len(chunk))
            weighted = np.bincount(query, weights=w * ref_y[ref], minlength=len(chunk))
            out[chunk, 0] = (weighted + m * prior) / (total + m) - prior
            out[chunk, 1] = np.log1p(total)
            start = stop
        return out

    def _oof_artist_block(self, frame, y, numeric, keys=None):
        """Artist statistics for training rows from the other folds only; folds group whole tracks."""
        # A track's fold comes from a hash of its id: all listings of a track share a fold, and the
        # folds do not depend on row order or on anything else in the data.
        tracks = frame["track_id"].astype(str)
        fold = tracks.map(lambda t: zlib.crc32(f"{self.seed}:{t}".encode()) % self.n_folds).to_numpy()
        artists, y, plain = _artists(frame), np.asarray(y, dtype=np.float64), numeric[:, :self._n_plain]
        if self._songs:
            keys = _song_keys(frame, artists) if keys is None else keys
            codes, uniques = pd.factorize(keys)
            # Each track's first listing with a key, as _song_table counts: a track listed twice counts once, "" never.
            keyed = keys != ""
            first = keyed.copy()
            first[keyed] = ~tracks[keyed].duplicated().to_numpy()
        block = np.empty((len(frame), self.n_numeric_ - self._n_plain), dtype=np.float32)
        for k in range(self.n_folds):
            inside = fold == k
            sums = self._artist_sums(frame[~inside], y[~inside], plain[~inside])
            table = self._table(sums)
            prior = float(y[~inside].mean()) if (~inside).any() else self.prior_  # the other folds' too
            reference = self._reference(frame[~inside], y[~inside], plain[~inside]) if self.knn_bandwidth > 0 else {}
            lookup = self._make_lookup(table, reference)
            mood_prior = _mood_prior(y[~inside]) if (~inside).any() else self.mood_prior_
            block[inside, :self._n_stats] = self._artist_block(artists[inside], lookup, prior, mood_prior)
            if self.knn_bandwidth > 0:
                block[inside, self._n_stats:self._n_stats + 2] = self._knn_block(
                    artists[inside], plain[inside], lookup, prior)
            if self._songs:
                # The other folds' tracks of each key, counted by code (a pandas table per fold cost 6x as long).
                counted = first & ~inside
                n = np.bincount(codes[counted], minlength=len(uniques))
                total = np.bincount(codes[counted], weights=y[counted], minlength=len(uniques))
                block[inside, -2:] = self._song_columns(n[codes[inside]], total[codes[inside]], prior)
        return block

    # ---- applying ------------------------------------------------------------
    def transform(self, frame):
        """Encode rows with the fitted statistics; unknown categories and artists go to the unknown bucket."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: call fit() or load a fitted state first")
        _check_columns(frame)
        return self._encode(frame, with_artist_block=True)

    def unknown_artists(self, frame):
        """Return a boolean mask of the rows that name an artist the fitted statistics do not know."""
        artists = _artists(frame)
        if not self.artist_stats:
            return np.zeros(len(frame), dtype=bool)
        table = self.artist_table_
        return np.fromiter((a != "" and a not in table for a in artists), dtype=bool, count=len(artists))

    def _plain_numeric(self, frame):
        out = np.empty((len(frame), self._n_plain), dtype=np.float32)
        for j, col in enumerate(config.NUMERIC_FEATURES):
            out[:, j] = _interp_ties(frame[col].to_numpy(dtype=np.float64), self.quantiles_[col], self.normal_scores_)
        return out

    def _encode(self, frame, with_artist_block):
        numeric = np.zeros((len(frame), self.n_numeric_), dtype=np.float32)
        numeric[:, :self._n_plain] = self._plain_numeric(frame)
        if self.artist_stats and with_artist_block:
            artists, lookup = _artists(frame), self._fitted_lookup()
            numeric[:, self._n_plain:self._n_plain + self._n_stats] = self._artist_block(artists, lookup, self.prior_)
            if self.knn_bandwidth > 0:
                numeric[:, self._n_plain + self._n_stats:self._n_plain + self._n_stats + 2] = self._knn_block(
                    artists, numeric[:, :self._n_plain], lookup, self.prior_)
            if self._songs:
                numeric[:, -2:] = self._song_block(_song_keys(frame, artists), self.song_table_, self.prior_)
        columns = list(self.vocab_)  # an encoder saved before VERSION existed has no such column
        categorical = np.zeros((len(frame), len(columns)), dtype=np.int64)
        for j, col in enumerate(columns):
            # A dict lookup per value: Series.map(dict) would build a Series of the vocabulary every call.
            vocab, values = self.vocab_[col], _category_values(frame, col)
            # A version marker that no training title had means nothing to the model: it reads as none.
            unknown = vocab.get(NO_VERSION, UNKNOWN) if col == VERSION else UNKNOWN
            categorical[:, j] = np.fromiter((vocab.get(v, unknown) for v in values), dtype=np.int64, count=len(values))
        return {"numeric": numeric, "categorical": categorical}

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
        index = self.artist_table_.index
        return np.fromiter((index[a] for a in self.reference_["artist"]), dtype=np.int64,
                           count=len(self.reference_["artist"]))

    def to_state(self):
        """Return the settings and fitted state as plain Python types (JSON- and weights_only-safe)."""
        if not hasattr(self, "quantiles_"):
            raise config.ValenceError("FeatureEncoder is not fitted: nothing to save")
        return {
            "settings": {"n_quantiles": self.n_quantiles, "artist_stats": self.artist_stats,
                         "artist_smoothing": self.artist_smoothing,
                         "artist_feature_means": self.artist_feature_means,
                         "knn_bandwidth": self.knn_bandwidth, "knn_smoothing": self.knn_smoothing,
                         "n_folds": self.n_folds, "seed": self.seed, "artist_moods": self.artist_moods,
                         "song_versions": self.song_versions, "song_smoothing": self.song_smoothing},
            "normal_scores": list(self.normal_scores_),
            "quantiles": {c: list(q) for c, q in self.quantiles_.items()},
            "vocab": {c: dict(v) for c, v in self.vocab_.items()},
            "prior": self.prior_,
            "mood_prior": list(self.mood_prior_),
            # Tens of thousands of artists and songs: names as one JSON text, numbers as base64 bytes,
            # so the state is a few plain strings that unpickle in milliseconds.
            "artist_table": {"names": json.dumps(self.artist_table_.names),
                             "rows": _packed(self.artist_table_.rows, np.float64)},
            "song_table": {"names": json.dumps(self.song_table_.names),
                           "rows": _packed(self.song_table_.rows, np.float64)},
            "reference": {"artist_codes": _packed(self._reference_codes(), np.int32),
                          "values": _packed(self.reference_["values"], np.float32)} if self.reference_ else {},
        }

    @classmethod
    def from_state(cls, state):
        """Rebuild a fitted encoder from to_state()'s output."""
        # A state saved before the mood and song-version statistics has neither setting, nor their columns.
        enc = cls(**{"artist_moods": False, "song_versions": False, **state["settings"]})
        enc.normal_scores_ = [float(v) for v in state["normal_scores"]]
        enc.quantiles_ = {c: [float(v) for v in q] for c, q in state["quantiles"].items()}
        enc.vocab_ = {c: {str(k): int(i) for k, i in v.items()} for c, v in state["vocab"].items()}
        enc.prior_ = float(state["prior"])
        enc.mood_prior_ = [float(v) for v in state.get("mood_prior", ())]
        width = enc._table_width
        table = state["artist_table"]
        enc.artist_table_ = ArtistTable(json.loads(table["names"]), _unpacked(table["rows"], np.float64), width)
        songs = state.get("song_table", {"names": "[]", "rows": ""})
        enc.song_table_ = ArtistTable(json.loads(songs["names"]), _unpacked(songs["rows"], np.float64), 2)
        enc.reference_ = {}
        if state.get("reference"):
            codes = _unpacked(state["reference"]["artist_codes"], np.int32)
            names = np.asarray(enc.artist_table_.names, dtype=object)  # one string per artist, shared by its songs
            values = _unpacked(state["reference"]["values"], np.float32)
            enc.reference_ = {"artist": names[codes], "values": values.reshape(len(codes), -1)}
        return enc


def _mood_columns(y):
    """Per-song columns whose sums give the artist's mood statistics: valence squared, sad, happy."""
    y = np.asarray(y, dtype=np.float64)
    return {"y2": y * y, "sad": (y < config.CLASS_EDGES[0]).astype(np.float64),
            "happy": (y > config.CLASS_EDGES[1]).astype(np.float64)}


def _mood_prior(y):
    """The mean of each _mood_columns column over the given targets (the smoothed statistics' prior)."""
    return [float(v.mean()) for v in _mood_columns(y).values()]


def _check_columns(frame):
    missing = [c for c in (*config.NUMERIC_FEATURES, *config.CATEGORICAL_FEATURES) if c not in frame.columns]
    if missing:
        raise config.ValenceError(f"encoder: missing columns {missing}")


def _category_values(frame, column):
    """A categorical column's values as strings; VERSION is read off the track names."""
    return _versions(frame) if column == VERSION else frame[column].astype(str).to_numpy()


_BRACKETS = re.compile(r"[(\[][^)\]]*[)\]]")
_NON_WORD = re.compile(r"\W+")


def song_title(title):
    """A track name without its qualifiers (brackets, the text after the first " - "), words only, folded."""
    if not isinstance(title, str):
        return ""
    title = _BRACKETS.sub(" ", title.split(" - ", 1)[0])
    return " ".join(_NON_WORD.sub(" ", title).split()).casefold()


def _song_keys(frame, artists=None):
    """Per row: the matched artist and the song title, one key ("" without either); `artists`, the frame's
    _artists when the caller has them already."""
    if "track_name" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    codes, uniques = pd.factorize(frame["track_name"].to_numpy(dtype=object), use_na_sentinel=False)
    titles = np.array([song_title(t) for t in uniques] or [""], dtype=object)[codes]
    artists = _artists(frame) if artists is None else artists
    return np.where((artists == "") | (titles == ""), "", artists + "\x1f" + titles)


def _artists(frame):
    """Artist names as matched (config.normalise_name); a frame without the column means every artist is unknown."""
    if "artist_name" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    # Each distinct name folded once (a training run asks for tens of thousands of names dozens of times).
    codes, uniques = pd.factorize(frame["artist_name"].fillna("").astype(str).to_numpy(), use_na_sentinel=False)
    return np.array([config.normalise_name(name) for name in uniques] or [""], dtype=object)[codes]


def _packed(array, dtype):
    """Return an array's values as base64 text of `dtype` bytes (a plain str: JSON- and weights_only-safe)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpacked(text, dtype):
    """Return the flat array that _packed wrote (a writable copy)."""
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()
