"""Artist statistics: per-artist and per-song sums of the training rows, and the columns read from them.

ArtistStatistics is the half of FeatureEncoder that learns from artists: the fitted tables, each row's
artist and song-version columns, and the out-of-fold block that training rows get instead.
"""
import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from valence import config
from valence.model.versions import song_title

PAIRS_PER_CHUNK = 1 << 18  # (row, reference song) pairs the similarity-weighted artist mean handles at once
# Artist dropout runs only while fewer training rows than this read as unseen artists without it: on the real
# slice 8 % do and dropout gains on new artists; on 1,500-row files 52 % do and it loses (docs/quality.md).
UNSEEN_ENOUGH = 0.25


class ArtistTable(Mapping):
    """Per-artist sums (tracks, valence, encoded features), one row per normalised name, indexed once.

    A mapping of name -> row (as a list), backed by one float64 array: a fitted encoder of the
    full data set holds tens of thousands of artists, which as Python lists of floats would cost
    tens of MiB per loaded bundle.
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


class ArtistLookup:
    """An artist table and its reference songs, indexed once for per-row lookups (the fitted
    encoder keeps one, so a request does not re-index tens of thousands of artists)."""

    def __init__(self, table, reference):
        self.index, self.rows = table.index, table.rows
        artists = np.asarray(reference["artist"] if reference else (), dtype=object)
        self.n_refs = len(artists)
        if self.n_refs:
            self.ref_y, self.ref_f = reference["values"][:, 0], reference["values"][:, 1:]
            # The reference songs grouped by artist (each artist's songs in their order), and where each
            # artist's run starts and how long it is: one stable sort of the artists' codes.
            codes, names = pd.factorize(artists)
            self.ref_order = np.argsort(codes, kind="stable")
            sizes = np.bincount(codes, minlength=len(names))
            self.ref_span = dict(zip(names.tolist(), zip((np.cumsum(sizes) - sizes).tolist(), sizes.tolist())))
            self.ref_artists, self.ref_values = artists, reference["values"]
        self._identities = None  # identities(), built on first use

    def identities(self):
        """The reference songs' identities (module function `identities`), sorted, and the song of each: what
        finds a song the statistics learned from (honest.py)."""
        if self._identities is None:
            keys = np.zeros(0, dtype=np.uint64)
            if self.n_refs:
                keys = identities(rows_of(self.ref_artists, self.index), self.ref_values)
            order = np.argsort(keys, kind="stable")
            self._identities = (keys[order], order)
        return self._identities

    def ref_spans(self, artists):
        """Per artist name: the start of its run in ref_order and the run's length (0 for an unknown artist)."""
        spans = np.array([self.ref_span.get(a, (0, 0)) for a in artists], dtype=np.int64).reshape(len(artists), 2)
        return spans[:, 0], spans[:, 1]


