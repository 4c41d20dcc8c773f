"""GET and POST /explain and GET /search: additive answers, the lookup rules of /predict, errors."""
import pandas as pd
import pytest

from conftest import served

from valence.model.explain import GROUPS

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}


def adds_up(answer):
    """Return |sum of contributions + base value - prediction|."""
    return abs(sum(answer["contributions"].values()) + answer["base_value"] - answer["prediction"])


@pytest.mark.parametrize("query", ["track_id=TWINOTHER0000000000001",
                                   "artist_name=twin%20artist&track_name=Different%20Song"])
def test_get_explains_a_catalog_track_with_the_prediction_of_predict(client, query):
    answer = client.get(f"/explain?{query}").get_json()
    lookup = client.get(f"/predict?{query}").get_json()
    assert answer["track_id"] == "TWINOTHER0000000000001"
    assert list(answer["contributions"]) == list(GROUPS)
    assert answer["prediction"] == pytest.approx(lookup["prediction"], abs=1e-5)
    assert adds_up(answer) < 1e-5
    assert answer["features"]["genre"] == "Pop" and set(answer["features"]) == set(SONG)
    assert answer["warnings"] == lookup["warnings"]
    assert ("other_matches" in answer) == ("artist_name" in query)


def test_a_track_under_two_genres_is_explained_as_the_mean_of_its_listings(app, client):
    answer = client.get("/explain?track_id=DUPLICATE0000000000001").get_json()
    assert answer["genres"] == ["Pop", "Rock"]
    assert answer["prediction"] == pytest.approx(client.get("/predict?track_id=DUPLICATE0000000000001")
                                                 .get_json()["prediction"], abs=1e-5)
    rows = served(app).catalog.song_rows("DUPLICATE0000000000001")
    each = served(app).explainer.explain(rows)
    assert answer["contributions"]["genre"] == pytest.approx(each.contributions[:, GROUPS.index("genre")].mean())
    assert each.contributions[0, GROUPS.index("genre")] != each.contributions[1, GROUPS.index("genre")]
    assert adds_up(answer) < 1e-5


@pytest.mark.parametrize(("query", "status"), [
    ("track_id=NOSUCHTRACK", 404),
    ("artist_name=Twin%20Artist&track_name=Same%20Sogn", 404),
    ("artist_name=Twin%20Artist", 400),
    ("track_id=X&artist_name=Y", 400),
    ("", 400),
])
def test_get_follows_the_lookup_rules_of_predict(client, query, status):
    answer = client.get(f"/explain?{query}")
    assert answer.status_code == status
    assert answer.get_json() == client.get(f"/predict?{query}").get_json()


def test_post_explains_one_song_and_a_list_in_order(client, demo_csv):
    one = client.post("/explain", json=SONG).get_json()
    assert set(one) == {"prediction", "interval", "base_value", "contributions", "warnings"}
    # One forward pass: an explanation's prediction, and its interval, are /predict's to the last digit.
    predicted = client.post("/predict", json=SONG).get_json()
    assert one["prediction"] == predicted["prediction"] and one["interval"] == predicted["interval"]
    assert adds_up(one) < 1e-5
    assert one["contributions"]["artist"] == 0  # no artist_name: an unknown artist, like the background
    known_artist = pd.read_csv(demo_csv)["artist_name"].iloc[0]  # in the training data
    slow = {**SONG, "tempo": 60.0, "genre": "Polka", "artist_name": known_artist}
    many = client.post("/explain", json=[SONG, slow]).get_json()["explanations"]
    # The same song explained alone or in a list: the same answer, up to float rounding of a larger batch.
    assert many[0]["warnings"] == one["warnings"] and many[0]["base_value"] == pytest.approx(one["base_value"], abs=1e-6)
    assert many[0]["prediction"] == pytest.approx(one["prediction"], abs=1e-6)
    assert many[0]["contributions"] == pytest.approx(one["contributions"], abs=1e-6)
    predicted = client.post("/predict", json=[SONG, slow]).get_json()["predictions"]
    assert [answer["prediction"] for answer in many] == [answer["prediction"] for answer in predicted]
    assert many[1]["warnings"] == ["unknown genre 'Polka': predicted as an unseen genre"]
    assert many[1]["contributions"]["tempo"] != one["contributions"]["tempo"]
    assert many[1]["contributions"]["artist"] != 0
    assert adds_up(many[1]) < 1e-5


def test_post_takes_at_most_100_songs_and_refuses_bad_bodies(client):
    assert client.post("/explain", json=[SONG] * 100).status_code == 200
    too_many = client.post("/explain", json=[SONG] * 101)
    assert too_many.status_code == 400 and "1 to 100 songs" in too_many.get_json()["message"]
    bad = client.post("/explain", json={**SONG, "energy": 2}).get_json()
    assert bad["status"] == 400 and bad["errors"] == [{"index": None, "field": "energy",
                                                       "message": "must be a number from 0 to 1"}]
    assert client.post("/explain", data="x", content_type="text/plain").status_code == 415


def test_search_suggests_songs_as_a_name_is_typed(client):
    answer = client.get("/search?q=twin%20ar").get_json()
    assert answer["query"] == "twin ar"
    assert [song["track_id"] for song in answer["results"]] == [
        "TWINHIGH00000000000001", "TWINOTHER0000000000001", "TWINLOW000000000000001"]
    assert answer["results"][1] == {"track_id": "TWINOTHER0000000000001", "artist_name": "Twin Artist",
                                    "track_name": "Different Song", "genres": ["Pop"]}
    assert client.get("/search?q=zzqqxx").get_json()["results"] == []


@pytest.mark.parametrize(("query", "status", "message"), [
    ("", 400, "missing query parameter q"),
    ("q=" + "a" * 1001, 400, "longer than"),
    ("q=a%00b", 400, "control characters"),
])
def test_search_refuses_bad_queries(client, query, status, message):
    answer = client.get(f"/search?{query}")
    assert answer.status_code == status and message in answer.get_json()["message"]


def test_without_a_model_or_catalog_the_routes_say_why(make_app, tmp_path):
    no_model = make_app(model_dir=tmp_path).test_client()
    for answer in (no_model.get("/explain?track_id=X"), no_model.post("/explain", json=SONG),
                   no_model.get("/search?q=ab")):
        assert answer.status_code == 503 and "no model is loaded" in answer.get_json()["message"]
    no_catalog = make_app(catalog=tmp_path / "absent.sqlite").test_client()
    assert no_catalog.get("/search?q=ab").status_code == 503
    assert no_catalog.get("/explain?track_id=X").status_code == 503
    assert no_catalog.post("/explain", json=SONG).status_code == 200



def test_without_a_regression_model_explanations_say_so(mood_app):
    client = mood_app.test_client()
    for answer in (client.get("/explain?track_id=DUPLICATE0000000000001"), client.post("/explain", json=SONG),
                   client.post("/explain", json=[SONG, SONG])):
        assert answer.status_code == 503
        assert answer.get_json()["message"].startswith(
            "no regression model is loaded (regression.safetensors is not in the model folder, which serves moods "
            "only): explanations are of the predicted valence; train one with: python musical_valence_predictor.py")
    assert client.get("/explain?track_id=NOSUCHTRACK").status_code == 404  # the lookup rules still come first
    assert client.get("/search?q=twin").status_code == 200
