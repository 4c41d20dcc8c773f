"""Tests of the JSON API: lookups, feature predictions, errors, headers, the OpenAPI document."""
import http.client
import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from flask.cli import FlaskGroup
from werkzeug.serving import make_server

from conftest import served
from schema_check import response_errors
from valence import config
from valence.api.app import SECURITY_HEADERS
from valence.api.schemas import MAX_QUERY_TEXT

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}


def catalog_rows(catalog_csv, track_id):
    """Return the catalog CSV's rows of one track, as the predictor takes them."""
    frame = pd.read_csv(catalog_csv, keep_default_na=False)
    return frame[frame["track_id"] == track_id].reset_index(drop=True)


def predicted(app, frame):
    """Return the app's predictor's answer for a frame (the reference the API must match)."""
    return served(app).predictor.predict(frame)


@pytest.mark.parametrize(("query", "status", "track_id"), [
    ("artist_name=Duo Act&track_name=Shared Song", 200, "DUPLICATE0000000000001"),
    ("artist_name=%20%20duo%20%20%20ACT%20&track_name=shared%20song%20", 200, "DUPLICATE0000000000001"),
    ("track_id=DUPLICATE0000000000001", 200, "DUPLICATE0000000000001"),
    ("artist_name=TWIN ARTIST&track_name=same song", 200, "TWINHIGH00000000000001"),
    ("artist_name=Twin Artist&track_name=Different Song", 200, "TWINOTHER0000000000001"),
    ("artist_name=Duo Act&track_name=Shared Song&unrelated=1", 200, "DUPLICATE0000000000001"),
    ("artist_name=Duo Act&track_name=Missing Song", 404, None),
    ("track_id=NOSUCHTRACK", 404, None),
    ("track_id=duplicate0000000000001", 404, None),  # ids are exact, not case-folded
    ("artist_name=Duo Act", 400, None),
    ("track_name=Shared Song", 400, None),
    ("", 400, None),
    ("track_id=DUPLICATE0000000000001&artist_name=Duo Act", 400, None),
    ("artist_name=" + "a" * (MAX_QUERY_TEXT + 1) + "&track_name=x", 400, None),
    ("artist_name=" + "a" * MAX_QUERY_TEXT + "&track_name=x", 404, None),
])
def test_lookup_table(client, query, status, track_id):
    response = client.get(f"/predict?{query}")
    assert response.status_code == status, response.json
    body = response.get_json()
    if status == 200:
        assert body["track_id"] == track_id
        assert 0 <= body["prediction"] <= 1 and 0 <= body["expected"] <= 1
    else:
        assert body["status"] == status and body["message"]


@pytest.mark.parametrize(("query", "missing"), [
    ("artist_name=A", ["track_name"]), ("track_name=T", ["artist_name"]), ("", ["artist_name", "track_name"])])
def test_lookup_names_missing_parameters(client, query, missing):
    body = client.get(f"/predict?{query}").get_json()
    assert body["missing"] == missing
    assert all(name in body["message"] for name in missing)


def test_duplicate_track_is_one_answer_with_the_mean_prediction(app, client, catalog_csv):
    rows = catalog_rows(catalog_csv, "DUPLICATE0000000000001")
    reference = predicted(app, rows)
    body = client.get("/predict?artist_name=Duo Act&track_name=Shared Song").get_json()
    assert body["genres"] == ["Pop", "Rock"]
    assert body["expected"] == pytest.approx(rows["valence"][0])
    assert body["genre_predictions"] == pytest.approx(dict(zip(rows["genre"], reference.valence.tolist())), rel=1e-5)
    assert body["prediction"] == pytest.approx(reference.valence.mean(), rel=1e-5)
    assert body["mood_probabilities"] == pytest.approx(
        dict(zip(config.CLASS_NAMES, reference.mood_probabilities.mean(axis=0).tolist())), rel=1e-5)
    assert body["mood"] == max(body["mood_probabilities"], key=body["mood_probabilities"].get)
    assert body["other_matches"] == []