class ArtistStatistics:
    """The artist, similar-song and song-version statistics of FeatureEncoder (its settings and prior_)."""

    def _artist_table(self, tracks, y, plain, artists):
        """Per artist: count of distinct tracks, sum of valence, sums of encoded features (a track listed
        twice counts once); rows given as their track ids (or any one code per track) and matched_artists."""
        y = np.asarray(y, dtype=np.float64)
        columns = [np.ones(len(y)), y]
        if self.artist_feature_means:
            columns += [plain[:, j] for j in range(plain.shape[1])]
        if self.artist_moods:
            columns += list(mood_columns(y).values())
        names, sums = sums_by(artists, tracks, columns)
        return ArtistTable(names, sums, self._table_width)

    @property
    def _songs(self):
        return self.artist_stats and self.song_versions

    def _song_table(self, keys, frame, y):
        """Per (artist, title) key (song_keys of the frame): count of distinct tracks and sum of valence (a
        track listed twice counts once)."""
        y = np.asarray(y, dtype=np.float64)
        names, sums = sums_by(np.asarray(keys, dtype=object), frame["track_id"].astype(str).to_numpy(),
                              [np.ones(len(y)), y])
        return ArtistTable(names, sums, 2)

    def _song_block(self, keys, table, prior):
        """Per row: the smoothed mean valence of the other tracks of its artist and title (centred), log count."""
        known = rows_of(keys, table.index)
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
        sums = np.zeros((len(artists), lookup.rows.shape[1]))
        known = rows_of(artists, lookup.index)
        hit = known >= 0
        if hit.any():
            sums[hit] = lookup.rows[known[hit]]
        return self._artist_columns(sums, prior, mood_prior)

    def _artist_columns(self, sums, prior, mood_prior=None):
        """The _artist_block columns of each row's artist sums (a row of zeros: an unseen artist)."""
        m = self.artist_smoothing
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

    def _make_lookup(self, table, reference):
        return ArtistLookup(table, reference)

    def _fitted_lookup(self):
        if self._lookup is None:
            self._lookup = self._make_lookup(self.artist_table_, self.reference_)
        return self._lookup

    def _reference(self, tracks, y, plain, artists):
        """The training tracks the similarity-weighted artist mean looks up: artist, valence, encoded features
        (rows given as in _artist_table)."""
        keep = ~pd.Series(tracks).duplicated().to_numpy() & (artists != "")
        values = np.column_stack([np.asarray(y, dtype=np.float32)[keep], plain[keep]]).astype(np.float32)
        return {"artist": artists[keep], "values": values}

    def _knn_block(self, artists, plain, lookup, prior):
        """Per row: kernel-weighted mean valence of the same artist's reference songs (centred), log total weight."""
        out = np.zeros((len(artists), 2), dtype=np.float32)
        if not lookup.n_refs:
            return out
        ref_y, ref_f = lookup.ref_y, lookup.ref_f
        m, h = self.knn_smoothing, self.knn_bandwidth * self._n_plain
        # Every (row, reference song of its artist) pair at once, in chunks of rows that bound the pairs'
        # (pairs x features) buffer: one pass of array operations, not a Python loop over tens of thousands
        # of artists.
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

    def _oof_artist_block(self, frame, y, numeric, keys=None, artists=None):
        """Artist statistics for training rows from the other folds only; folds group whole tracks."""
        # A track's fold comes from a hash of its id: all listings of a track share a fold, and the
        # folds do not depend on row order or on anything else in the data.
        tracks, ids = pd.factorize(frame["track_id"].astype(str).to_numpy())  # a code per track, hashed once
        fold = np.fromiter((zlib.crc32(f"{self.seed}:{t}".encode()) % self.n_folds for t in ids), dtype=np.int64,
                           count=len(ids))[tracks]
        artists = matched_artists(frame) if artists is None else artists
        y, plain = np.asarray(y, dtype=np.float64), numeric[:, :self._n_plain]
        dropped = self.dropped_rows(frame)
        if self.artist_dropout > 0 and (~_seen_in_other_folds(artists, tracks, fold, self.n_folds)).mean() \
                >= UNSEEN_ENOUGH:
            dropped[:] = False  # enough training rows read as unseen artists already (small files)
        # A dropped row reads its artist as "", which no table holds: exactly what transform gives a new artist.
        shown = np.where(dropped, "", artists)
        if self._songs:
            keys = song_keys(frame, artists) if keys is None else keys
            codes, uniques = pd.factorize(keys)
            # Each track's first listing with a key, as _song_table counts: a track listed twice counts once, "" never.
            keyed = keys != ""
            first = keyed.copy()
            first[keyed] = ~pd.Series(tracks[keyed]).duplicated().to_numpy()
        block = np.empty((len(frame), self.n_numeric_ - self._n_plain), dtype=np.float32)
        for k in range(self.n_folds):
            inside = fold == k
            table = self._artist_table(tracks[~inside], y[~inside], plain[~inside], artists[~inside])
            prior = float(y[~inside].mean()) if (~inside).any() else self.prior_  # the other folds' too
            reference = (self._reference(tracks[~inside], y[~inside], plain[~inside], artists[~inside])
                         if self.knn_bandwidth > 0 else {})
            lookup = self._make_lookup(table, reference)
            mood_prior = mood_prior_of(y[~inside]) if (~inside).any() else self.mood_prior_
            block[inside, :self._n_stats] = self._artist_block(shown[inside], lookup, prior, mood_prior)
            if self.knn_bandwidth > 0:
                block[inside, self._n_stats:self._n_stats + 2] = self._knn_block(
                    shown[inside], plain[inside], lookup, prior)
            if self._songs:
                # The other folds' tracks of each key, counted by code (not a pandas table per fold).
                counted = first & ~inside
                n = np.bincount(codes[counted], minlength=len(uniques)).astype(np.float64)
                total = np.bincount(codes[counted], weights=y[counted], minlength=len(uniques))
                n, total = n[codes[inside]], total[codes[inside]]
                n[dropped[inside]], total[dropped[inside]] = 0.0, 0.0
                block[inside, -2:] = self._song_columns(n, total, prior)
        return block

    def dropped_rows(self, frame):
        """Whether fit_transform gives each training row an unseen artist's statistics (artist_dropout): a
        hash of the encoder's seed and the row's track id, so every listing of a track shares the draw, the
        draw ignores row order, and the share is of tracks whatever their artists' sizes."""
        if self.artist_dropout <= 0:
            return np.zeros(len(frame), dtype=bool)
        codes, uniques = pd.factorize(frame["track_id"].astype(str).to_numpy())
        draws = np.fromiter((zlib.crc32(f"drop:{self.seed}:{u}".encode()) / 2 ** 32 for u in uniques),
                            dtype=np.float64, count=len(uniques))
        return draws[codes] < self.artist_dropout


