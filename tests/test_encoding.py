"""FeatureEncoder: fitted on training rows only, plain-type state, unknowns, out-of-fold artist statistics."""
import json
import zlib

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from songs import make_songs, split
from valence import config
from valence.model import bundlefile
from valence.model.encoder import FeatureEncoder
from valence.model.versions import VERSION, song_title, title_version
from valence.data.synthetic import generate_dataset

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
    state = as_json(encoder.to_state())
    shifted = test.assign(energy=test["energy"] + 100.0, valence=1.0)
    encoder.transform(shifted)
    assert as_json(encoder.to_state()) == state  # transform learns nothing
    # A value beyond the training range maps to the top score, not a rescaled one.
    top = max(encoder.normal_scores_)
    assert np.allclose(encoder.transform(shifted)["numeric"][:, config.NUMERIC_FEATURES.index("energy")], top)
    # The quantiles are the training rows', whatever else is in the data set.
    assert encoder.quantiles_["energy"][-1] == pytest.approx(train["energy"].max())


def as_json(state):
    """The state as JSON text, its arrays as lists."""
    return json.dumps(state, default=lambda array: array.tolist())


def test_state_is_plain_values_and_arrays_and_round_trips_through_a_bundle_file(frames, fitted, tmp_path):
    state = fitted.to_state()
    arrays = [state["artist_table"]["rows"], state["song_table"]["rows"], state["reference"]["values"],
              state["reference"]["artist_codes"], state["normal_scores"], *state["quantiles"].values()]
    assert all(isinstance(a, np.ndarray) for a in arrays)
    assert state["artist_table"]["names"] == fitted.artist_table_.names
    bundlefile.write(tmp_path / "state.safetensors", {"encoder": state})
    for restored in (FeatureEncoder.from_state(bundlefile.read(tmp_path / "state.safetensors")["encoder"]),
                     FeatureEncoder.from_state(json.loads(as_json(state)))):
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


def test_known_artist_gets_the_spread_and_mood_shares_of_its_training_songs(frames, fitted):
    train, _, test = frames
    name = test["artist_name"].iloc[0]
    songs = train[train["artist_name"] == name].drop_duplicates("track_id")["valence"].to_numpy()
    y = train["valence"].to_numpy()
    m, n = fitted.artist_smoothing, len(songs)
    assert 0 < (songs < 0.35).sum() < n or 0 < (songs > 0.65).sum() < n  # shares that are not all or nothing

    def smoothed(values, prior):
        return (values.sum() + m * prior) / (n + m)

    mean = smoothed(songs, y.mean())
    spread = np.sqrt(smoothed(songs ** 2, (y ** 2).mean()) - mean ** 2) - np.sqrt((y ** 2).mean() - y.mean() ** 2)
    sad = smoothed(songs < 0.35, (y < 0.35).mean()) - (y < 0.35).mean()
    happy = smoothed(songs > 0.65, (y > 0.65).mean()) - (y > 0.65).mean()
    names = fitted.feature_names()["numeric"]
    row = fitted.transform(test.iloc[:1])["numeric"][0]
    got = [row[names.index(c)] for c in ("artist_valence_spread", "artist_sad_share", "artist_happy_share")]
    assert got == pytest.approx([spread, sad, happy], abs=1e-6)
    # An unknown artist reads as the training rows' own spread and shares: 0 after centring.
    unknown = fitted.transform(test.iloc[:1].assign(artist_name="Nobody Heard Of"))["numeric"][0]
    assert [unknown[names.index(c)] for c in ("artist_valence_spread", "artist_sad_share")] == pytest.approx([0, 0])


def test_an_encoder_without_the_mood_and_song_statistics_round_trips_without_their_columns(frames):
    train, _, test = frames
    without = FeatureEncoder(artist_moods=False, song_versions=False).fit(train, train["valence"].to_numpy())
    again = FeatureEncoder.from_state(json.loads(as_json(without.to_state())))
    assert "artist_sad_share" not in again.feature_names()["numeric"] and again.n_numeric_ == without.n_numeric_
    np.testing.assert_array_equal(again.transform(test)["numeric"], without.transform(test)["numeric"])
    assert FeatureEncoder().fit(train, train["valence"].to_numpy()).n_numeric_ == without.n_numeric_ + 3 + 2


