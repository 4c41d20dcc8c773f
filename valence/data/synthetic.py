"""Generated songs in the exact Kaggle schema: deterministic, any size, learnable.

Not real data. Marginals and correlations follow the Kaggle file loosely: energy
drives loudness up and acousticness down; valence rises with danceability,
energy and loudness, with genre and artist effects and noise on top.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from valence.config import KAGGLE_COLUMNS, KEYS
from valence.fileio import atomic_path

# genre: (share of rows, intensity, danceability shift, acousticness shift,
#         median speechiness, share instrumental, median popularity, valence effect)
GENRES = {
    "Movie":            (0.035, -0.6, -0.05, 0.8, 0.05, 0.10, 15, 0.1),
    "R&B":              (0.037, 0.0, 0.10, 0.0, 0.08, 0.02, 52, 0.0),
    "A Capella":        (0.003, -1.5, -0.05, 2.0, 0.05, 0.02, 30, -0.7),
    "Alternative":      (0.040, 0.5, 0.00, -0.3, 0.06, 0.05, 50, -0.3),
    "Country":          (0.037, 0.2, 0.02, 0.0, 0.04, 0.01, 46, 0.3),
    "Dance":            (0.038, 0.7, 0.10, -0.5, 0.06, 0.05, 57, 0.1),
    "Electronic":       (0.041, 0.6, 0.05, -0.7, 0.06, 0.45, 38, -0.3),
    "Anime":            (0.038, 0.4, -0.05, -0.2, 0.05, 0.20, 24, 0.0),
    "Folk":             (0.040, -0.5, -0.03, 1.0, 0.04, 0.05, 38, -0.1),
    "Blues":            (0.039, -0.1, 0.00, 0.6, 0.05, 0.10, 35, 0.4),
    "Opera":            (0.036, -1.4, -0.25, 2.2, 0.05, 0.20, 14, -0.9),
    "Hip-Hop":          (0.041, 0.3, 0.17, -0.3, 0.20, 0.01, 58, 0.1),
    "Children's Music": (0.040, 0.0, 0.05, 0.3, 0.07, 0.05, 40, 0.6),
    "Rap":              (0.040, 0.3, 0.17, -0.3, 0.22, 0.01, 60, 0.0),
    "Indie":            (0.040, -0.1, 0.00, 0.3, 0.05, 0.10, 54, -0.3),
    "Classical":        (0.040, -1.7, -0.20, 2.5, 0.05, 0.80, 29, -1.0),
    "Pop":              (0.040, 0.5, 0.08, -0.2, 0.07, 0.01, 66, 0.1),
    "Reggae":           (0.038, 0.2, 0.18, 0.0, 0.10, 0.05, 35, 0.9),
    "Reggaeton":        (0.038, 0.6, 0.20, -0.3, 0.10, 0.01, 38, 0.7),
    "Jazz":             (0.040, -0.6, 0.02, 1.2, 0.05, 0.40, 40, 0.1),
    "Rock":             (0.040, 0.8, -0.05, -0.8, 0.05, 0.05, 59, 0.0),
    "Ska":              (0.037, 0.9, 0.05, -0.7, 0.06, 0.05, 28, 0.9),
    "Comedy":           (0.041, 0.0, 0.00, 0.8, 0.85, 0.00, 21, 0.3),
    "Soul":             (0.039, -0.2, 0.05, 0.5, 0.06, 0.03, 47, 0.3),
    "Soundtrack":       (0.041, -1.3, -0.20, 1.5, 0.04, 0.70, 34, -1.1),
    "World":            (0.039, -0.4, -0.02, 0.8, 0.05, 0.10, 35, -0.2),
}
CURLY_CHILDREN = "Children\u2019s Music"  # the Kaggle file spells this genre both ways
CURLY_SHARE = 0.1
DUPLICATE_SHARE = 0.24  # rows that repeat a track under another genre (~56k of 232,725 in Kaggle)
SONGS_PER_ARTIST = 8
KEY_SHARES = (0.117, 0.1, 0.104, 0.028, 0.078, 0.081, 0.074, 0.117, 0.069, 0.094, 0.056, 0.082)
TIME_SIGNATURES = {"4/4": 0.86, "3/4": 0.1, "5/4": 0.022, "1/4": 0.0177, "0/4": 0.0003}
BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
SYLLABLES = np.array("ka lo mi ven tra ro sa del ni mar zo el an ti ber la qui so re fa".split(), object)
BANDS = np.array("Foxes Lanterns Pilots Echoes Rivers Comets Wolves Satellites Tides Owls".split(),
                 object)
ADJECTIVES = np.array("Midnight Golden Broken Electric Quiet Wild Silver Lonely Summer Neon Paper "
                      "Burning Velvet Endless Hollow Little Crystal Distant Sweet Restless".split(), object)
NOUNS = np.array("Heart Highway Dreams Rain Fire Garden City Ocean Letters Dance Shadows Morning "
                 "River Lights Song Stars Road Waves Secrets Home".split(), object)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _significant(x, digits=3):
    """Round to `digits` significant figures, as the Kaggle file stores small numbers."""
    with np.errstate(divide="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(x))))
    scale[~np.isfinite(scale)] = 1.0
    return np.round(x * scale) / scale


def _word(rng, n, syllables):
    """Return `n` made-up capitalised words of `syllables` syllables."""
    parts = SYLLABLES[rng.integers(0, len(SYLLABLES), (syllables, n))]
    return pd.Series(parts.sum(axis=0)).str.capitalize().to_numpy(dtype=object)


def _names(rng, n_artists, n_tracks, artist):
    """Return (artist names per track, track names)."""
    solo = _word(rng, n_artists, 2) + " " + _word(rng, n_artists, 3)
    band = "The " + _word(rng, n_artists, 3) + " " + BANDS[rng.integers(0, len(BANDS), n_artists)]
    artists = np.where(rng.random(n_artists) < 0.7, solo, band)
    tracks = ADJECTIVES[rng.integers(0, len(ADJECTIVES), n_tracks)] + " " + NOUNS[
        rng.integers(0, len(NOUNS), n_tracks)]
    return artists[artist], tracks


def generate_dataset(n_rows, seed=0):
    """Return `n_rows` generated songs in the Kaggle schema, the same for the same seed."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = max(1, round(n_rows * (1 - DUPLICATE_SHARE)))  # distinct tracks
    profile = np.array(list(GENRES.values()))
    share, intensity, dance, acoustic, speech, instrumental, popular, mood = profile.T
    genre = rng.choice(len(GENRES), n, p=share / share.sum())
    # Artists belong to a genre; a few make many songs (a skewed pick within the genre's pool).
    counts = np.bincount(genre, minlength=len(GENRES))
    pool = np.maximum(1, np.ceil(counts / SONGS_PER_ARTIST)).astype(np.int64)
    offset = np.r_[0, np.cumsum(pool)[:-1]]
    artist = offset[genre] + np.floor(pool[genre] * rng.random(n) ** 1.6).astype(np.int64)
    artist_mood = rng.normal(0.0, 0.45, pool.sum())[artist]
    artist_name, track_name = _names(rng, int(pool.sum()), n, artist)

    drive = rng.normal(intensity[genre], 0.8)
    energy = np.clip(_sigmoid(0.5 + 1.1 * drive + rng.normal(0, 0.35, n)), 0.001, 0.999)
    loudness = np.clip(-22.5 + 21 * energy + rng.normal(0, 2.6, n), -52, 3)
    acousticness = np.clip(_sigmoid(-0.6 - 1.5 * drive + acoustic[genre] + rng.normal(0, 1.0, n)),
                           1e-6, 0.996)
    danceability = np.clip(rng.normal(0.56 + dance[genre] + 0.03 * drive, 0.14), 0.06, 0.98)
    speechiness = np.clip(np.exp(rng.normal(np.log(speech[genre]), 0.5)), 0.022, 0.967)
    plays = rng.random(n) < instrumental[genre]
    instrumentalness = np.where(plays, rng.uniform(0.3, 0.98, n),
                                np.where(rng.random(n) < 0.6, 0.0, 10 ** rng.uniform(-6, -1.5, n)))
    liveness = np.clip(np.exp(rng.normal(np.log(0.13), 0.6, n)) + 0.5 * (speech[genre] > 0.5), 0.01, 1)
    tempo = np.clip(rng.normal(118 + 8 * drive, 28), 30, 240)
    duration = np.clip(np.exp(rng.normal(np.log(220_000) - 0.1 * drive, 0.35)), 15_000, 5_500_000)
    popularity = np.clip(np.round(rng.normal(popular[genre], 13)), 0, 100)
    major = rng.random(n) < 0.65
    key = np.array(KEYS, object)[rng.choice(len(KEYS), n, p=np.array(KEY_SHARES) / sum(KEY_SHARES))]
    signature = np.array(list(TIME_SIGNATURES), object)[
        rng.choice(len(TIME_SIGNATURES), n, p=np.array(list(TIME_SIGNATURES.values())))]
    logit = (mood[genre] + artist_mood + 2.6 * (danceability - 0.56) + 0.6 * (energy - 0.6)
             + 0.03 * (loudness + 9) + 0.2 * major + rng.normal(0, 1.0, n) - 0.3)
    valence = np.round(_sigmoid(logit), 3)

    ids = BASE62[rng.integers(0, 62, (n, 22))].view("S22").ravel().astype(str).astype(object)
    tracks = pd.DataFrame({
        "genre": np.array(list(GENRES), object)[genre], "artist_name": artist_name,
        "track_name": track_name, "track_id": ids, "popularity": popularity.astype(np.int64),
        "acousticness": _significant(acousticness), "danceability": np.round(danceability, 3),
        "duration_ms": duration.astype(np.int64), "energy": np.round(energy, 3),
        "instrumentalness": _significant(instrumentalness), "key": key,
        "liveness": _significant(liveness), "loudness": np.round(loudness, 3),
        "mode": np.where(major, "Major", "Minor").astype(object),
        "speechiness": _significant(speechiness), "tempo": np.round(tempo, 3),
        "time_signature": signature, "valence": valence,
    }, columns=list(KAGGLE_COLUMNS))
    # The same track listed again under another genre, features and valence unchanged.
    again = tracks.iloc[np.sort(rng.choice(n, n_rows - n, replace=False))].copy()
    moved = (genre[again.index] + rng.integers(1, len(GENRES), len(again))) % len(GENRES)
    again["genre"] = np.array(list(GENRES), object)[moved]
    frame = pd.concat([tracks, again], ignore_index=True)
    children = frame["genre"].eq("Children's Music").to_numpy() & (rng.random(len(frame)) < CURLY_SHARE)
    frame.loc[children, "genre"] = CURLY_CHILDREN
    # Grouped by genre, in the Kaggle file's order (its rows come genre by genre).
    order = {g: i for i, g in enumerate(GENRES)} | {CURLY_CHILDREN: list(GENRES).index("Children's Music")}
    frame = frame.iloc[np.argsort(frame["genre"].map(order).to_numpy(), kind="stable")]
    return frame.reset_index(drop=True)


def write_csv(frame, path):
    """Write `frame` as a CSV, atomically: readers see the old file or the whole new one."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as out:
            frame.to_csv(out, index=False, lineterminator="\n")
    return Path(path)
