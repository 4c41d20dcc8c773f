"""Tests of valence.api.kserve_routes: the Open Inference Protocol (KServe V2) REST routes."""
import json
import os
import threading

import numpy as np
import pytest
from werkzeug.serving import make_server

from schema_check import response_errors
from valence.config import FEATURE_COLUMNS

SONG = {"genre": "Pop", "popularity": 60, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 210000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}
SONGS = [SONG, dict(SONG, genre="Polka", energy=0.2, artist_name="Somebody", track_name="Song (Live)"),
         dict(SONG, key="A#", mode="Minor", tempo=90.5)]
TEXT = ("genre", "key", "mode", "time_signature", "artist_name", "track_name")
INFER = "/v2/models/valence/infer"


def tensors(songs, names=(*FEATURE_COLUMNS, "artist_name", "track_name")):
    """Return songs as the protocol's input tensors, one per field (null where a song lacks an optional one)."""
    return [{"name": name, "shape": [len(songs)], "datatype": "BYTES" if name in TEXT else "FP64",
             "data": [song.get(name) for song in songs]} for name in names]


def outputs_by_name(answer):
    """Return an infer answer's outputs as {name: data}, after checking each tensor's shape."""
    for output in answer["outputs"]:
        assert output["shape"] == [len(output["data"])]
    return {output["name"]: output["data"] for output in answer["outputs"]}


def test_liveness_and_readiness(client):
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/health/ready").json == {"ready": True}
    assert client.get("/v2/models/valence/ready").json == {"name": "valence", "ready": True}


def test_readiness_without_a_model_is_a_4xx_saying_why(make_app, tmp_path):
    client = make_app(model_dir=tmp_path).test_client()
    assert client.get("/v2/health/live").status_code == 200
    for path in ("/v2/health/ready", "/v2/models/valence/ready"):
        response = client.get(path)
        assert response.status_code == 400
        assert list(response.json) == ["error"] and "no model is loaded" in response.json["error"]
    infer = client.post(INFER, json={"inputs": tensors(SONGS)})
    assert infer.status_code == 503 and list(infer.json) == ["error"]


def test_metadata_names_every_input_and_output_tensor(client):
    response = client.get("/v2/models/valence")
    assert response.status_code == 200
    assert response_errors(client.get("/openapi.json").json, "/v2/models/{name}", "GET", response) == []
    body = response.json
    assert body["name"] == "valence" and body["platform"] == "numpy"
    assert body["versions"] == [response.headers["X-Model-Version"]]
    assert body["inputs"] == [{"name": name, "datatype": "BYTES" if name in TEXT else "FP64", "shape": [-1]}
                              for name in (*FEATURE_COLUMNS, "artist_name", "track_name")]
    assert body["outputs"] == [{"name": name, "datatype": "BYTES" if name in ("mood", "warnings") else "FP64",
                                "shape": [-1]}
                               for name in ("valence", "valence_low", "valence_high", "mood", "p_sad", "p_neutral", "p_happy",
                                            "warnings")]


def test_infer_answers_post_predict_s_numbers(client):
    response = client.post(INFER, json={"id": "req-7", "parameters": {"x": 1}, "inputs": tensors(SONGS)})
    assert response.status_code == 200, response.json
    assert response_errors(client.get("/openapi.json").json, "/v2/models/{name}/infer", "POST", response) == []
    assert response.json["model_name"] == "valence" and response.json["id"] == "req-7"
    assert response.json["model_version"] == response.headers["X-Model-Version"]
    outputs = outputs_by_name(response.json)
    expected = client.post("/predict", json=SONGS).json["predictions"]
    assert outputs["valence"] == [answer["prediction"] for answer in expected]
    assert outputs["mood"] == [answer["mood"] for answer in expected]
    for mood in ("sad", "neutral", "happy"):
        assert outputs[f"p_{mood}"] == [answer["mood_probabilities"][mood] for answer in expected]
    assert outputs["warnings"] == ["; ".join(answer["warnings"]) for answer in expected]
    assert "unknown genre 'Polka'" in outputs["warnings"][1]


def test_infer_takes_n_by_1_shapes_spotify_numbers_and_chosen_outputs(client):
    inputs = [dict(tensor, shape=[2, 1], data=[[value] for value in tensor["data"]])
              for tensor in tensors(SONGS[:2], FEATURE_COLUMNS)]
    for tensor in inputs:
        if tensor["name"] == "mode":
            tensor.update(datatype="INT64", data=[[1], [1]])
    response = client.post(INFER, json={"inputs": inputs, "outputs": [{"name": "p_happy"}, {"name": "valence"}]})
    assert response.status_code == 200, response.json
    assert "id" not in response.json
    assert [output["name"] for output in response.json["outputs"]] == ["p_happy", "valence"]
    expected = client.post("/predict", json=[{k: v for k, v in song.items() if k in FEATURE_COLUMNS}
                                             for song in SONGS[:2]]).json["predictions"]
    assert outputs_by_name(response.json)["valence"] == [answer["prediction"] for answer in expected]


def without(field):
    """Return input tensors for SONGS without the tensor of one field."""
    return [tensor for tensor in tensors(SONGS) if tensor["name"] != field]


def replace(field, **change):
    """Return input tensors for SONGS with the tensor of one field changed."""
    return [dict(tensor, **change) if tensor["name"] == field else tensor for tensor in tensors(SONGS)]


