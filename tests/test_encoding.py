"""FeatureEncoder: fitted on training rows only, plain-type state, unknowns, out-of-fold artist statistics."""
import io
import json

import numpy as np
import pytest
import torch

from songs import make_songs, split
from valence import config
from valence.encoding import FeatureEncoder

N_PLAIN = len(config.NUMERIC_FEATURES)


@pytest.fixture(scope="module")
def frames():
    return split(make_songs())


@pytest.fixture(scope="module")
def fitted(frames):
    train, _, _ = frames
    return FeatureEncoder().fit(train, train["valence"].to_numpy())


def test_transform_refuses_to_run_unfitted(frames):
    with pytest.raises(config.ValenceError, match="not fitted"):
        FeatureEncoder().transform(frames[2])


def test_shapes_and_index_ranges(frames, fitted):
    out = fitted.transform(frames[2])
    assert out["numeric"].dtype == np.float32 and out["categorical"].dtype == np.int64
    assert out["numeric"].shape == (len(frames[2]), fitted.n_numeric_)
    assert out["categorical"].shape == (len(frames[2]), len(fitted.category_sizes_))
    assert (out["categorical"] < np.array(fitted.category_sizes_)).all()
    assert len(fitted.feature_names()["numeric"]) == fitted.n_numeric_
    assert np.isfinite(out["numeric"]).all()


def test_statistics_come_from_the_training_rows_only(frames):
    train, _, test = frames
    encoder = FeatureEncoder().fit(train, train["valence"].to_numpy())
    state = json.dumps(encoder.to_state())
    shifted = test.assign(energy=test["energy"] + 100.0, valence=1.0)
    encoder.transform(shifted)
    assert json.dumps(encoder.to_state()) == state  # transform learns nothing
    # A value beyond the training range maps to the top score, not a rescaled one.
    top = max(encoder.normal_scores_)
    assert np.allclose(encoder.transform(shifted)["numeric"][:, config.NUMERIC_FEATURES.index("energy")], top)
    # The quantiles are the training rows', whatever else is in the data set.
    assert encoder.quantiles_["energy"][-1] == pytest.approx(train["energy"].max())


def test_state_round_trips_through_json_and_weights_only_torch_load(frames, fitted):
    state = fitted.to_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    for restored in (FeatureEncoder.from_state(json.loads(json.dumps(state))),
                     FeatureEncoder.from_state(torch.load(buffer, weights_only=True))):
        a, b = fitted.transform(frames[2]), restored.transform(frames[2])
        assert np.array_equal(a["numeric"], b["numeric"])
        assert np.array_equal(a["categorical"], b["categorical"])
        assert restored.category_sizes_ == fitted.category_sizes_


def test_unknown_genre_and_artist_go_to_the_unknown_bucket(frames, fitted):
    test = frames[2].iloc[:5].copy()
    test["genre"] = "Polka"
    test["artist_name"] = "Nobody Heard Of"
    out = fitted.transform(test)
    assert (out["categorical"][:, config.CATEGORICAL_FEATURES.index("genre")] == 0).all()
    artist = out["numeric"][:, N_PLAIN:]
    assert np.allclose(artist[:, 0], 0.0)  # mean valence: the prior, centred to 0
    assert np.allclose(artist[:, 2], 0.0)  # seen flag
    # Serving frames may lack the artist column: every artist is then unknown, same encoding.
    without = fitted.transform(test.drop(columns=["artist_name"]))
    assert np.array_equal(without["numeric"], out["numeric"])


def test_known_artist_gets_its_training_mean(frames, fitted):
    train, _, test = frames
    name = test["artist_name"].iloc[0]
    songs = train[train["artist_name"] == name]["valence"]
    m = fitted.artist_smoothing
    expected = (songs.sum() + m * fitted.prior_) / (len(songs) + m) - fitted.prior_
    row = fitted.transform(test.iloc[:1])["numeric"][0, N_PLAIN:]
    assert row[0] == pytest.approx(expected, abs=1e-6)
    assert row[1] == pytest.approx(np.log1p(len(songs)), abs=1e-6) and row[2] == 1.0


def test_training_rows_never_see_their_own_target(frames):
    train = frames[0]
    y = train["valence"].to_numpy()
    before = FeatureEncoder().fit_transform(train, y)["numeric"][:, N_PLAIN:]
    changed = y.copy()
    changed[0] = 1.0 - changed[0]
    after_encoder = FeatureEncoder()
    after = after_encoder.fit_transform(train, changed)["numeric"][:, N_PLAIN:]
    # Row 0's own statistics are unchanged by its own target; rows of the same artist in
    # other folds do see it (the statistic is really computed from targets).
    assert np.array_equal(before[0], after[0])
    same_artist = (train["artist_name"] == train["artist_name"].iloc[0]).to_numpy()
    assert not np.array_equal(before[same_artist], after[same_artist])


def test_a_track_listed_twice_is_one_track_in_the_same_fold(frames):
    train = frames[0]
    twice = train.iloc[:2].copy()
    twice["track_id"] = train["track_id"].iloc[3]
    twice[["artist_name", "valence"]] = train[["artist_name", "valence"]].iloc[3].to_numpy()
    frame = __import__("pandas").concat([train, twice], ignore_index=True)
    out = FeatureEncoder().fit_transform(frame, frame["valence"].to_numpy())["numeric"][:, N_PLAIN:]
    # All three listings of the track share one fold, so they get identical out-of-fold statistics.
    assert np.array_equal(out[3, :3], out[-1, :3]) and np.array_equal(out[3, :3], out[-2, :3])