def test_same_names_answer_the_most_popular_and_list_the_others(client):
    bodies = [client.get("/predict?artist_name=twin artist&track_name=SAME  SONG").get_json() for _ in range(3)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["track_id"] == "TWINHIGH00000000000001"
    assert [match["track_id"] for match in bodies[0]["other_matches"]] == ["TWINLOW000000000000001"]
    assert bodies[0]["other_matches"][0]["genres"] == ["Pop"]


def test_catalog_track_of_an_unknown_genre_carries_a_warning(client):
    body = client.get("/predict?track_id=POLKA00000000000000001").get_json()
    assert body["genres"] == ["Polka"]
    assert any("Polka" in warning for warning in body["warnings"])


@pytest.mark.parametrize(("artist", "track", "suggested"), [
    ("Twin Artist", "Same Sogn", "TWINHIGH00000000000001"),  # known artist, misspelt track
    ("Duo Akt", "Shared Song", "DUPLICATE0000000000001"),  # misspelt artist, exact track
    ("Duo Akt", "Shared Sing", "DUPLICATE0000000000001"),  # both misspelt
])
def test_not_found_suggests_close_tracks(client, artist, track, suggested):
    response = client.get("/predict", query_string={"artist_name": artist, "track_name": track})
    assert response.status_code == 404
    assert suggested in [s["track_id"] for s in response.json["suggestions"]]
    assert len(response.json["suggestions"]) <= 5


def test_post_one_song_matches_the_predictor(app, client):
    response = client.post("/predict", json=SONG)
    assert response.status_code == 200
    reference = predicted(app, pd.DataFrame([SONG]))
    assert response.json["prediction"] == pytest.approx(float(reference.valence[0]), rel=1e-5)
    assert response.json["mood"] == reference.mood[0]
    assert response.json["warnings"] == []


def test_post_list_keeps_order_passes_artist_and_warns_on_unknown_genre(app, client):
    songs = [dict(SONG, danceability=d / 10, energy=1 - d / 10) for d in range(10)]
    songs[3] = dict(songs[3], genre="Polka")
    songs[5] = dict(songs[5], artist_name="Duo Act")
    answers = client.post("/predict", json=songs).json["predictions"]
    reference = predicted(app, pd.DataFrame(songs).fillna({"artist_name": ""}))
    assert [a["prediction"] for a in answers] == pytest.approx(reference.valence.tolist(), rel=1e-5)
    assert [a["mood"] for a in answers] == reference.mood
    assert [bool(a["warnings"]) for a in answers] == [i in (3, 5) for i in range(10)]
    assert "Polka" in answers[3]["warnings"][0]
    assert answers[5]["warnings"] == ["unknown artist_name 'Duo Act': predicted as an unseen artist"]


def bad_songs(**changes):
    """Return SONG with some fields changed; a value of ... removes the field."""
    song = dict(SONG, **changes)
    return {name: value for name, value in song.items() if value is not ...}


@pytest.mark.parametrize(("body", "errors"), [
    (bad_songs(tempo="120"), {(None, "tempo")}),
    (bad_songs(tempo=True), {(None, "tempo")}),
    (bad_songs(tempo=401), {(None, "tempo")}),
    (bad_songs(loudness=None), {(None, "loudness")}),
    (bad_songs(duration_ms=0), {(None, "duration_ms")}),
    (bad_songs(popularity=10 ** 400), {(None, "popularity")}),
    (bad_songs(key="H"), {(None, "key")}),
    (bad_songs(mode="dorian"), {(None, "mode")}),  # "major" is read as Major, as in a CSV
    (bad_songs(time_signature=8), {(None, "time_signature")}),  # Spotify's 3 to 7 (and 0, 1) are read
    (bad_songs(genre=""), {(None, "genre")}),
    (bad_songs(genre=["Pop"]), {(None, "genre")}),
    (bad_songs(energy=...), {(None, "energy")}),
    (bad_songs(danceabilty=0.5), {(None, "danceabilty")}),
    (bad_songs(artist_name=7), {(None, "artist_name")}),
    (bad_songs(valence=2), {(None, "valence")}),
    ([SONG, bad_songs(key=...), SONG, bad_songs(tempo=-1, mode="x")], {(1, "key"), (3, "tempo"), (3, "mode")}),
    ([SONG, "a song"], {(1, None)}),
])
def test_post_bad_fields_are_listed_by_index_and_name(client, body, errors):
    response = client.post("/predict", json=body)
    assert response.status_code == 400
    assert {(e["index"], e["field"]) for e in response.json["errors"]} == errors
    assert "nothing was predicted" in response.json["message"]


BODIES = {
    "json as text/plain": (json.dumps(SONG), "text/plain", 415),
    "no content type": (json.dumps(SONG), None, 415),
    "invalid json": ("{not json", "application/json", 400),
    "NaN literal": ('{"tempo": NaN}', "application/json", 400),
    "empty list": ("[]", "application/json", 400),
    "a string": ('"a string"', "application/json", 400),
    "null": ("null", "application/json", 400),
    "invalid utf-8": (b"\xff\xfe\xfa", "application/json", 400),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "application/json", 400),
    "1001 songs": (json.dumps([SONG] * 1001), "application/json", 400),
    "over 1 MiB": (" " * (1024 * 1024 + 1), "application/json", 413),
    "1000 songs": (json.dumps([SONG] * 1000), "application/json", 200),
    "charset parameter": (json.dumps(SONG), "application/json; charset=utf-8", 200),
}


