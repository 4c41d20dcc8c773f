"""Small generated song frames with a known signal, for the encoder, model and trainer tests, and a stand-in
predictor with a known rule for the catalog tests."""
import multiprocessing
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd

from valence import config


def make_songs(n_rows=1500, seed=0, n_artists=60):
    """Return a clean frame (the loader's output schema) whose valence follows a known rule.

    valence = sigmoid(2.5 * (danceability - 0.5) + 2 * (energy - 0.5) - acousticness
                      + artist mood + 0.3 * (genre == "Pop")) plus a little noise.
    """
    rng = np.random.default_rng(seed)
    artist = rng.integers(0, n_artists, n_rows)
    mood = rng.normal(0, 0.8, n_artists)[artist]
    genre = rng.choice(["Pop", "Rock", "Jazz"], n_rows)
    frame = pd.DataFrame({
        "genre": genre,
        "artist_name": [f"Artist {a}" for a in artist],
        "track_name": [f"Song {i}" for i in range(n_rows)],
        "track_id": [f"T{i:07d}" for i in range(n_rows)],
        "popularity": rng.integers(0, 100, n_rows).astype(np.float64),
        "acousticness": rng.random(n_rows),
        "danceability": rng.random(n_rows),
        "duration_ms": np.exp(rng.normal(12.3, 0.3, n_rows)).round(),
        "energy": rng.random(n_rows),
        "instrumentalness": np.where(rng.random(n_rows) < 0.6, 0.0, rng.random(n_rows)),
        "key": rng.choice(list(config.KEYS), n_rows),
        "liveness": rng.random(n_rows) * 0.5,
        "loudness": rng.normal(-8, 3, n_rows),
        "mode": rng.choice(list(config.MODES), n_rows),
        "speechiness": rng.random(n_rows) * 0.3,
        "tempo": rng.normal(120, 25, n_rows),
        "time_signature": rng.choice(["3/4", "4/4"], n_rows, p=[0.2, 0.8]),
    })
    logit = (2.5 * (frame.danceability - 0.5) + 2 * (frame.energy - 0.5) - frame.acousticness
             + mood + 0.3 * (genre == "Pop") + rng.normal(0, 0.2, n_rows))
    frame["valence"] = 1 / (1 + np.exp(-logit))
    return frame


def split(frame, test_share=0.2, val_share=0.1):
    """Split rows by position into train, val, test (the generated tracks are all distinct)."""
    n = len(frame)
    a, b = int(n * (1 - test_share - val_share)), int(n * (1 - test_share))
    return (frame.iloc[:a].reset_index(drop=True), frame.iloc[a:b].reset_index(drop=True),
            frame.iloc[b:].reset_index(drop=True))


GENRE_SHIFT = {"Pop": 0.1, "Rock": 0.3}  # other genres: 0, with a warning


class RulePredictor:
    """Predict danceability / 2 + a genre shift; moods from fixed weights; warn on genres not in GENRE_SHIFT."""

    def __init__(self, moods=True):
        self.classification = object() if moods else None
        # The rows of each predict call, read back here from wherever it ran (a catalog build predicts in
        # forked processes).
        self._reported = multiprocessing.get_context("fork").SimpleQueue()
        self._calls = []

    @property
    def calls(self):
        """The number of rows of each predict call so far, in the order they were reported."""
        return [rows for _pid, rows in self.reported()]

    def reported(self):
        """(process id, rows) of each predict call so far."""
        while not self._reported.empty():
            self._calls.append(self._reported.get())
        return self._calls

    def predict(self, frame, level=0.9, honest=False):
        """Interval: valence -/+ `level` / 10 (sigma 0.1, every artist unseen), clipped to [0, 1]."""
        self._reported.put((os.getpid(), len(frame)))
        valence = frame["danceability"].to_numpy() / 2 + frame["genre"].map(GENRE_SHIFT).fillna(0).to_numpy()
        probabilities = None
        if self.classification is not None:
            probabilities = np.stack([1 - valence, np.full(len(frame), 0.5), valence], axis=1)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        warnings = [[] if g in GENRE_SHIFT else [f"unknown genre {g!r}"] for g in frame["genre"]]
        return SimpleNamespace(valence=valence, mood_probabilities=probabilities, warnings=warnings,
                               low=np.clip(valence - level / 10, 0, 1), high=np.clip(valence + level / 10, 0, 1),
                               sigma=np.full(len(frame), 0.1), group=np.ones(len(frame), dtype=np.int64))


def expected_valence(danceability, genre):
    return danceability / 2 + GENRE_SHIFT.get(genre, 0)


def hand_made_listings(songs):
    """Return six listings built from generated songs: one track under three genres (MULTI), and three tracks
    whose artist and title differ only in case and spaces (SAMELOW, SAMEHIGH, SAMETIE)."""
    extra = songs.iloc[[0, 0, 0, 1, 2, 3]].copy()
    extra["track_id"] = ["MULTI", "MULTI", "MULTI", "SAMELOW", "SAMEHIGH", "SAMETIE"]
    extra["genre"] = ["Pop", "Rock", "Polka", "Pop", "Rock", "Rock"]
    extra["artist_name"] = ["Multi Act"] * 3 + ["Twin Artist", "twin   ARTIST", "Twin Artist"]
    extra["track_name"] = ["Many Genres"] * 3 + ["Same Song", " same song ", "Same Song"]
    extra["popularity"] = [30, 30, 30, 10, 90, 10]
    extra["danceability"] = [0.4, 0.4, 0.4, 0.2, 0.6, 0.8]
    extra["valence"] = [0.25, 0.25, 0.25, 0.5, 0.5, 0.5]
    return extra