# Of a reference song's (valence, plain features): all but popularity, which differs between a track's listings.
IDENTITY_COLUMNS = [0, *(1 + j for j, name in enumerate(config.NUMERIC_FEATURES) if name != "popularity")]


def identities(artist_rows, values):
    """A 64-bit key of each song from its artist's row in the artist table and its (valence, plain features)
    in float32, popularity aside: the values' bits mixed by odd multipliers (two different songs of one artist
    share a key with a chance of about 2^-64)."""
    bits = np.ascontiguousarray(np.asarray(values, dtype=np.float32)[:, IDENTITY_COLUMNS]).view(np.uint32)
    bits = bits.astype(np.uint64)
    multipliers = (np.arange(bits.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                   + np.uint64(0xBF58476D1CE4E5B9)) | np.uint64(1)
    with np.errstate(over="ignore"):
        key = (bits * multipliers).sum(axis=1, dtype=np.uint64)
        return key ^ (np.asarray(artist_rows, dtype=np.uint64) * np.uint64(0x94D049BB133111EB))


def sums_by(names, tracks, columns):
    """Per distinct name other than "" (a missing name, never a known one): the sums of `columns` over its
    rows, a track counted once (its first row with a name). Return (names in order of first appearance, sums
    as a float64 array of one row per name). Grouped by integer codes, not by sorting the names: pandas sums
    each group in row order all the same."""
    named = names != ""
    first = named.copy()
    first[named] = ~pd.Series(tracks[named]).duplicated().to_numpy()
    codes, uniques = pd.factorize(names[first])
    # Each column summed in its own type (float32 features in float32, as they are encoded).
    data = pd.DataFrame({f"c{j}": np.asarray(column)[first] for j, column in enumerate(columns)})
    sums = data.groupby(codes, sort=True).sum()
    return uniques[sums.index.to_numpy()], sums.to_numpy(dtype=np.float64)


def rows_of(keys, index):
    """The row of each key in `index` (a dict of key -> row), -1 where it has none: each distinct key
    looked up once (a file of 232,725 rows names about a fifth as many artists)."""
    codes, uniques = pd.factorize(np.asarray(keys, dtype=object), use_na_sentinel=False)
    found = np.fromiter((index.get(key, -1) for key in uniques), dtype=np.int64, count=len(uniques))
    return found[codes]


def _seen_in_other_folds(artists, tracks, fold, n_folds):
    """Whether each row's artist has a track in another inner fold: the rows that read as seen without dropout."""
    codes, _ = pd.factorize(artists)
    counted = (artists != "") & ~pd.Series(tracks).duplicated().to_numpy()
    per_fold = np.zeros((codes.max() + 1 if len(codes) else 0, n_folds))
    np.add.at(per_fold, (codes[counted], fold[counted]), 1.0)
    return (artists != "") & (per_fold[codes].sum(axis=1) - per_fold[codes, fold] > 0)


def mood_columns(y):
    """Per-song columns whose sums give the artist's mood statistics: valence squared, sad, happy."""
    y = np.asarray(y, dtype=np.float64)
    return {"y2": y * y, "sad": (y < config.CLASS_EDGES[0]).astype(np.float64),
            "happy": (y > config.CLASS_EDGES[1]).astype(np.float64)}


def mood_prior_of(y):
    """The mean of each mood_columns column over the given targets (the smoothed statistics' prior)."""
    return [float(v.mean()) for v in mood_columns(y).values()]


def song_keys(frame, artists=None):
    """Per row: the matched artist and the song title, one key ("" without either); `artists`, the frame's
    matched_artists when the caller has them already."""
    if "track_name" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    codes, uniques = pd.factorize(frame["track_name"].to_numpy(dtype=object), use_na_sentinel=False)
    titles = np.array([song_title(t) for t in uniques] or [""], dtype=object)[codes]
    artists = matched_artists(frame) if artists is None else artists
    return np.where((artists == "") | (titles == ""), "", artists + "\x1f" + titles)


def matched_artists(frame):
    """Artist names as matched (config.normalise_name); a frame without the column means every artist is unknown."""
    if "artist_name" not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    # Each distinct name folded once (a training run asks for tens of thousands of names dozens of times).
    codes, uniques = pd.factorize(frame["artist_name"].fillna("").astype(str).to_numpy(), use_na_sentinel=False)
    return np.array([config.normalise_name(name) for name in uniques] or [""], dtype=object)[codes]