@pytest.mark.parametrize(("data", "content_type", "status"), BODIES.values(), ids=BODIES.keys())
def test_post_body_table(client, data, content_type, status):
    response = client.post("/predict", data=data, content_type=content_type)
    assert response.status_code == status, response.json
    assert response.is_json
    if status != 200:
        assert response.json["status"] == status


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404), ("GET", "/predict/", 404), ("DELETE", "/predict", 405),
    ("PUT", "/health", 405), ("POST", "/model", 405), ("GET", "/health", 200),
])
def test_every_answer_is_json_with_security_headers(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert "<html" not in response.get_data(as_text=True).lower()
    for name, value in SECURITY_HEADERS:
        assert response.headers.getlist(name) == [value]
    if status == 405:
        assert "GET" in response.headers["Allow"] and response.json["status"] == 405
        allowed = response.headers.getlist("Allow")
        assert len(allowed) == 1 and allowed[0].split(", ") == sorted(allowed[0].split(", "))


def test_unexpected_failure_is_a_json_500_without_traceback(make_app):
    app = make_app()

    def boom():
        raise RuntimeError("secret internals")
    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.json["status"] == 500
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    assert not app.debug


def test_without_a_model_health_says_why_and_predictions_say_how_to_train(make_app, tmp_path):
    client = make_app(model_dir=tmp_path).test_client()
    health = client.get("/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    assert not health.json["model"]["loaded"] and "regression.safetensors" in health.json["model"]["error"]
    for response in (client.get("/predict?track_id=X"), client.post("/predict", json=SONG), client.get("/model")):
        assert response.status_code == 503
        assert "python musical_valence_predictor.py" in response.json["message"]


def test_a_model_folder_outside_the_project_is_named_by_its_setting_not_a_wrong_path(make_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my models").mkdir()
    client = make_app(model_dir="my models", catalog=tmp_path / "my models" / "catalog.sqlite").test_client()
    error = client.get("/health").json["model"]["error"]
    assert error.startswith("neither regression.safetensors nor classification.safetensors is in the model folder; "
                            "train one with: ")
    assert error.endswith("train one with: python musical_valence_predictor.py --model-dir DIR "
                          "(DIR is the server's VALENCE_MODEL_DIR)")
    for response in (client.post("/predict", json=SONG), client.get("/predict?track_id=X"), client.get("/model")):
        assert response.status_code == 503 and "--model-dir DIR (DIR is the server's VALENCE_MODEL_DIR)" in response.json["message"]
        assert str(tmp_path) not in response.get_data(as_text=True)


def test_a_refused_model_file_is_named_without_its_folder(make_app, tmp_path):
    (tmp_path / "regression.safetensors").write_bytes(b"not a model")
    client = make_app(model_dir=tmp_path).test_client()
    error = client.get("/health").json["model"]["error"]
    assert error.startswith("regression.safetensors is not a valid model bundle") and str(tmp_path) not in error
    message = client.post("/predict", json=SONG).json["message"]
    assert "regression.safetensors is not a valid model bundle" in message and str(tmp_path) not in message


def test_a_folder_of_an_earlier_version_s_bundles_is_named_as_such(make_app, tmp_path):
    (tmp_path / "regression.pt").write_bytes(b"PK\x03\x04 an earlier version's torch file")
    error = make_app(model_dir=tmp_path).test_client().get("/health").json["model"]["error"]
    assert error.startswith("regression.pt was saved by an earlier version of this tool")
    assert "train again with" in error and "neither" not in error


def test_a_missing_catalog_is_named_without_its_folder(make_app, tmp_path):
    health = make_app(catalog=tmp_path / "absent.sqlite").test_client().get("/health").json
    assert health["catalog"]["error"].startswith("no catalog at absent.sqlite; build it with: ")
    assert str(tmp_path) not in health["catalog"]["error"]


def test_a_catalog_row_with_a_long_track_name_can_be_sent_back(client):
    # The real slice holds a 208-character title; the old limit of 200 refused it.
    title = ("Tout est possible (par Anggun, Dany Brillant, Garou, Gérard Lenorman, Julie Zenatti, Lorie, "
             "Natasha St-Pier, Patrick Fiori, Roch Voisine, Tina Arena et les autres artistes réunis pour la bonne cause, 2004)")
    row = dict(SONG, artist_name="Les Enfoirés", track_name=title, track_id="0BRjO6ga9RKCKjfDqeFgWV", valence=0.8)
    assert len(title) > 200
    response = client.post("/predict", json=[row, dict(row, track_name=title * 4)])
    assert response.status_code == 200 and len(response.json["predictions"]) == 2


def test_without_a_catalog_lookups_503_and_posts_still_predict(make_app, tmp_path):
    client = make_app(catalog=tmp_path / "absent.sqlite").test_client()
    assert client.get("/health").json["catalog"]["loaded"] is False
    response = client.get("/predict?artist_name=Duo Act&track_name=Shared Song")
    assert response.status_code == 503 and "--build-catalog" in response.json["message"]
    assert client.post("/predict", json=SONG).status_code == 200


def test_regression_only_answers_have_no_mood(make_app, trained, tmp_path):
    shutil.copy(config.bundle_path(trained[0], "regression"), tmp_path)
    client = make_app(model_dir=tmp_path).test_client()
    assert "mood" not in client.post("/predict", json=SONG).json
    assert "mood" not in client.get("/predict?track_id=DUPLICATE0000000000001").json
    assert client.get("/health").json["model"]["classification"] is False


def test_classification_only_answers_have_moods_and_no_valence(mood_app, make_app):
    client, both = mood_app.test_client(), make_app().test_client()  # both: the same classifier with a regressor
    health = client.get("/health").json
    assert health["status"] == "ok" and health["catalog"]["loaded"] is True
    assert health["model"] == {"loaded": True, "regression": False, "classification": True,
                               "version": health["catalog"]["model_version"], "error": None}
    assert client.get("/health/ready").status_code == 200
    answer, reference = client.post("/predict", json=SONG).json, both.post("/predict", json=SONG).json
    assert answer["prediction"] is None and answer["warnings"] == reference["warnings"]
    assert answer["mood"] == reference["mood"]
    assert answer["mood_probabilities"] == pytest.approx(reference["mood_probabilities"])
    listed = client.post("/predict", json=[SONG, dict(SONG, genre="Polka")]).json["predictions"]
    assert [one["prediction"] for one in listed] == [None, None]
    assert listed[1]["warnings"] == ["unknown genre 'Polka': predicted as an unseen genre"]
    track = client.get("/predict?artist_name=duo act&track_name=shared song").json
    expected = both.get("/predict?track_id=DUPLICATE0000000000001").json
    assert track["prediction"] is None and track["genre_predictions"] == {"Pop": None, "Rock": None}
    assert track["mood"] == expected["mood"] and track["expected"] == expected["expected"]
    assert track["mood_probabilities"] == pytest.approx(expected["mood_probabilities"])
    assert set(client.get("/model").json) == {"classification"}


def test_classification_only_answers_match_the_openapi_document(mood_app):
    client = mood_app.test_client()
    document = client.get("/openapi.json").json
    for method, url, body in SAMPLES:
        response = client.open(url, method=method, json=body)
        assert response.status_code != 500, (method, url, response.json)
        assert response_errors(document, url.split("?")[0], method, response) == []


def test_config_comes_from_environment_then_test_config(monkeypatch, trained, served_catalog, tmp_path):
    from musical_valence_predictor import create_app

    monkeypatch.setenv("VALENCE_CATALOG", str(served_catalog))
    monkeypatch.setenv("VALENCE_MODEL_DIR", str(trained[0]))
    assert create_app().extensions["valence"].current().store is not None
    app = create_app({"VALENCE_CATALOG": str(tmp_path / "absent.sqlite")})
    assert app.config["VALENCE_MODEL_DIR"] == str(trained[0]) and app.extensions["valence"].current().store is None


def test_model_metadata(client, trained):
    body = client.get("/model").json
    assert set(body) == {"regression", "classification"}
    assert body["regression"]["metrics"]["test_mae"] == pytest.approx(trained[1].models["regression"].metrics_record["test_mae"])


def test_flask_routes_command_lists_the_api(app, runner):
    result = runner.invoke(FlaskGroup(create_app=lambda: app), ["routes"])
    assert "/predict" in result.output and "/openapi.json" in result.output


def test_openapi_documents_exactly_the_routes(app, client):
    document = client.get("/openapi.json").json
    # Flask writes a path parameter <name>, OpenAPI {name}.
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"} if not rule.endpoint.startswith("page.")}
    page = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("page.")}
    assert page == {"/", "/static/<path:filename>"}  # the page for people, not part of the API
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented


SAMPLES = [("GET", "/predict?artist_name=Duo Act&track_name=Shared Song", None),
           ("GET", "/predict?artist_name=twin artist&track_name=same song", None),
           ("GET", "/predict?track_id=POLKA00000000000000001", None),
           ("GET", "/predict?artist_name=Nobody&track_name=Nothing", None),
           ("GET", "/predict?artist_name=Nobody", None),
           ("POST", "/predict", SONG), ("POST", "/predict", [SONG, dict(SONG, genre="Polka")]),
           ("POST", "/predict", [dict(SONG, tempo="x")]), ("POST", "/predict", {}),
           ("GET", "/explain?track_id=DUPLICATE0000000000001", None),
           ("GET", "/explain?artist_name=twin artist&track_name=same song", None),
           ("GET", "/explain?artist_name=Nobody&track_name=Nothing", None),
           ("POST", "/explain", SONG), ("POST", "/explain", [SONG, dict(SONG, genre="Polka")]),
           ("POST", "/explain", [SONG] * 101), ("GET", "/search?q=twin", None), ("GET", "/search", None),
           ("GET", "/health", None), ("GET", "/model", None), ("GET", "/openapi.json", None)]


@pytest.mark.parametrize(("method", "url", "body"), SAMPLES)
def test_answers_match_the_openapi_document(client, method, url, body):
    document = client.get("/openapi.json").json
    response = client.open(url, method=method, json=body)
    assert response_errors(document, url.split("?")[0], method, response) == []


def test_answers_without_model_match_the_openapi_document(make_app, tmp_path):
    client = make_app(model_dir=tmp_path).test_client()
    document = client.get("/openapi.json").json
    for method, url, body in SAMPLES:
        response = client.open(url, method=method, json=body)
        assert response_errors(document, url.split("?")[0], method, response) == []


def test_openapi_song_schema_accepts_what_validation_accepts(client):
    document = client.get("/openapi.json").json
    song = document["components"]["schemas"]["Song"]
    assert set(song["required"]) == set(config.FEATURE_COLUMNS)
    assert song["properties"]["key"]["examples"] == list(config.KEYS)
    assert song["properties"]["tempo"]["maximum"] == config.NUMERIC_RANGES["tempo"][1]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=10)


@pytest.mark.slow  # 50 bodies, a second and a half: in the slow run, which CI runs too
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | st.fixed_dictionaries({name: json_values for name in SONG}))
def test_any_json_body_is_answered_200_or_400(client, body):
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 400) and response.is_json


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
def test_concurrent_requests_each_get_their_own_answer(app, client):
    queries = [f"/predict?track_id={tid}" for tid in ("DUPLICATE0000000000001", "TWINHIGH00000000000001",
                                                       "TWINLOW000000000000001", "POLKA00000000000000001")]
    songs = [dict(SONG, energy=e / 20) for e in range(20)]
    expected = {q: client.get(q).json for q in queries}
    expected.update({i: client.post("/predict", json=song).json for i, song in enumerate(songs)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def ask(n):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        key = queries[n % len(queries)] if n % 2 else n % len(songs)
        if n % 2:
            connection.request("GET", key.replace(" ", "%20"))
        else:
            connection.request("POST", "/predict", json.dumps(songs[key]), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return key, answer.status, json.loads(answer.read())

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(ask, range(200)))
    finally:
        server.shutdown()
    assert all(status == 200 for _, status, _ in results)
    assert all(body == expected[key] for key, _, body in results)


# ---- issue 13: lookup parameters ----------------------------------------------------------------

@pytest.mark.parametrize(("query", "message"), [
    ("artist_name=&track_name=Shared Song", "query parameter artist_name is empty"),
    ("artist_name=Duo Act&track_name=%20%20", "query parameter track_name is empty"),
    ("track_id=", "query parameter track_id is empty"),
    ("track_id=%09", "query parameter track_id is empty"),
    ("track_id=A&track_id=B", "query parameter track_id is given more than once"),
    ("artist_name=Duo Act&artist_name=Duo Act&track_name=Shared Song",
     "query parameter artist_name is given more than once"),
])
def test_lookup_refuses_empty_and_repeated_parameters(client, query, message):
    response = client.get(f"/predict?{query}")
    assert response.status_code == 400 and message in response.json["message"], response.json
    assert response_errors(client.get("/openapi.json").json, "/predict", "get", response) == []


def test_lookup_track_id_ignores_surrounding_spaces_as_names_do(client):
    exact = client.get("/predict?track_id=DUPLICATE0000000000001")
    assert exact.status_code == 200
    assert client.get("/predict?track_id=%20DUPLICATE0000000000001%09").json == exact.json


# ---- issue 13: key and mode spelt as a CSV cell may spell them ---------------------------------

@pytest.mark.parametrize(("key", "mode"), [("c#", "major"), (" Db ", "MAJOR"), ("1", "1"), ("c#", "1.0")])
def test_post_reads_key_and_mode_as_the_csv_reader_does(client, key, mode):
    canonical = client.post("/predict", json={**SONG, "key": "C#", "mode": "Major"})
    answer = client.post("/predict", json={**SONG, "key": key, "mode": mode})
    assert answer.status_code == 200 and answer.json == canonical.json
    assert answer.json["warnings"] == []


@pytest.mark.parametrize(("field", "value"), [("key", "H"), ("key", "12"), ("key", "E#"), ("key", -1),
                                              ("mode", "2"), ("mode", "dorian"), ("mode", "")])
def test_post_refuses_a_key_or_mode_no_csv_cell_could_mean(client, field, value):
    response = client.post("/predict", json={**SONG, field: value})
    assert response.status_code == 400
    assert [(e["field"], e["message"].split(" (")[0]) for e in response.json["errors"]] == [
        (field, f"must be one of {', '.join(config.KEYS if field == 'key' else config.MODES)}")]


# ---- issue 13: an artist the model never saw ----------------------------------------------------

def test_post_matches_artists_as_typed_and_warns_about_one_the_model_never_saw(app, client):
    known = sorted(served(app).predictor.regression.encoder.artist_table_)[0]
    answers = client.post("/predict", json=[{**SONG, "artist_name": known}, {**SONG, "artist_name": f"  {known.upper()} "},
                                            {**SONG, "artist_name": "Nobody Heard Of"}, SONG]).json["predictions"]
    assert answers[0]["prediction"] == answers[1]["prediction"] != answers[2]["prediction"]
    assert [a["warnings"] for a in answers] == [
        [], [], ["unknown artist_name 'Nobody Heard Of': predicted as an unseen artist"], []]


# ---- GET /predict: the headers and the 404's suggestions of a lookup ----

def test_lookups_carry_the_request_id_security_headers_and_model_version(app, client):
    response = client.get("/predict?track_id=DUPLICATE0000000000001", headers={"X-Request-ID": "lookup-1"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "lookup-1"
    assert all(response.headers[name] == value for name, value in SECURITY_HEADERS)
    assert response.headers["X-Model-Version"] == served(app).version
    assert response.mimetype == "application/json" and response.get_data() == (
        json.dumps(response.json, separators=(",", ":")).encode() + b"\n")  # compact, as jsonify writes it


def test_a_track_not_found_is_suggested_for_once(app, client, monkeypatch):
    store, calls = type(served(app).catalog), []
    original = store.suggest
    monkeypatch.setattr(store, "suggest", lambda self, *names: calls.append(names) or original(self, *names))
    response = client.get("/predict?artist_name=Duo Act&track_name=Shred Song")
    assert response.status_code == 404 and response.json["suggestions"]
    assert calls == [("Duo Act", "Shred Song")]


def test_browsers_are_sent_to_the_page_and_an_unknown_id_gets_no_suggestions(app, client):
    page = client.get("/predict?track_id=DUPLICATE0000000000001", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert client.get("/predict?track_id=NOSUCHTRACK").json["suggestions"] == []
