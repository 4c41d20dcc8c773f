"""Intervals on every valence (intervals.py) and honest predictions of tracks the model learned from (honest.py)."""
import json

import numpy as np
import pandas as pd
import pytest

from valence.config import TARGET, ValenceError
from valence.data.load import load_dataset
from valence.model.honest import learned_from, leave_own_track_out, plan, track_folds
from valence.model.intervals import GROUPS, Intervals, check_level
from valence.model.predictor import Predictor

N_GENRES, N_PLAIN = 4, 2


def synthetic_rows(n, seed):
    """Encoded-like rows of two groups: artists seen (noise 0.05) and unseen (noise 0.15), four genres."""
    rng = np.random.default_rng(seed)
    seen = rng.random(n) < 0.7
    numeric = np.column_stack([rng.normal(size=(n, N_PLAIN)), seen.astype(np.float32)]).astype(np.float32)
    categorical = rng.integers(0, N_GENRES, size=(n, 1))
    prediction = rng.uniform(0.3, 0.7, n)
    noise = np.where(seen, 0.05, 0.15) * (1 + 0.5 * (categorical[:, 0] == 3))
    valence = prediction + rng.normal(size=n) * noise
    return numeric, categorical, prediction, valence, seen


def fitted(n=6000, seed=0):
    numeric, categorical, prediction, valence, _ = synthetic_rows(n, seed)
    fold = np.arange(n) % 5
    return Intervals.fit(numeric, categorical, prediction, valence, fold, seen_column=N_PLAIN, genre_column=0,
                         n_genres=N_GENRES, n_plain=N_PLAIN)


def test_intervals_cover_the_level_in_each_group_and_are_wider_where_errors_are_larger():
    intervals = fitted()
    numeric, categorical, prediction, valence, seen = synthetic_rows(20000, seed=1)
    arrays = {"numeric": numeric, "categorical": categorical}
    for level in (0.5, 0.8, 0.9):
        low, high = intervals.interval(arrays, prediction, level)
        inside = (valence >= low) & (valence <= high)
        assert abs(inside.mean() - level) < 0.02, level
        for group in (seen, ~seen):
            assert abs(inside[group].mean() - level) < 0.03, level
    low, high = intervals.interval(arrays, prediction, 0.9)
    width = high - low
    assert width[~seen].mean() > 2 * width[seen].mean()  # three times the noise, nearly three times as wide
    wider, narrower = intervals.interval(arrays, prediction, 0.95), intervals.interval(arrays, prediction, 0.8)
    assert np.all(wider[1] - wider[0] >= high - low) and np.all(high - low >= narrower[1] - narrower[0])


def test_intervals_are_crepes_mondrian_normalised_conformal_intervals():
    crepes = pytest.importorskip("crepes")
    numeric, categorical, prediction, valence, _ = synthetic_rows(3000, seed=2)
    intervals = Intervals.fit(numeric, categorical, prediction, valence, np.zeros(3000, dtype=int),
                              seen_column=N_PLAIN, genre_column=0, n_genres=N_GENRES, n_plain=N_PLAIN)
    # One fold: every row's sigma comes from the final weights, as a new song's does.
    arrays = {"numeric": numeric, "categorical": categorical}
    sigma, group = intervals.parts(arrays, prediction)
    reference = crepes.ConformalRegressor().fit(valence - prediction, sigmas=sigma, bins=group)
    test_numeric, test_categorical, test_prediction, _, _ = synthetic_rows(500, seed=3)
    test = {"numeric": test_numeric, "categorical": test_categorical}
    t_sigma, t_group = intervals.parts(test, test_prediction)
    for level in (0.7, 0.9):
        expected = reference.predict_int(test_prediction, sigmas=t_sigma, bins=t_group, confidence=level,
                                         y_min=0, y_max=1)
        low, high = intervals.interval(test, test_prediction, level)
        np.testing.assert_allclose(low, expected[:, 0], atol=1e-6)
        np.testing.assert_allclose(high, expected[:, 1], atol=1e-6)


