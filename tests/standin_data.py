"""TEMPORARY stand-in for valence.data and valence.synthetic until the data branch lands.

Used by conftest only when those modules cannot be imported; delete it then.
"""
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from valence import config

GENRES = ("Pop", "Rock", "Jazz", "Dance", "Country", "Movie")


@dataclass
class LoadReport:
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict = field(default_factory=dict)
    repaired_time_signatures: int = 0
    sha256: str = ""
    notes: list = field(default_factory=list)

    def summary(self):
        return f"kept {self.rows_kept} of {self.rows_read} rows"


def load_dataset(path, require_valence=True):
    try:
        raw = open(path, "rb").read()
    except OSError as error:
        raise config.ValenceError(f"cannot read {path}: {error.strerror}") from None
    frame = pd.read_csv(path, keep_default_na=False, dtype={"track_name": str, "artist_name": str})
    frame["line"] = np.arange(2, len(frame) + 2)
    for name in ("genre", "artist_name", "track_name", "track_id", "key", "mode", "time_signature"):
        frame[name] = frame[name].astype(str).str.strip()
    for name in (*config.NUMERIC_FEATURES, "valence"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    frame = frame.dropna(subset=[*config.NUMERIC_FEATURES, "valence"]).reset_index(drop=True)
    report = LoadReport(rows_read=len(frame), rows_kept=len(frame), sha256=hashlib.sha256(raw).hexdigest())
    return frame, report


def split_by_track(frame, seed=0, val_fraction=0.1, test_fraction=0.2):
    tracks = frame["track_id"].unique()
    rng = np.random.default_rng(seed)
    draw = dict(zip(tracks, rng.random(len(tracks))))
    u = frame["track_id"].map(draw).to_numpy()
    test = u < test_fraction
    val = (u >= test_fraction) & (u < test_fraction + val_fraction)
    return frame[~test & ~val], frame[val], frame[test]


def iter_feature_chunks(path, chunksize=50_000):
    raise NotImplementedError


def generate_dataset(n_rows, seed=0):
    rng = np.random.default_rng(seed)
    n_tracks = max(1, int(n_rows * 0.8))
    ids = np.array([f"T{seed:03d}{i:019d}" for i in range(n_tracks)])
    which = np.concatenate([np.arange(n_tracks), rng.integers(0, n_tracks, n_rows - n_tracks)])
    dance, energy = rng.random(n_tracks), rng.random(n_tracks)
    tracks = pd.DataFrame({
        "artist_name": [f"Artist {i % max(1, n_tracks // 4)}" for i in range(n_tracks)],
        "track_name": [f"Song {i}" for i in range(n_tracks)],
        "track_id": ids,
        "popularity": rng.integers(0, 101, n_tracks).astype(float),
        "acousticness": rng.random(n_tracks), "danceability": dance,
        "duration_ms": rng.integers(60_000, 400_000, n_tracks).astype(float),
        "energy": energy, "instrumentalness": rng.random(n_tracks) ** 3,
        "key": rng.choice(config.KEYS, n_tracks), "liveness": rng.random(n_tracks),
        "loudness": -30 * rng.random(n_tracks), "mode": rng.choice(config.MODES, n_tracks),
        "speechiness": rng.random(n_tracks) / 3, "tempo": 60 + 140 * rng.random(n_tracks),
        "time_signature": rng.choice(["3/4", "4/4", "4/4", "5/4"], n_tracks),
        "valence": np.clip(0.6 * dance + 0.3 * energy + rng.normal(0, 0.1, n_tracks), 0, 1),
    })
    frame = tracks.iloc[which].reset_index(drop=True)
    frame.insert(0, "genre", rng.choice(GENRES, n_rows))
    return frame[list(config.KAGGLE_COLUMNS)]


def write_csv(frame, path):
    frame.to_csv(path, index=False)