@pytest.mark.parametrize(("title", "song"), [
    ("Falling (Acoustic Version)", "falling"),
    ("Body Count (feat. Normani) - Remix", "body count"),
    ("  DON'T Stop  Me Now - Remastered 2011", "don t stop me now"),
    ("(Can't Live Without Your) Love And Affection", "love and affection"),
    ("", ""), (None, ""), (float("nan"), ""),
])
def test_the_song_title_drops_the_qualifiers(title, song):
    assert song_title(title) == song


def test_other_tracks_of_the_same_artist_and_title_give_the_song_versions_statistic(frames):
    train, _, test = frames
    train = train.copy()
    # Three releases of one song by Artist 7 (other track ids, other names' qualifiers), one by Artist 8.
    rows = np.flatnonzero((train["artist_name"] == "Artist 7").to_numpy())[:3]
    train.loc[rows, "track_name"] = ["Neon River", "Neon River - Remastered", "NEON RIVER (Live)"]
    other = np.flatnonzero((train["artist_name"] == "Artist 8").to_numpy())[0]
    train.loc[other, "track_name"] = "Neon River"
    encoder = FeatureEncoder().fit(train, train["valence"].to_numpy())
    names = encoder.feature_names()["numeric"]
    mean_at, count_at = names.index("song_versions_valence"), names.index("song_versions_log_tracks")
    songs = test.iloc[:4].copy()
    songs["artist_name"] = ["artist 7", "Artist 8", "Artist 7", "Artist 9"]
    songs["track_name"] = ["Neon River (Edit)", "Neon River", "Other", "Neon River"]
    out = encoder.transform(songs)["numeric"]
    y, m, prior = train.loc[rows, "valence"].to_numpy(), encoder.song_smoothing, encoder.prior_
    assert out[0, mean_at] == pytest.approx((y.sum() + m * prior) / (3 + m) - prior, abs=1e-6)
    assert out[0, count_at] == pytest.approx(np.log1p(3), abs=1e-6)
    # Artist 8's one release of the title, not Artist 7's three.
    assert out[1, mean_at] == pytest.approx((train.loc[other, "valence"] + m * prior) / (1 + m) - prior, abs=1e-6)
    assert out[1, count_at] == pytest.approx(np.log1p(1), abs=1e-6)
    assert out[2:, [mean_at, count_at]].tolist() == [[0, 0], [0, 0]]  # another title; a title without its artist
    restored = FeatureEncoder.from_state(json.loads(as_json(encoder.to_state())))
    np.testing.assert_array_equal(restored.transform(songs)["numeric"], out)
    # Without track names (a POST of features only) no song is known.
    assert (encoder.transform(songs.drop(columns="track_name"))["numeric"][:, [mean_at, count_at]] == 0).all()
    # Training rows read only the releases in other folds: never their own valence.
    oof = encoder.fit_transform(train, train["valence"].to_numpy())["numeric"][rows]
    assert (oof[:, count_at] < np.log1p(3)).all() and oof[:, count_at].max() > 0
    changed = train["valence"].to_numpy().copy()
    changed[rows[0]] = 1 - changed[rows[0]]
    again = FeatureEncoder().fit_transform(train, changed)["numeric"][rows]
    assert again[0, mean_at] == oof[0, mean_at]


def test_out_of_fold_statistics_are_what_an_encoder_fitted_on_the_other_folds_serves(frames):
    train = frames[0].copy()
    # Titles shared by several tracks of an artist, so that the song-version columns are not all zero.
    train["track_name"] = "Song " + (np.arange(len(train)) % 40).astype(str)
    y = train["valence"].to_numpy()
    encoder = FeatureEncoder(n_folds=5, seed=3)
    oof = encoder.fit_transform(train, y)["numeric"]
    fold = train["track_id"].map(lambda t: zlib.crc32(f"3:{t}".encode()) % 5).to_numpy()
    inside = (fold == 0) & ~encoder.dropped_rows(train)  # the rows artist dropout leaves their statistics
    other = FeatureEncoder(seed=3).fit(train[fold != 0], y[fold != 0], schema=encoder)
    served = other.transform(train[inside])["numeric"]
    names = encoder.feature_names()["numeric"]
    assert (oof[inside, names.index("song_versions_log_tracks")] > 0).any()
    np.testing.assert_allclose(oof[inside, N_PLAIN:], served[:, N_PLAIN:], atol=1e-6)


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