def test_a_level_per_song_and_the_state_round_trip():
    intervals = fitted()
    numeric, categorical, prediction, _, _ = synthetic_rows(4, seed=4)
    arrays = {"numeric": numeric, "categorical": categorical}
    one_by_one = [intervals.interval({k: v[[i]] for k, v in arrays.items()}, prediction[[i]], level)
                  for i, level in enumerate((0.5, 0.9, 0.99, 0.9))]
    low, high = intervals.interval(arrays, prediction, [0.5, 0.9, 0.99, 0.9])
    np.testing.assert_allclose(low, [a[0][0] for a in one_by_one], atol=1e-12)
    np.testing.assert_allclose(high, [a[1][0] for a in one_by_one], atol=1e-12)
    again = Intervals.from_state(intervals.to_state())
    np.testing.assert_allclose(again.interval(arrays, prediction, 0.9), intervals.interval(arrays, prediction, 0.9),
                               atol=1e-6)
    assert set(intervals.scores) == set(GROUPS)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), True, "0.9", None])
def test_a_level_outside_0_to_1_is_refused_with_what_is_expected(bad):
    with pytest.raises(ValueError, match="between 0 and 1"):
        check_level(bad)


def test_a_served_valence_has_its_interval_in_every_answer(predictor, demo_csv):
    songs, _ = load_dataset(demo_csv)
    result = predictor.predict(songs.head(50), level=0.8)
    assert np.all(result.low <= result.valence) and np.all(result.valence <= result.high)
    assert np.all((result.low >= 0) & (result.high <= 1)) and (result.high - result.low).std() > 0  # adaptive
    assert result.interval(0) == {"level": 0.8, "low": float(result.low[0]), "high": float(result.high[0])}


def test_a_catalog_track_is_predicted_by_a_model_that_never_learned_from_it(trained, demo_csv):
    model_dir, run = trained
    predictor = Predictor.from_model_dir(model_dir)
    bundle = predictor.regression
    frame, _ = load_dataset(demo_csv)
    refs = learned_from(bundle.encoder, frame)
    assert (refs >= 0).all()  # every training row is found among the references
    shifted = frame.assign(**{TARGET: frame[TARGET] + 0.001})
    assert (learned_from(bundle.encoder, shifted) < 0).all()  # another valence: a song it never saw
    assert (learned_from(bundle.encoder, frame.drop(columns=TARGET)) < 0).all()

    honest = predictor.predict(frame, honest=True)
    served = predictor.predict(frame)
    y = frame[TARGET].to_numpy()
    # In-sample, the served model is far better than its out-of-fold figure; the honest one is not.
    oof = run.models["regression"].metrics_record["test_mae"]
    assert np.abs(served.valence - y).mean() < np.abs(honest.valence - y).mean()
    assert np.abs(honest.valence - y).mean() > 0.95 * oof
    # Each honest row: its fold model's networks on statistics without its own track.
    split = bundle.meta["split"]
    fold = track_folds(frame["track_id"].to_numpy(), split["folds"], split["seed"])
    arrays = leave_own_track_out(bundle.encoder, frame, bundle.encoder.transform(frame), refs)
    for j in range(split["folds"]):
        rows = fold == j
        expected = bundle.fold_network(j).predict({k: v[rows] for k, v in arrays.items()})
        np.testing.assert_allclose(honest.valence[rows], expected, atol=1e-6)
    # Songs it never learned from (no valence) keep the served model.
    unlabelled = predictor.predict(frame.drop(columns=TARGET), honest=True)
    np.testing.assert_array_equal(unlabelled.valence, served.valence)


def test_leaving_a_track_out_gives_its_artist_the_statistics_of_the_other_tracks(trained, demo_csv):
    model_dir, _ = trained
    bundle = Predictor.from_model_dir(model_dir).regression
    frame, _ = load_dataset(demo_csv)
    names = bundle.encoder.feature_names()["numeric"]
    count, seen = names.index("artist_log_tracks"), names.index("artist_seen")
    arrays, _ = plan(bundle, frame, bundle.encoder.transform(frame))
    before = bundle.encoder.transform(frame)
    tracks = np.expm1(before["numeric"][:, count])
    np.testing.assert_allclose(np.expm1(arrays["numeric"][:, count]), tracks - 1, atol=1e-3)
    alone = tracks.round() == 1  # an artist's only track: an unseen artist once it is left out
    assert alone.any() and (arrays["numeric"][alone, seen] == 0).all() and (before["numeric"][alone, seen] == 1).all()


