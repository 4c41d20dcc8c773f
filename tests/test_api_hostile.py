"""Hostile requests: each answered with a 4xx JSON error that says why, and the app keeps serving."""
import json
import re

import pytest

from schema_check import schema_errors
from valence.api.app import SECURITY_HEADERS, create_app

SONG = {"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}
SONG_JSON = json.dumps(SONG)
GOOD_LOOKUP = "/predict?artist_name=Duo%20Act&track_name=Shared%20Song"
JSON = "application/json"


def with_field(name, literal):
    """Return SONG as JSON text with one field's value replaced by a raw JSON literal."""
    return json.dumps(dict(SONG, **{name: "@@"})).replace('"@@"', literal)


# (id, method, url, body, content type, status, a fragment of the message)
POSTS = [
    ("nested lists 100,000 deep", "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ("nested objects 100,000 deep", '{"a":' * 100_000 + "1" + "}" * 100_000, 400, "nested too deeply"),
    ("nested lists 500 deep", "[" * 500 + "]" * 500, 400, "invalid field"),
    ("1e400 as a float", with_field("tempo", "1e400"), 400, "invalid field"),
    ("-1e400 as a float", with_field("loudness", "-1e400"), 400, "invalid field"),
    ("10**400 as an int literal", with_field("popularity", str(10 ** 400)), 400, "invalid field"),
    ("a 5,000-digit int literal", with_field("duration_ms", "9" * 5000), 400, "more than 4,300 digits"),
    ("NaN literal", with_field("energy", "NaN"), 400, "not valid JSON"),
    ("Infinity literal", with_field("energy", "Infinity"), 400, "not valid JSON"),
    ("a string where a number belongs", with_field("tempo", '"120"'), 400, "invalid field"),
    ("a boolean where a number belongs", with_field("energy", "true"), 400, "invalid field"),
    ("null where a number belongs", with_field("liveness", "null"), 400, "invalid field"),
    ("a number where a string belongs", with_field("genre", "0"), 400, "invalid field"),
    ("an object where a string belongs", with_field("genre", '{"$gt": ""}'), 400, "invalid field"),
    ("10,000 numbers in a list", json.dumps([1] * 10_000), 400, "1 to 1000 songs, not 10000"),
    ("1,001 songs", json.dumps([SONG] * 1001), 400, "1 to 1000 songs"),
    ("10,000 songs (3 MB)", json.dumps([SONG] * 10_000), 413, "larger than 1,048,576 bytes"),
    ("1,000 junk songs", json.dumps([{"x": i} for i in range(1000)]), 400, "first 100 shown"),
    ("10,000 unknown keys", json.dumps(dict(SONG, **{f"k{i}": i for i in range(10_000)})), 400, "first 100 shown"),
    ("a 100,000-character genre", with_field("genre", json.dumps("x" * 100_000)), 400, "invalid field"),
    ("invalid UTF-8", b'{"genre": "\xff\xfe"}', 400, "not valid UTF-8"),
    ("UTF-8-encoded surrogate", b'{"genre": "\xed\xa0\x80"}', 400, "not valid UTF-8"),
    ("overlong UTF-8", b'{"genre": "\xc0\xaf"}', 400, "not valid UTF-8"),
    ("UTF-16 JSON", SONG_JSON.encode("utf-16"), 400, "not valid UTF-8"),
    ("empty body", b"", 400, "body is empty"),
    ("only spaces", b" \r\n\t ", 400, "body is empty"),
    ("a JSON number", "5", 400, "must be a JSON object"),
    ("a JSON string", '"song"', 400, "must be a JSON object"),
    ("JSON true", "true", 400, "must be a JSON object"),
    ("JSON null", "null", 400, "must be a JSON object"),
    ("an empty object", "{}", 400, "invalid field"),
    ("duplicate keys", SONG_JSON[:-1] + ', "tempo": 999}', 400, "'tempo' appears twice"),
    ("duplicate keys, same value", SONG_JSON[:-1] + ', "key": "C"}', 400, "'key' appears twice"),
    ("NUL in the genre", json.dumps(dict(SONG, genre="Pop\x00")), 400, "invalid field"),
    ("NUL in artist_name", json.dumps(dict(SONG, artist_name="\x00")), 400, "invalid field"),
    ("terminal escapes in the genre", json.dumps(dict(SONG, genre="\x1b[2J")), 400, "invalid field"),
    ("a lone surrogate escape", with_field("genre", '"\\ud800"'), 400, "invalid field"),
    ("NUL in a key", json.dumps(dict(SONG, **{"tempo\x00": 1})), 400, "invalid field"),
    ("HTML in a key", json.dumps(dict(SONG, **{"<script>alert(1)</script>": 1})), 400, "invalid field"),
    ("trailing garbage", SONG_JSON + "<html>", 400, "not valid JSON"),
    ("a JavaScript comment", "/* x */" + SONG_JSON, 400, "not valid JSON"),
    ("single quotes", SONG_JSON.replace('"', "'"), 400, "not valid JSON"),
    ("over 1 MiB of spaces", " " * (1024 * 1024 + 1), 413, "larger than"),
]
GETS = [
    ("a 9,000-byte query string", "/predict?artist_name=a&track_name=b&pad=" + "x" * 9000, 414, "8,000 bytes"),
    ("a 1,001-character name", "/predict?track_name=b&artist_name=" + "a" * 1001, 400, "longer than 1000"),
    ("NUL in a name", "/predict?artist_name=a%00&track_name=b", 400, "control characters"),
    ("NUL in a track_id", "/predict?track_id=%00", 400, "control characters"),
    ("invalid UTF-8 in a name", "/predict?artist_name=%ff%fe&track_name=b", 404, "no track"),
    ("HTML in a name", "/predict?artist_name=%3Cscript%3Ealert(1)%3C/script%3E&track_name=b", 404, "<script>"),
    ("HTML in a track_id", "/predict?track_id=%3Cimg%20src=x%20onerror=alert(1)%3E", 404, "<img"),
    ("no parameters", "/predict", 400, "missing query parameter"),
    ("id and names", "/predict?track_id=x&artist_name=a&track_name=b", 400, "not both"),
    ("an empty track_id", "/predict?track_id=", 400, "query parameter track_id is empty"),
    ("a repeated track_id", "/predict?track_id=x&track_id=y", 400, "given more than once"),
    ("an HTML path", "/%3Cscript%3Ealert(1)%3C/script%3E", 404, "not found"),
    ("a path with NUL", "/predict%00", 404, "not found"),
    ("a path of 5,000 characters", "/" + "a" * 5000, 404, "not found"),
    ("a path under /metrics", "/metrics/%2e%2e/model", 404, "not found"),
    ("a path under /health", "/health/ready/%00", 404, "not found"),
]
HOSTILE_REQUEST_IDS = ["x" * 65, "a\nb", "a\r\nSet-Cookie: s=1", "\x00", "\x1b[2J", "<script>", "../../etc/passwd",
                       "id with spaces", "\u00e9t\u00e9", "a,b", ""]
METHODS = [
    ("PUT", "/predict"), ("DELETE", "/predict"), ("PATCH", "/predict"), ("OPTIONS", "/predict"),
    ("TRACE", "/predict"), ("BREW", "/predict"), ("POST", "/health"), ("DELETE", "/model"),
    ("PUT", "/openapi.json"), ("OPTIONS", "/health"), ("POST", "/metrics"), ("DELETE", "/health/ready"),
    ("PUT", "/health/live"), ("OPTIONS", "/metrics"),
]
CONTENT_TYPES = [
    ("text/plain", {}), ("application/x-www-form-urlencoded", {}), ("multipart/form-data; boundary=x", {}),
    ("application/xml", {}), ("text/html", {}), (None, {}), ("application/jsonx", {}),
    (JSON, {"Content-Encoding": "gzip"}), (JSON, {"Content-Encoding": "deflate, br"}),
]


@pytest.fixture(scope="module")
def reference(app):
    """Return the answers of a good lookup and a good POST, asked before any hostile request."""
    client = app.test_client()
    return client.get(GOOD_LOOKUP).get_json(), client.post("/predict", json=SONG).get_json()


@pytest.fixture(scope="module")
def document(app):
    """Return the app's OpenAPI document."""
    return app.test_client().get("/openapi.json").get_json()


def check_error(response, document, status, fragment):
    """Assert a JSON error answer of the given status whose message holds the fragment, with every header."""
    assert response.status_code == status, response.get_data()[:300]
    assert response.mimetype == "application/json"
    for name, value in SECURITY_HEADERS:
        assert response.headers.getlist(name) == [value]
    body = response.get_json()
    assert schema_errors(body, {"$ref": "#/components/schemas/Error"}, document) == []
    assert body["status"] == status and fragment in body["message"], body["message"]
    assert len(response.get_data()) < 50_000  # junk is not echoed back in full
    return body


def check_still_serving(client, reference):
    """Assert that good requests still get their usual answers."""
    assert client.get(GOOD_LOOKUP).get_json() == reference[0]
    assert client.post("/predict", json=SONG).get_json() == reference[1]


@pytest.mark.parametrize(("body", "status", "fragment"), [case[1:] for case in POSTS], ids=[case[0] for case in POSTS])
def test_hostile_bodies(client, document, reference, body, status, fragment):
    check_error(client.post("/predict", data=body, content_type=JSON), document, status, fragment)
    check_still_serving(client, reference)


# POST /explain answers as POST /predict does, but a list may hold at most 100 songs.
EXPLAIN_POSTS = [(name, body, status, {"10,000 numbers in a list": "1 to 100 songs, not 10000",
                                       "1,001 songs": "1 to 100 songs, not 1001",
                                       "1,000 junk songs": "1 to 100 songs, not 1000"}.get(name, fragment))
                 for name, body, status, fragment in POSTS]
SEARCHES = [
    ("a 9,000-byte query string", "/search?q=a&pad=" + "x" * 9000, 414, "8,000 bytes"),
    ("a 1,001-character text", "/search?q=" + "a" * 1001, 400, "longer than 1000"),
    ("NUL in the text", "/search?q=a%00", 400, "control characters"),
    ("terminal escapes in the text", "/search?q=%1b%5b2J", 400, "control characters"),
    ("no text", "/search", 400, "missing query parameter q"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), [case[1:] for case in EXPLAIN_POSTS],
                         ids=[case[0] for case in EXPLAIN_POSTS])
def test_hostile_bodies_to_explain(client, document, reference, body, status, fragment):
    check_error(client.post("/explain", data=body, content_type=JSON), document, status, fragment)
    check_still_serving(client, reference)


@pytest.mark.parametrize(("url", "status", "fragment"),
                         [(url.replace("/predict", "/explain", 1), status, fragment) for _, url, status, fragment in GETS
                          if url.startswith("/predict")] + [case[1:] for case in SEARCHES],
                         ids=[case[0] for case in GETS if case[1].startswith("/predict")] + [c[0] for c in SEARCHES])
def test_hostile_queries_to_explain_and_search(client, document, reference, url, status, fragment):
    check_error(client.get(url), document, status, fragment)
    check_still_serving(client, reference)


def test_search_text_is_answered_back_as_json_text(client):
    answer = client.get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == {"query": "<script>alert(1)</script>", "results": []}


@pytest.mark.parametrize(("url", "status", "fragment"), [case[1:] for case in GETS], ids=[case[0] for case in GETS])
def test_hostile_queries_and_paths(client, document, reference, url, status, fragment):
    check_error(client.get(url), document, status, fragment)
    check_still_serving(client, reference)


@pytest.mark.parametrize(("method", "path"), METHODS)
def test_wrong_methods(client, document, reference, method, path):
    response = client.open(path, method=method, data=SONG_JSON, content_type=JSON)
    check_error(response, document, 405, f"method {method} is not allowed")
    assert "GET" in response.headers["Allow"] and "OPTIONS" not in response.headers["Allow"]
    check_still_serving(client, reference)


@pytest.mark.parametrize(("content_type", "headers"), CONTENT_TYPES)
def test_wrong_content_types(client, document, reference, content_type, headers):
    response = client.post("/predict", data=SONG_JSON, content_type=content_type, headers=headers)
    check_error(response, document, 415, "JSON")
    check_still_serving(client, reference)


@pytest.mark.parametrize("codings", ["gzip", "chunked, gzip", "identity"])
def test_transfer_codings_other_than_chunked_are_refused(client, document, reference, codings):
    # gunicorn passes these on and reads Content-Length instead, which a proxy may not have done.
    response = client.post("/predict", data=SONG_JSON, content_type=JSON, headers={"Transfer-Encoding": codings})
    check_error(response, document, 400, "Transfer-Encoding")
    check_still_serving(client, reference)


def test_huge_errors_are_cut_to_100_entries(client):
    body = client.post("/predict", json=[{"x": i} for i in range(1000)]).get_json()
    assert len(body["errors"]) == 100 and body["message"].startswith("15000 invalid field(s)")


def test_user_text_in_errors_stays_json_text(client):
    response = client.get("/predict?artist_name=%3C/script%3E%3Cscript%3Ealert(1)%3C/script%3E&track_name=b")
    assert response.mimetype == "application/json" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" in response.get_json()["message"]  # as JSON text: nosniff and the CSP keep browsers from running it
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_default_config_is_not_debug_and_a_500_shows_no_traceback(monkeypatch, trained, served_catalog):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("VALENCE_CATALOG", str(served_catalog))
    monkeypatch.setenv("VALENCE_MODEL_DIR", str(trained[0]))
    app = create_app({"VALENCE_THREADS": None})
    assert not app.debug and not app.testing and not app.config["PROPAGATE_EXCEPTIONS"]

    def boom():
        raise ValueError("secret internals at /srv/app.py line 12")
    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")
    text = response.get_data(as_text=True)
    assert response.status_code == 500 and response.mimetype == "application/json"
    assert "secret" not in text and "Traceback" not in text and "line 12" not in text
    assert all(response.headers.get(name) == value for name, value in SECURITY_HEADERS)


def test_even_debug_mode_answers_a_500_as_json_without_traceback(monkeypatch, make_app):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = make_app(TESTING=False)
    assert app.debug  # asked for

    def boom():
        raise ValueError("secret internals")
    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")
    assert response.status_code == 500 and "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize("request_id", HOSTILE_REQUEST_IDS)
def test_hostile_request_ids_are_replaced_on_every_route(client, document, request_id):
    for path in [*document["paths"], "/nowhere"]:
        for method in ("GET", "DELETE"):
            response = client.open(path, method=method, environ_overrides={"HTTP_X_REQUEST_ID": request_id})
            answered = response.headers.getlist("X-Request-ID")
            assert len(answered) == 1 and answered[0] != request_id, (method, path)
            assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", answered[0])