def test_quantile_normal_scores_match_scikit_learns_quantile_transformer():
    """The hand-written quantile-normal encoding against QuantileTransformer(output_distribution="normal").

    Both fit the same quantiles (linear percentiles at 128 even levels). They differ in how they
    interpolate between two quantiles: sklearn linearly in probability, then the normal ppf; ours
    linearly between the ppf values at the two levels. At a quantile both give ppf(level) exactly;
    between two they differ by at most the ppf's bend over one 1/127 step, about 0.0012 where the
    levels lie in 5-95 % (h^2 / 8 times ppf''). Beyond that they differ by design and are not
    compared: we clip the end levels at about +-3.3 sigma, sklearn at +-5.2, and sklearn sends a
    value tied with the minimum to the minimum's score where we take the middle of the tie.
    """
    train, test = generate_dataset(4000, seed=21), generate_dataset(4000, seed=22)
    columns = list(config.NUMERIC_FEATURES)
    ours = FeatureEncoder(artist_stats=False).fit(train, train["valence"].to_numpy())
    theirs = QuantileTransformer(n_quantiles=ours.n_quantiles, output_distribution="normal", subsample=None)
    theirs.fit(train[columns].to_numpy(dtype=np.float64))
    levels = np.linspace(0, 1, ours.n_quantiles)
    interior = (levels >= 0.05) & (levels <= 0.95)
    compared = 0
    for j, column in enumerate(columns):
        quantiles = np.array(ours.quantiles_[column])
        np.testing.assert_allclose(quantiles, theirs.quantiles_[:, j], rtol=0, atol=1e-9 * max(1, abs(quantiles).max()))
        # At each interior quantile that is not tied with a neighbour: the same score.
        single = interior & (np.diff(quantiles, prepend=-np.inf) > 0) & (np.diff(quantiles, append=np.inf) > 0)
        at_knots = test.iloc[:single.sum()].copy()
        at_knots[column] = quantiles[single]
        got = ours.transform(at_knots)["numeric"][:, j]
        np.testing.assert_allclose(got, _sklearn_column(theirs, at_knots, columns, j), rtol=0, atol=1e-5)  # float32
        # Between two distinct interior quantiles: within the bend of the ppf.
        values = test[column].to_numpy(dtype=np.float64)
        k = np.searchsorted(quantiles, values, side="right") - 1
        inside = (k >= 0) & (k < len(quantiles) - 1)
        k = np.where(inside, k, 0)
        between = inside & (quantiles[k] < values) & (values < quantiles[np.minimum(k + 1, len(quantiles) - 1)])
        between &= interior[k] & interior[np.minimum(k + 1, len(levels) - 1)]
        got = ours.transform(test)["numeric"][between, j]
        expected = _sklearn_column(theirs, test, columns, j)[between]
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)
        compared += int(between.sum())
    assert compared > 0.5 * len(test) * len(columns)  # most values fall in the compared band


def _sklearn_column(transformer, frame, columns, j):
    """Return sklearn's normal scores of column j of a frame."""
    return transformer.transform(frame[columns].to_numpy(dtype=np.float64))[:, j]


# ---- issue 13: an artist is matched the way people type the name ------------------------------

@pytest.mark.parametrize("typed", ["Artist 7 ", "artist 7", "ARTIST  7", "\tArtist 7"])
def test_artist_names_match_whatever_their_case_and_spacing(frames, fitted, typed):
    test = frames[2].iloc[:3].copy()
    test["artist_name"] = "Artist 7"
    exact = fitted.transform(test)["numeric"]
    assert exact[0, N_PLAIN + 2] == 1.0  # a known artist
    test["artist_name"] = typed
    assert np.array_equal(fitted.transform(test)["numeric"], exact)


