"""Honest predictions of the songs a model learned from: by a network that never saw them, each one's own
valence left out of every statistic it reads.

A catalog track that has a valence was, as a rule, among the training rows: the served ensemble's networks
learned from it (all fold models but one), and the served encoder's artist, similar-song and song-version
statistics include that very valence. Predicted so, a track looks far better predicted than a new song is.
For a row the model learned from, this module
- takes the track's own contribution back out of each statistic (the artist's sums, the similar-song
  kernel's self-pair, the song-version count): the rule of the training rows' out-of-fold statistics
  (artists.py), with the track itself held out;
- predicts with the networks of the one fold model that never learned from the track (its fold is the
  hash of its track_id that training used, crossfit.py), which the served ensemble holds.
A row the model did not learn from (another file's tracks, songs without a valence) gets the served model.

Whether the model learned from a row is read off the encoder's reference songs (artists.py): a training
track is among its artist's reference songs with the same valence and the same audio features
(popularity aside, which differs between a track's listings under several genres).
"""
import zlib

import numpy as np

from valence.config import TARGET
from valence.model.artists import identities, matched_artists, mood_columns, rows_of, song_keys


def track_folds(track_ids, folds, seed=0):
    """Fold index of each track_id: a hash of it, so every listing of a track shares a fold."""
    ids = [str(t) for t in track_ids]
    return np.fromiter((zlib.crc32(f"fold:{seed}:{t}".encode()) % folds for t in ids), dtype=np.int64,
                       count=len(ids))


def learned_from(encoder, frame, artists=None, plain=None):
    """Per row, the index of its own track among the encoder's reference songs, -1 for a row the encoder did
    not learn from (or a frame without valence, an encoder without reference songs). `artists` and `plain`:
    the frame's matched_artists and encoded plain numerics, when the caller has them already."""
    found = np.full(len(frame), -1, dtype=np.int64)
    if TARGET not in frame or not encoder.artist_stats or not encoder.reference_ or not len(frame):
        return found
    valence = frame[TARGET].to_numpy(dtype=np.float64)
    labelled = np.isfinite(valence)
    if not labelled.any():
        return found
    keys, order = encoder._fitted_lookup().identities()
    sub = frame[labelled]
    codes = rows_of(matched_artists(sub) if artists is None else artists[labelled], encoder.artist_table_.index)
    plain = encoder._plain_numeric(sub) if plain is None else plain[labelled]
    own = np.column_stack([valence[labelled].astype(np.float32), plain]).astype(np.float32)
    wanted = identities(codes, own)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    hit = (codes >= 0) & (keys[at] == wanted)
    found[np.flatnonzero(labelled)[hit]] = order[at[hit]]
    return found


def leave_own_track_out(encoder, frame, encoded, refs, artists=None):
    """Take each learned row's own track (refs >= 0: its reference song, learned_from) out of the artist
    statistics in `encoded` (encoder.transform(frame)), in place; return `encoded`. `artists`: the frame's
    matched_artists, when the caller has them already."""
    rows = refs >= 0
    if not rows.any() or not encoder.artist_stats:
        return encoded
    numeric = encoded["numeric"]
    n_plain, n_stats = encoder._n_plain, encoder._n_stats
    sub = frame[rows]
    lookup = encoder._fitted_lookup()
    y, ref_plain = lookup.ref_y[refs[rows]].astype(np.float64), lookup.ref_f[refs[rows]].astype(np.float64)
    block = numeric[rows]
    artists = matched_artists(sub) if artists is None else artists[rows]
    table = encoder.artist_table_
    sums = table.rows[rows_of(artists, table.index)]  # a learned row's artist is in the table
    own = [np.ones(len(y)), y]  # what the track added to its artist's sums (artists.py, _artist_table)
    if encoder.artist_feature_means:
        own.append(ref_plain)
    if encoder.artist_moods:
        own.extend(mood_columns(y).values())
    sums -= np.column_stack(own)
    block[:, n_plain:n_plain + n_stats] = encoder._artist_columns(sums, encoder.prior_)
    at = n_plain + n_stats
    if encoder.knn_bandwidth > 0:
        # The similar-song mean, (sum of w * valence + m * prior) / (sum of w + m), less the self-pair's weight.
        m, prior = encoder.knn_smoothing, encoder.prior_
        diff = block[:, :n_plain].astype(np.float64) - ref_plain
        w = np.exp(-np.einsum("ij,ij->i", diff, diff) / (encoder.knn_bandwidth * n_plain))
        total = np.expm1(block[:, at + 1].astype(np.float64))
        weighted = (block[:, at].astype(np.float64) + prior) * (total + m) - m * prior
        total, weighted = np.maximum(total - w, 0.0), weighted - w * y
        block[:, at] = (weighted + m * prior) / (total + m) - prior
        block[:, at + 1] = np.log1p(total)
    if encoder._songs:  # the other versions of its title: one track fewer
        keys = song_keys(sub, artists)
        hit = rows_of(keys, encoder.song_table_.index)
        counts, totals = np.zeros(len(keys)), np.zeros(len(keys))
        counts[hit >= 0] = encoder.song_table_.rows[hit[hit >= 0], 0] - 1.0
        totals[hit >= 0] = encoder.song_table_.rows[hit[hit >= 0], 1] - y[hit >= 0]
        block[:, -2:] = encoder._song_columns(np.maximum(counts, 0.0), totals, encoder.prior_)
    numeric[rows] = block
    return encoded


def plan(bundle, frame, encoded, artists=None):
    """Return (encoded, parts) for every row of `frame`: its arrays with each learned row's own track taken
    out (`encoded`, the served encoder's transform of frame, is copied, not changed), and the
    (network, rows) that predict them: the served network for the rows the model did not learn from, fold
    model j's for the learned rows of fold j. `artists`: the frame's matched_artists, when the caller has
    them already."""
    refs = learned_from(bundle.encoder, frame, artists, encoded["numeric"][:, :bundle.encoder._n_plain])
    if "track_id" not in frame:  # no track to find its fold by: the served model
        refs[:] = -1
    split = bundle.meta.get("split") or {}
    trained = int(split.get("folds_trained", 0))
    fold = np.full(len(frame), -1, dtype=np.int64)
    if trained and (refs >= 0).any():
        fold[refs >= 0] = track_folds(frame["track_id"].to_numpy()[refs >= 0], int(split["folds"]),
                                      int(split["seed"]))
    refs[fold >= trained] = -1  # a fold no model was trained for (training stopped early): every model saw it
    fold[refs < 0] = -1
    encoded = {name: array.copy() for name, array in encoded.items()}
    leave_own_track_out(bundle.encoder, frame, encoded, refs, artists)
    parts = [(bundle.network if j == -1 else bundle.fold_network(j), fold == j) for j in np.unique(fold).tolist()]
    return encoded, parts


def honest(bundle, frame, encoded, artists=None):
    """Return (outputs, encoded) of a bundle for every row of `frame`, predicted as plan() says."""
    if not len(frame):
        return bundle.network.predict(encoded), encoded
    encoded, parts = plan(bundle, frame, encoded, artists)
    outputs = None
    for network, rows in parts:
        out = network.predict({name: array[rows] for name, array in encoded.items()})
        if outputs is None:
            outputs = np.zeros((len(frame),) + out.shape[1:], dtype=out.dtype)
        outputs[rows] = out
    return outputs, encoded