@pytest.mark.parametrize("body, status, words", [
    ({"inputs": replace("energy", datatype="BYTES")}, 400, "input energy has datatype 'BYTES'; expected FP64"),
    ({"inputs": replace("genre", datatype="FP64")}, 400, "input genre has datatype 'FP64'; expected BYTES"),
    ({"inputs": replace("tempo", shape=[2])}, 400, "input tempo has shape [2] but holds 3 values"),
    ({"inputs": replace("tempo", shape=[3, 2])}, 400, "input tempo has shape [3, 2]; expected [n] or [n, 1]"),
    ({"inputs": replace("tempo", shape=[2], data=[1.0, 2.0])}, 400, "input tempo holds 2 values, but input"),
    ({"inputs": without("loudness")}, 400, "missing input tensor(s): loudness"),
    ({"inputs": [*tensors(SONGS), tensors(SONGS)[0]]}, 400, "input genre is given twice"),
    ({"inputs": replace("energy", name="energie")}, 400, "input 'energie' is not a known input"),
    ({"inputs": replace("energy", data=[0.7, 2.0, 0.1])}, 400, "input energy [1]: must be a number from 0 to 1"),
    ({"inputs": replace("key", data=["C", "H", "D"])}, 400, "input key [1]: must be one of C"),
    ({"inputs": tensors(SONGS), "outputs": [{"name": "tempo"}]}, 400, "output 'tempo' is not an output"),
    ({"inputs": tensors(SONGS), "id": 5}, 400, "id must be a string"),
    ({"instances": [SONG]}, 400, "not 'instances'"),
    ([SONG], 400, "must be a JSON object with inputs"),
], ids=["number-as-bytes", "text-as-number", "shape-vs-data", "shape-2d", "lengths-differ", "missing-feature",
        "twice", "unknown-input", "bad-value", "bad-key", "unknown-output", "id-not-text", "not-v2", "a-list"])
def test_bad_tensors_answer_400_in_the_protocol_s_error_shape(client, body, status, words):
    response = client.post(INFER, json=body)
    assert response.status_code == status
    assert list(response.json) == ["error"] and words in response.json["error"], response.json
    assert response_errors(client.get("/openapi.json").json, "/v2/models/{name}/infer", "POST", response) == []


@pytest.mark.parametrize("method, path", [("GET", "/v2/models/other"), ("GET", "/v2/models/other/ready"),
                                          ("POST", "/v2/models/other/infer")])
def test_another_model_name_is_a_404_in_the_protocol_s_error_shape(client, method, path):
    response = client.open(path, method=method, json={"inputs": tensors(SONGS)})
    assert response.status_code == 404
    assert response.json == {"error": "unknown model 'other': this server serves the model 'valence'"}


def test_a_body_that_is_not_json_is_a_415_and_one_without_a_content_type_is_json(client):
    response = client.post(INFER, data="genre,tempo\n", content_type="text/csv")
    assert response.status_code == 415 and response.json["error"].endswith("application/json), not text/csv")
    binary = client.post(INFER, json={"inputs": tensors(SONGS)}, headers={"Inference-Header-Content-Length": "9"})
    assert binary.status_code == 415 and "binary tensor data" in binary.json["error"]
    plain = client.post(INFER, data=json.dumps({"inputs": tensors(SONGS)}))  # as Triton's client sends it
    assert plain.status_code == 200 and len(outputs_by_name(plain.json)["valence"]) == 3


def triton_http_client():
    """Return tritonclient.http; without it skip, except under CI=true, where the test must run and fails."""
    try:
        import tritonclient.http
    except ImportError as error:
        reason = f"tritonclient[http] is not installed ({error}): pip install -r dependencies-test.txt"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Triton's client is needed under CI: {reason}")
        pytest.skip(reason)
    return tritonclient.http


@pytest.mark.slow
def test_triton_s_http_client_reads_metadata_and_infers(app, client):
    """Triton's own HTTP client (tritonclient[http], pinned in dependencies-test.txt) talks to a live server."""
    httpclient = triton_http_client()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        triton = httpclient.InferenceServerClient(f"127.0.0.1:{server.server_port}")
        assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("valence")
        metadata = triton.get_model_metadata("valence")
        assert [tensor["name"] for tensor in metadata["inputs"]] == [*FEATURE_COLUMNS, "artist_name", "track_name"]
        inputs = []
        for name in FEATURE_COLUMNS:
            text = name in TEXT
            values = np.array([song[name] for song in SONGS], dtype=object if text else np.float64)
            tensor = httpclient.InferInput(name, [len(SONGS)], "BYTES" if text else "FP64")
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("valence", "mood")]
        result = triton.infer("valence", inputs, request_id="42", outputs=outputs)
        assert result.get_response()["id"] == "42"
        plain = [{k: v for k, v in song.items() if k in FEATURE_COLUMNS} for song in SONGS]
        expected = client.post("/predict", json=plain).json["predictions"]
        assert result.as_numpy("valence").tolist() == [answer["prediction"] for answer in expected]
        assert [mood.decode() if isinstance(mood, bytes) else mood for mood in result.as_numpy("mood")] == [
            answer["mood"] for answer in expected]
    finally:
        server.shutdown()