def test_one_artist_spelt_two_ways_in_training_is_one_artist(frames):
    train = frames[0].copy()
    rows = (train["artist_name"] == "Artist 7").to_numpy()
    train.loc[np.flatnonzero(rows)[::2], "artist_name"] = "  ARTIST 7"
    encoder = FeatureEncoder().fit(train, train["valence"].to_numpy())
    assert "artist 7" in encoder.artist_table_ and "ARTIST 7" not in encoder.artist_table_
    assert encoder.artist_table_["artist 7"][0] == rows.sum()  # every track of both spellings


def test_unknown_artists_marks_rows_whose_named_artist_has_no_statistics(fitted):
    frame = __import__("pandas").DataFrame({"artist_name": ["artist 3", " Artist 3", "Nobody", "", "  "]})
    assert fitted.unknown_artists(frame).tolist() == [False, False, True, False, False]
    assert fitted.unknown_artists(frame.drop(columns=["artist_name"])).tolist() == [False] * 5


@pytest.mark.parametrize(("title", "version"), [
    ("Body Count (feat. Normani & Kehlani) - Remix", "remix"),  # the first marker in VERSION_MARKERS wins
    ("Falling (blackbear Remix)", "remix"),
    ("Be Without You - Kendu Mix", "remix"),
    ("Syracuse - Live au Casino de Paris", "live"),
    ("Falling (Acoustic Version)", "acoustic"),
    ("Jumper - 1998 Edit", "edit"),
    ("Here Comes the Sun - Remastered 2009", "remaster"),
    ("American Woman - 7\" Version", "version"),
    ("Tip Toe (feat. French Montana)", "featuring"),
    ("How Do You Sleep? - Featuring Ludacris", "featuring"),
    ("Girls Need Love (with Drake) - Remix", "remix"),
    ("Strobe - Original Mix", "none"),  # a dance track's own version
    ("Penny Lane - Mono Mix", "version"),
    ("Back Where You Belong - Edited Version", "edit"),
    ("Hotel California - Live On MTV, 1994", "live"),
    ("Cielito Lindo - En Vivo", "live"),
    ("Jealous (I Ain't With It)", "none"),  # "with" inside a qualifier features nobody
    ("(Can't Live Without Your) Love And Affection", "none"),
    ("Live Forever", "none"),  # markers count only in brackets or after " - "
    ("Mix It Up", "none"),
    ("Neon River", "none"),
    ("", "none"),
    (None, "none"),
    (float("nan"), "none"),
])
def test_the_version_marker_is_read_off_the_title(title, version):
    assert title_version(title) == version


def test_the_version_is_a_categorical_column_of_the_encoder(frames):
    train, _, test = frames
    train = train.copy()
    train["track_name"] = train["track_name"].astype(str) + np.where(np.arange(len(train)) % 5 == 0, " - Remix", "")
    encoder = FeatureEncoder().fit(train, train["valence"].to_numpy())
    names = encoder.feature_names()["categorical"]
    assert names == [*config.CATEGORICAL_FEATURES, VERSION]
    assert encoder.vocab_[VERSION] == {"none": 1, "remix": 2}
    column = names.index(VERSION)
    songs = test.iloc[:4].copy()
    songs["track_name"] = ["A - Remix", "B", "C - Live", None]  # live: a marker no training title had
    assert encoder.transform(songs)["categorical"][:, column].tolist() == [2, 1, 1, 1]
    # Without a track_name column (a POST without names) every song reads as none.
    assert (encoder.transform(songs.drop(columns="track_name"))["categorical"][:, column] == 1).all()
    # The state keeps the column; an encoder saved before it existed encodes the four other categoricals.
    again = FeatureEncoder.from_state(json.loads(as_json(encoder.to_state())))
    np.testing.assert_array_equal(again.transform(songs)["categorical"], encoder.transform(songs)["categorical"])
    old = encoder.to_state()
    del old["vocab"][VERSION]
    older = FeatureEncoder.from_state(old)
    assert older.feature_names()["categorical"] == list(config.CATEGORICAL_FEATURES)
    np.testing.assert_array_equal(older.transform(songs)["categorical"],
                                  np.delete(encoder.transform(songs)["categorical"], column, axis=1))


# ---- issue 24, point 7: a genre is matched in any case, as artist names are -------------------