def test_the_catalog_answers_honestly_and_explains_the_number_it_answers(client, catalog_csv):
    songs = pd.read_csv(catalog_csv)
    track = songs.iloc[0]
    query = {"artist_name": track["artist_name"], "track_name": track["track_name"]}
    found = client.get("/predict", query_string=query).get_json()
    explained = client.get("/explain", query_string=query).get_json()
    assert explained["prediction"] == pytest.approx(found["prediction"], abs=1e-6)
    assert explained["interval"] == found["interval"]
    total = explained["base_value"] + sum(explained["contributions"].values())
    assert total == pytest.approx(explained["prediction"], abs=1e-5)
    narrow = client.get("/predict", query_string={**query, "level": "0.5"}).get_json()["interval"]
    wide = found["interval"]
    assert narrow["level"] == 0.5 and wide["level"] == 0.9
    assert wide["low"] <= narrow["low"] <= found["prediction"] <= narrow["high"] <= wide["high"]
    bad = client.get("/predict", query_string={**query, "level": "90%"})
    assert bad.status_code == 400 and "level must be a number between 0 and 1" in bad.get_json()["message"]


def test_post_predict_takes_a_level_per_song_or_for_the_query(client, demo_csv):
    song = json.loads(pd.read_csv(demo_csv).drop(columns=["valence", "track_id", "artist_name", "track_name"])
                      .head(1).to_json(orient="records"))[0]
    default = client.post("/predict", json=song).get_json()["interval"]
    by_query = client.post("/predict?level=0.5", json=song).get_json()["interval"]
    by_field = client.post("/predict", json=[dict(song, level=0.5), song]).get_json()["predictions"]
    assert default["level"] == 0.9 and by_query["level"] == 0.5
    # The same songs alone or in a list: the same answer, up to float rounding of a larger batch.
    assert by_field[0]["interval"] == pytest.approx(by_query, abs=1e-6)
    assert by_field[1]["interval"] == pytest.approx(default, abs=1e-6)
    assert by_query["high"] - by_query["low"] < default["high"] - default["low"]
    refused = client.post("/predict", json=dict(song, level=1.0))
    assert refused.status_code == 400 and refused.get_json()["errors"][0]["field"] == "level"


def test_the_command_line_adds_the_interval_columns_at_the_level_asked(trained, demo_csv, tmp_path):
    from valence.training import commands
    from valence.training.settings import RunOptions

    model_dir, _ = trained
    for level in (0.5, 0.95):
        out = tmp_path / f"out{level}.csv"
        commands.score(demo_csv, out, RunOptions(model_dir=model_dir), level=level)
        scored = pd.read_csv(out)
        assert ((scored["valence_low"] <= scored["predicted_valence"])
                & (scored["predicted_valence"] <= scored["valence_high"])).all()
        if level == 0.5:
            narrow = (scored["valence_high"] - scored["valence_low"]).mean()
    assert (scored["valence_high"] - scored["valence_low"]).mean() > narrow
    with pytest.raises(ValenceError, match="between 0 and 1"):
        from valence.model.frames import ValenceModel
        ValenceModel(model_dir).predict(pd.read_csv(demo_csv).head(2), level=2)


def test_rows_without_a_track_id_are_predicted_by_the_served_model(predictor, demo_csv):
    frame, _ = load_dataset(demo_csv)
    no_ids = frame.head(20).drop(columns="track_id")
    np.testing.assert_array_equal(predictor.predict(no_ids, honest=True).valence,
                                  predictor.predict(no_ids).valence)


@pytest.mark.slow  # a build and an explanation: in the slow run, which CI runs
def test_a_learned_catalog_track_is_explained_by_the_number_the_catalog_answers(trained, demo_csv, make_app,
                                                                                 tmp_path):
    from valence.catalog.build import build_catalog

    model_dir, _ = trained
    build_catalog(demo_csv, model_dir, tmp_path / "catalog.sqlite", log=lambda message: None)  # the training file
    client = make_app(catalog=tmp_path / "catalog.sqlite").test_client()
    frame, _ = load_dataset(demo_csv)
    track_id = frame["track_id"].iloc[0]
    rows = frame[frame["track_id"] == track_id]
    predictor = Predictor.from_model_dir(model_dir)
    honest = predictor.predict(rows, honest=True).valence.mean()
    assert honest != pytest.approx(predictor.predict(rows).valence.mean(), abs=1e-4)  # not the served model's
    found = client.get(f"/predict?track_id={track_id}").get_json()
    explained = client.get(f"/explain?track_id={track_id}").get_json()
    assert found["prediction"] == pytest.approx(honest, abs=1e-6)
    assert explained["prediction"] == pytest.approx(found["prediction"], abs=1e-6)
    total = explained["base_value"] + sum(explained["contributions"].values())
    assert total == pytest.approx(found["prediction"], abs=1e-5)
