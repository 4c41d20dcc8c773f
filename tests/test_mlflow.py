"""Tests of valence.api.mlflow_routes: POST /invocations in MLflow's scoring protocol, JSON and CSV."""
import csv
import io
import json
import re

import pandas as pd
import pytest

from schema_check import response_errors
from valence.api import mlflow_routes
from valence.config import FEATURE_COLUMNS
from valence.data.synthetic import generate_dataset, write_csv
from valence.model.predict_file import score_csv

SONG = {"genre": "Pop", "popularity": 60, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 210000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}
SONGS = [SONG, dict(SONG, genre="Polka", energy=0.2, artist_name="Somebody"), dict(SONG, key="a#", mode=0)]
COLUMNS = ["valence", "valence_low", "valence_high", "mood", "p_sad", "p_neutral", "p_happy", "warnings", "reason"]


def split_of(songs):
    """Return songs as pandas' DataFrame.to_dict(orient="split") writes them (what MLflow's client sends)."""
    frame = pd.DataFrame(songs)
    return json.loads(frame.to_json(orient="split"))


def as_predict(answer):
    """Return a POST /invocations prediction in POST /predict's terms, for comparison."""
    return {"prediction": answer["valence"],
            "interval": {"level": 0.9, "low": answer["valence_low"], "high": answer["valence_high"]},
            "mood": answer["mood"],
            "mood_probabilities": {name: answer[f"p_{name}"] for name in ("sad", "neutral", "happy")},
            "warnings": answer["warnings"]}


@pytest.mark.parametrize("body", [
    {"dataframe_split": split_of(SONGS)},
    {"dataframe_split": {"columns": list(SONG), "data": [list(song.get(c) for c in SONG) for song in SONGS[:1]]}},
    {"dataframe_records": SONGS},
    {"instances": SONGS},
    {"inputs": SONGS, "params": {"ignored": 1}},
    {"instances": {name: [song.get(name) for song in SONGS[:1]] for name in SONG}},
], ids=["split", "split-no-index", "records", "instances", "inputs-params", "instances-columnar"])
def test_every_mlflow_json_shape_answers_as_post_predict(client, app, body):
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.json
    assert response_errors(client.get("/openapi.json").json, "/invocations", "POST", response) == []
    predictions = response.json["predictions"]
    songs = SONGS if len(predictions) == 3 else SONGS[:1]
    expected = client.post("/predict", json=songs).json["predictions"]
    assert [list(answer) for answer in predictions] == [COLUMNS] * len(songs)
    assert [as_predict(answer) for answer in predictions] == expected
    assert all(answer["reason"] == "" for answer in predictions)
    if len(songs) == 3:
        assert predictions[1]["warnings"] == expected[1]["warnings"] and predictions[1]["warnings"]


def test_bad_songs_are_refused_with_post_predict_s_messages(client):
    bad = [SONG, dict(SONG, danceability="high", key="H"), {k: v for k, v in SONG.items() if k != "tempo"}]
    expected = client.post("/predict", json=bad).json
    for body in ({"dataframe_records": bad}, {"instances": bad}):
        response = client.post("/invocations", json=body)
        assert response.status_code == 400 and response.json == expected
    split = client.post("/invocations", json={"dataframe_split": {"columns": list(SONG) + ["danceabilty"],
                                                                  "data": [list(SONG.values()) + [0.5]]}})
    assert split.status_code == 400
    assert split.json["errors"] == [{"index": 0, "field": "danceabilty", "message": "is not a known field"}]


