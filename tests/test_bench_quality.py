"""bench/quality.py's splits: by track, and by artist (songs of new artists)."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from songs import make_songs
from valence import config

spec = importlib.util.spec_from_file_location("quality", Path(__file__).resolve().parents[1] / "bench" / "quality.py")
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)


@pytest.fixture(scope="module")
def songs():
    frame = make_songs(n_rows=1200, n_artists=80)
    # One artist spelt two ways, a track listed twice, and rows without an artist name.
    frame.loc[:9, "artist_name"] = "artist 1 "
    frame.loc[1100, ["track_id", "artist_name"]] = frame.loc[1099, ["track_id", "artist_name"]].to_numpy()
    frame.loc[1150:, "artist_name"] = ""
    return frame.assign(row=np.arange(len(frame)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_artist_split_puts_every_row_on_one_side_and_no_artist_on_both(songs, seed):
    learned, test = quality.split_by_artist(songs, seed)
    # Every row in exactly one side: the two sides' track ids and rows add up to the frame's.
    assert len(learned) + len(test) == len(songs)
    both = pd.concat([learned, test]).sort_values("row").reset_index(drop=True)
    pd.testing.assert_frame_equal(both, songs)
    assert not set(learned["track_id"]) & set(test["track_id"])
    names = lambda part: set(part["artist_name"].map(config.normalise_name)) - {""}  # noqa: E731
    assert not names(learned) & names(test)
    assert names(test) and names(learned)
    # About 20 % of the groups (artists, and the unnamed rows' tracks) are test groups.
    groups = len(names(songs)) + int((songs["artist_name"] == "").sum())
    tested = len(names(test)) + int((test["artist_name"] == "").sum())
    assert tested == round(0.2 * groups)


def test_the_artist_split_depends_on_the_seed_and_not_on_the_row_order(songs):
    _, test = quality.split_by_artist(songs, 0)
    _, shuffled = quality.split_by_artist(songs.sample(frac=1.0, random_state=7), 0)
    assert set(shuffled["track_id"]) == set(test["track_id"])
    _, other = quality.split_by_artist(songs, 1)
    assert set(other["track_id"]) != set(test["track_id"])


def test_the_bench_splits_by_the_group_asked_for(songs):
    train, val, test = quality.split(songs, 0, "artist")
    assert len(val) == 0 and not set(train["artist_name"]) & set(test["artist_name"]) - {""}
    train, val, test = quality.split(songs, 0, "track")
    assert len(val) > 0 and set(train["artist_name"]) & set(test["artist_name"])  # by track, artists straddle
    assert np.isclose(len(test) / len(songs), 0.2, atol=0.01)


def test_a_frame_of_one_artist_cannot_be_split_by_artist(songs):
    with pytest.raises(config.ValenceError, match="at least 2 artists"):
        quality.split_by_artist(songs.assign(artist_name="Solo"), 0)