@pytest.mark.parametrize("typed", ["jazz", "JAZZ", "jAzZ"])
def test_genre_names_match_in_any_case(frames, fitted, typed):
    test = frames[2].iloc[:3].copy()
    test["genre"] = "Jazz"
    exact = fitted.transform(test)["categorical"]
    assert (exact[:, 0] == fitted.vocab_["genre"]["Jazz"]).all() and (exact[:, 0] > 0).all()
    test["genre"] = typed
    assert np.array_equal(fitted.transform(test)["categorical"], exact)
    assert fitted.known(test, "genre").all()
    test["genre"] = "Polka"
    assert not fitted.known(test, "genre").any()


def test_one_genre_spelt_two_ways_in_training_is_one_genre(frames):
    train = frames[0].copy()
    rows = np.flatnonzero((train["genre"] == "Jazz").to_numpy())
    train.loc[rows[::2], "genre"] = "jazz"
    encoder = FeatureEncoder().fit(train, train["valence"].to_numpy())
    plain = FeatureEncoder().fit(frames[0], frames[0]["valence"].to_numpy())
    assert encoder.vocab_["genre"] == plain.vocab_["genre"]  # one entry, spelt "Jazz"
    assert np.array_equal(encoder.transform(train)["categorical"], plain.transform(frames[0])["categorical"])


def test_artist_dropout_gives_a_share_of_training_tracks_an_unseen_artists_statistics(frames):
    train = frames[0].copy()
    train["track_name"] = "Song " + (np.arange(len(train)) % 40).astype(str)  # song-version columns not all zero
    y = train["valence"].to_numpy()
    plain = FeatureEncoder(seed=3, artist_dropout=0.0).fit_transform(train, y)
    encoder = FeatureEncoder(seed=3, artist_dropout=0.2)
    out = encoder.fit_transform(train, y)
    dropped = encoder.dropped_rows(train)
    # The draw: a hash of the seed and the track id, about the share asked for, the same every time.
    draws = train["track_id"].map(lambda t: zlib.crc32(f"drop:3:{t}".encode()) / 2 ** 32 < 0.2).to_numpy()
    np.testing.assert_array_equal(dropped, draws)
    assert 0.15 < dropped.mean() < 0.25
    np.testing.assert_array_equal(FeatureEncoder(seed=3, artist_dropout=0.2).fit_transform(train, y)["numeric"],
                                  out["numeric"])
    assert not np.array_equal(FeatureEncoder(seed=4, artist_dropout=0.2).dropped_rows(train), dropped)
    # Only the dropped rows' artist, similar-song and song-version columns change; the song's own do not.
    np.testing.assert_array_equal(out["categorical"], plain["categorical"])
    np.testing.assert_array_equal(out["numeric"][:, :N_PLAIN], plain["numeric"][:, :N_PLAIN])
    np.testing.assert_array_equal(out["numeric"][~dropped], plain["numeric"][~dropped])
    assert (out["numeric"][dropped, N_PLAIN:] != plain["numeric"][dropped, N_PLAIN:]).any(axis=1).all()
    # What they get is what transform gives a song of an artist the tables lack.
    new = encoder.transform(train[dropped].assign(artist_name="Nobody Known"))["numeric"]
    np.testing.assert_allclose(out["numeric"][dropped, N_PLAIN:], new[:, N_PLAIN:], atol=1e-6)
    assert (out["numeric"][dropped, encoder.feature_names()["numeric"].index("artist_seen")] == 0).all()


def test_artist_dropout_leaves_what_transform_serves_alone(frames):
    train, _, test = frames
    y = train["valence"].to_numpy()
    served = FeatureEncoder().fit(train, y).transform(test)["numeric"]
    encoder = FeatureEncoder(artist_dropout=0.5).fit(train, y)
    np.testing.assert_array_equal(encoder.transform(test)["numeric"], served)
    again = FeatureEncoder.from_state(encoder.to_state())
    assert again.artist_dropout == 0.5


def test_artist_dropout_stays_off_where_a_quarter_of_the_training_rows_read_as_unseen_already():
    # Mostly one track an artist (a small file): over half the rows have no track of their artist in another fold.
    train = make_songs(n_rows=600, n_artists=900)
    y = train["valence"].to_numpy()
    encoder = FeatureEncoder(artist_dropout=0.15)
    seen = encoder.feature_names()["numeric"].index("artist_seen")
    out = encoder.fit_transform(train, y)["numeric"]
    assert encoder.dropped_rows(train).any() and (out[:, seen] == 0).mean() >= 0.25
    np.testing.assert_array_equal(out, FeatureEncoder(artist_dropout=0.0).fit_transform(train, y)["numeric"])