@pytest.mark.parametrize("body, message", [
    ({}, "exactly one of dataframe_split, dataframe_records, instances or inputs"),
    ([SONG], "got a JSON array"),
    ({"dataframe_records": [SONG], "instances": [SONG]}, "got an object with 'dataframe_records', 'instances'"),
    ({"dataframe_records": [SONG], "extra": 1}, "got an object with 'dataframe_records', 'extra'"),
    ({"dataframe_records": SONG}, "dataframe_records must be a list of songs (JSON objects), not a JSON object"),
    ({"instances": "x"}, "instances must be a list of songs"),
    ({"dataframe_records": [SONG], "params": []}, "params must be a JSON object"),
    ({"dataframe_split": {"columns": ["genre"], "data": [["Pop", 1]]}},
     "dataframe_split.data row 0 has 2 values for 1 columns"),
    ({"dataframe_split": {"columns": ["genre", "genre"], "data": [["Pop", "Pop"]]}}, "names 'genre' twice"),
    ({"dataframe_split": {"columns": [1], "data": [[1]]}}, "columns must be a list of field names"),
    ({"dataframe_split": {"columns": ["genre"], "data": []}}, "must hold 1 to 1000 songs, not 0"),
    ({"dataframe_split": {"columns": ["genre"], "data": [["Pop"]], "index": [0, 1]}}, "as long as data (1)"),
    ({"dataframe_split": {"columns": ["genre"], "data": [["Pop"]], "dtypes": {}}}, "not 'dtypes'"),
    ({"instances": {"genre": ["Pop", "Rock"], "tempo": [120.0]}}, "the lengths are 1, 2"),
    ({"inputs": {"genre": "Pop"}}, "inputs.genre must be a list of values"),
    ({"dataframe_records": [SONG] * 1001}, "a list must hold 1 to 1000 songs, not 1001"),
])
def test_bodies_not_in_mlflow_s_shapes_are_a_400_that_says_why(client, body, message):
    response = client.post("/invocations", json=body)
    assert response.status_code == 400 and message in response.json["message"], response.json