def test_transform_folds_and_looks_up_each_distinct_value_once(frames, fitted, monkeypatch):
    # 3,000 rows of 3 songs: the work of a transform follows the distinct genres, artists and titles, not the
    # rows (a file of 232,725 rows holds a few dozen genres).
    _, _, test = frames
    rows = test.iloc[np.arange(3000) % 3].reset_index(drop=True)
    fitted.transform(rows)  # the vocabulary's folded copy is built on first use
    calls = []
    original = config.normalise_name
    monkeypatch.setattr(config, "normalise_name", lambda text: calls.append(text) or original(text))
    out = fitted.transform(rows)
    assert len(calls) <= 3 * 4  # per distinct row: its genre, its artist, its title (read twice) at most
    np.testing.assert_array_equal(out["categorical"][3:], np.tile(out["categorical"][:3], (999, 1)))


def test_fit_transform_encodes_the_numerics_once(frames, monkeypatch):
    train, _, _ = frames
    calls = []
    original = FeatureEncoder._plain_numeric
    monkeypatch.setattr(FeatureEncoder, "_plain_numeric", lambda self, frame: calls.append(len(frame)) or original(self, frame))
    out = FeatureEncoder().fit_transform(train, train["valence"].to_numpy())
    assert calls == [len(train)]
    np.testing.assert_array_equal(out["numeric"][:, :N_PLAIN], original(FeatureEncoder().fit(train, train["valence"].to_numpy()), train))


def test_a_layout_fit_is_the_schema_of_a_full_fit(frames):
    train, _, test = frames
    y = train["valence"].to_numpy()
    layout = FeatureEncoder().fit_layout(train)
    assert not hasattr(layout, "artist_table_")  # no valence read
    full, lent = FeatureEncoder().fit(train, y), FeatureEncoder().fit(train, y, schema=layout)
    assert as_json(lent.to_state()) == as_json(full.to_state())
    assert layout.n_numeric_ == full.n_numeric_ and layout.category_sizes_ == full.category_sizes_
    with pytest.raises(config.ValenceError, match="empty frame"):
        FeatureEncoder().fit_layout(train.iloc[:0])


def test_rows_of_finds_each_key_as_a_lookup_per_row_would():
    from valence.model.artists import rows_of
    index = {"abba": 0, "bt": 3, "": 7}
    keys = np.array(["bt", "x", "abba", "bt", "", "x"], dtype=object)
    assert rows_of(keys, index).tolist() == [index.get(key, -1) for key in keys]
    assert rows_of(np.array([], dtype=object), index).tolist() == []
    assert rows_of(keys, {}).tolist() == [-1] * len(keys)


def test_sums_by_adds_each_named_track_once_in_its_own_type():
    from valence.model.artists import sums_by
    names = np.array(["b", "a", "", "b", "a", "b"], dtype=object)
    tracks = np.array(["t1", "t2", "t3", "t1", "t4", "t5"], dtype=object)  # t1 listed twice; t3 has no name
    ones, y = np.ones(6), np.array([0.1, 0.2, 0.9, 0.1, 0.4, 0.3])
    features = np.array([1.5, 0.1, 9.0, 1.5, 0.2, 4.5], dtype=np.float32)
    found, sums = sums_by(names, tracks, [ones, y, features])
    assert found.tolist() == ["b", "a"]  # in order of first appearance
    assert sums.dtype == np.float64 and sums[:, 0].tolist() == [2.0, 2.0]
    assert sums[:, 1] == pytest.approx([0.4, 0.6])
    # float32 features add up in float32, as the encoder's tables always held them
    assert sums[:, 2].tolist() == [6.0, float(np.float32(0.1) + np.float32(0.2))] != [6.0, 0.1 + 0.2]
    empty_names, empty_sums = sums_by(np.array([""], dtype=object), np.array(["t"], dtype=object), [np.ones(1)])
    assert len(empty_names) == 0 and empty_sums.shape == (0, 1)