@pytest.mark.parametrize("content_type, status", [("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                                                  ("application/json", 400)])
def test_other_content_types_are_a_415(client, content_type, status):
    response = client.post("/invocations", data=b"genre\nPop\n", content_type=content_type)
    assert response.status_code == status and response.json["status"] == status


@pytest.fixture(scope="module")
def songs_csv(tmp_path_factory):
    """Return a 40-song CSV in the Kaggle schema with two bad rows (lines 5 and 9) and its text."""
    path = tmp_path_factory.mktemp("invocations") / "songs.csv"
    frame = generate_dataset(40, seed=3).astype({"danceability": object})
    frame.loc[3, "danceability"] = "lots"
    frame.loc[7, "tempo"] = -5
    write_csv(frame, path)
    return path


def test_a_csv_body_is_scored_as_predict_scores_the_file(client, app, songs_csv, trained, tmp_path, predictor):
    response = client.post("/invocations", data=songs_csv.read_bytes(), content_type="text/csv")
    assert response.status_code == 200, response.json
    assert response_errors(client.get("/openapi.json").json, "/invocations", "POST", response) == []
    predictions = response.json["predictions"]
    assert len(predictions) == 40
    score_csv(songs_csv, tmp_path / "out.csv", predictor)
    expected = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    bad = {i: answer["reason"] for i, answer in enumerate(predictions) if answer["reason"]}
    assert sorted(bad) == [3, 7]
    assert re.fullmatch(r"line 5: .*danceability.*", bad[3]) and bad[3] == f"line 5: {expected['reason'][3]}"
    assert bad[7] == f"line 9: {expected['reason'][7]}" and "tempo" in bad[7]
    for i, answer in enumerate(predictions):
        if i in bad:
            assert answer["valence"] is None and answer["mood"] is None and answer["warnings"] == []
        else:
            assert abs(answer["valence"] - float(expected["predicted_valence"][i])) <= 0.00005
            assert answer["mood"] == expected["predicted_mood"][i]


def test_a_csv_of_the_feature_columns_alone_answers_csv_when_asked(client, songs_csv):
    features = pd.read_csv(songs_csv)[list(FEATURE_COLUMNS)].iloc[10:15].to_csv(index=False)
    as_json = client.post("/invocations", data=features, content_type="text/csv").json["predictions"]
    response = client.post("/invocations", data=features, content_type="text/csv", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == COLUMNS and len(rows) == 5
    assert [float(row["valence"]) for row in rows] == [answer["valence"] for answer in as_json]
    assert [row["mood"] for row in rows] == [answer["mood"] for answer in as_json]
    json_songs = client.post("/invocations", json={"dataframe_records": [SONG]}, headers={"Accept": "text/csv"})
    assert json_songs.mimetype == "text/csv" and json_songs.get_data(as_text=True).startswith(",".join(COLUMNS))


@pytest.mark.parametrize("body, message", [
    (b"", "the CSV body is empty: expected a CSV file whose first line is the header genre,"),
    (",".join(FEATURE_COLUMNS).encode() + b"\n", "it has a header but no data rows"),
    (b"genre,tempo\nPop,120\n", "the CSV body"),
    (",".join(FEATURE_COLUMNS).encode() + b"\nPop,1,2\nRock,x\n", "2 bad rows"),
])
def test_a_csv_body_without_a_row_to_score_is_a_400_naming_lines(client, body, message):
    response = client.post("/invocations", data=body, content_type="text/csv")
    assert response.status_code == 400 and message in response.json["message"], response.json
    assert "/tmp" not in response.json["message"] and "body.csv" not in response.json["message"]


def test_bad_rows_are_named_by_line_in_the_400(client):
    body = ",".join(FEATURE_COLUMNS) + "\nPop,1,2\nRock,x\n"
    message = client.post("/invocations", data=body, content_type="text/csv").json["message"]
    assert "line 2: truncated row" in message and "line 3: truncated row" in message


def test_csv_bodies_over_the_limits_are_a_413(client, songs_csv, monkeypatch):
    monkeypatch.setattr(mlflow_routes, "MAX_CSV_SONGS", 39)
    response = client.post("/invocations", data=songs_csv.read_bytes(), content_type="text/csv")
    assert response.status_code == 413 and "more than 39 songs" in response.json["message"]
    monkeypatch.setattr(mlflow_routes, "MAX_CSV_BYTES", 1000)
    response = client.post("/invocations", data=songs_csv.read_bytes(), content_type="text/csv")
    size = len(songs_csv.read_bytes())
    assert response.status_code == 413
    assert f"at most 39 songs in 1,000 bytes (this one has {size:,} bytes)" in response.json["message"]


@pytest.mark.slow  # half a second or more: in the slow run, which CI runs
def test_a_csv_body_may_be_larger_than_a_json_body(client, app, tmp_path):
    path = tmp_path / "many.csv"
    write_csv(generate_dataset(8_000, seed=5), path)
    assert path.stat().st_size > app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/invocations", data=path.read_bytes(), content_type="text/csv",
                           headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.get_data(as_text=True).count("\n") == 8_001


def test_a_classification_only_model_answers_moods_without_valence(mood_app):
    response = mood_app.test_client().post("/invocations", json={"dataframe_records": [SONG]})
    assert list(response.json["predictions"][0]) == COLUMNS[3:]
    assert response_errors(mood_app.test_client().get("/openapi.json").json, "/invocations", "POST", response) == []


def test_without_a_model_it_is_a_503_saying_how_to_train(make_app, tmp_path):
    response = make_app(model_dir=tmp_path).test_client().post("/invocations", json={"instances": [SONG]})
    assert response.status_code == 503 and "train one with" in response.json["message"]


def test_invocations_are_logged_and_counted_under_their_route(make_app, capfd):
    app = make_app()
    client = app.test_client()
    capfd.readouterr()
    client.post("/invocations", json={"instances": SONGS}, headers={"X-Request-ID": "m1"})
    client.post("/invocations", data=",".join(FEATURE_COLUMNS) + "\nPop,1\n", content_type="text/csv",
                headers={"X-Request-ID": "m2"})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert [(line["request_id"], line["route"], line["status"], line.get("songs")) for line in lines] == [
        ("m1", "/invocations", 200, 3), ("m2", "/invocations", 400, None)]
    scrape = client.get("/metrics").get_data(as_text=True)
    assert 'valence_http_requests_total{method="POST",route="/invocations",status="200"} 1.0' in scrape
    assert 'valence_http_requests_total{method="POST",route="/invocations",status="400"} 1.0' in scrape


@pytest.mark.slow
def test_a_csv_of_100_000_songs_is_scored_and_one_more_is_a_413(make_app, tmp_path):
    client = make_app(VALENCE_LOG_REQUESTS=False).test_client()
    path = tmp_path / "large.csv"
    write_csv(generate_dataset(100_001, seed=9), path)
    body = path.read_bytes()
    last = body.rindex(b"\n", 0, len(body) - 1) + 1  # the start of the 100,001st song's line
    response = client.post("/invocations", data=body[:last], content_type="text/csv")
    assert response.status_code == 200
    predictions = response.json["predictions"]
    assert len(predictions) == 100_000 and all(answer["reason"] == "" for answer in predictions)
    assert all(0 <= answer["valence"] <= 1 for answer in predictions)
    response = client.post("/invocations", data=body, content_type="text/csv")
    assert response.status_code == 413 and "more than 100,000 songs" in response.json["message"]


# ---- ?format=predict: the file --predict writes, and its summary (the page's "Score a file") ------------------------

def test_format_predict_answers_the_file_predict_writes_and_a_summary(client, app, songs_csv, tmp_path, predictor):
    frame = pd.read_csv(songs_csv, keep_default_na=False, dtype=str)
    frame.loc[0, "artist_name"] = "Nobody Heard Of"
    frame.loc[1, "genre"] = "Polka"
    path = tmp_path / "songs.csv"
    frame.to_csv(path, index=False)
    response = client.post("/invocations?format=predict", data=path.read_bytes(), content_type="text/csv",
                           headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    documented = client.get("/openapi.json").json["paths"]["/invocations"]["post"]
    assert documented["parameters"][0]["schema"]["enum"] == ["mlflow", "predict"]
    assert mlflow_routes.SUMMARY_HEADER in documented["responses"]["200"]["headers"]
    summary = score_csv(path, tmp_path / "out.csv", predictor)
    assert response.get_data() == (tmp_path / "out.csv").read_bytes()  # the very file, byte for byte
    sent = json.loads(response.headers[mlflow_routes.SUMMARY_HEADER])
    assert sent["scored"] == 38 and sent["skipped"] == 2
    assert sent["reasons"] == {"row with a non-numeric feature": 1, "row with an out-of-range value": 1}
    assert [row["line"] for row in sent["first_skipped"]] == [5, 9]
    assert sent["first_skipped"][0]["reason"] == summary.bad_rows[0][1] and "danceability" in sent[
        "first_skipped"][0]["reason"]
    assert sent["unseen"]["genre"] == 1 and sent["unseen"] == summary.unseen
    assert sent["unseen"]["artist_name"] == summary.unseen["artist_name"] >= 1


def test_format_predict_keeps_the_routes_errors_and_limits(client, songs_csv, monkeypatch):
    no_rows = client.post("/invocations?format=predict", data=b"genre,tempo\nPop,120\n", content_type="text/csv")
    assert no_rows.status_code == 400 and "the CSV body" in no_rows.json["message"]
    assert "/tmp" not in no_rows.json["message"]
    as_json = client.post("/invocations?format=predict", json={"instances": SONGS})
    assert as_json.status_code == 415 and "format=predict" in as_json.json["message"]
    unknown = client.post("/invocations?format=pandas", data=songs_csv.read_bytes(), content_type="text/csv")
    assert unknown.status_code == 400 and "not 'pandas'" in unknown.json["message"]
    monkeypatch.setattr(mlflow_routes, "MAX_CSV_SONGS", 39)
    too_many = client.post("/invocations?format=predict", data=songs_csv.read_bytes(), content_type="text/csv")
    assert too_many.status_code == 413 and "more than 39 songs" in too_many.json["message"]


def test_mlflow_answers_stay_as_they_were_without_the_option(client, songs_csv):
    response = client.post("/invocations?format=mlflow", data=songs_csv.read_bytes(), content_type="text/csv")
    assert response.status_code == 200 and list(response.json) == ["predictions"]
    assert mlflow_routes.SUMMARY_HEADER not in response.headers
