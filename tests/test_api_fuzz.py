"""Property-based fuzzing of every endpoint, driven by the app's own /openapi.json.

Every answer must be documented for its route (status, JSON, schema), carry the
security headers, and never be a 5xx. Where the right answer is known (a body
the Song schema accepts must be predicted, one it refuses must be a 400; a
lookup must find exactly what the catalog holds) the status is checked too.

    VALENCE_FUZZ_EXAMPLES=3000 python -m pytest tests/test_api_fuzz.py -q   # a long run
"""
import collections
import json
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openapi_strategies import ANY_CHARACTER, json_junk, mutated, valid
from schema_check import response_errors, schema_errors
from valence.api import SECURITY_HEADERS
from valence.schemas import MAX_QUERY_BYTES

EXAMPLES = int(os.environ.get("VALENCE_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "CONNECT", "PROPFIND"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "application/xml",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/problem+json",
                 "", None]
SENT = collections.Counter()  # (method, route, status) of every request this module sends


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Print how many requests the fuzzing sent and what they were answered."""
    yield
    statuses = collections.Counter()
    for (_, _, status), count in SENT.items():
        statuses[status] += count
    line = (f"API fuzz: {sum(SENT.values()):,} requests ({EXAMPLES} examples per test), statuses "
            + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items())))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even though pytest captures output
            reporter.write_line("")
            reporter.write_line(line)


@pytest.fixture(scope="module")
def document(app):
    """Return the app's OpenAPI document, as served."""
    return app.test_client().get("/openapi.json").get_json()


@pytest.fixture(scope="module")
def fuzz_client(app):
    """Return a test client for the whole module (hypothesis runs many examples per test)."""
    return app.test_client()


def send(client, document, method, url, degraded=False, **options):
    """Send one request, check the answer against the document, count it, and return it.

    No answer may be a 5xx, except the documented 503 of an app without a model or catalog.
    """
    response = client.open(url, method=method, **options)
    path = urllib.parse.urlsplit(url).path
    SENT[method, path if path in document["paths"] else "(other)", response.status_code] += 1
    assert response.status_code < 500 or degraded and response.status_code == 503, response.get_data()
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name) == value
    assert response.mimetype == "application/json"
    if method == "HEAD":
        assert response.get_data() == b""
        return response
    operations = document["paths"].get(path)
    if operations is not None and method.lower() in operations:
        assert response_errors(document, path, method, response) == []
    else:
        assert response.status_code == (404 if operations is None else 405)
        assert schema_errors(response.get_json(), {"$ref": "#/components/schemas/Error"}, document) == []
        if response.status_code == 405:
            assert set(response.headers["Allow"].split(", ")) >= {method.upper() for method in operations}
    if response.status_code != 200:
        assert response.get_json()["status"] == response.status_code
    return response


def strict_json(value):
    """Return value as strict JSON text, or None when it has no strict JSON form (NaN, infinity)."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return None


def song_bodies(document):
    """Return a strategy of POST /predict bodies: valid songs and lists, broken ones, and junk."""
    song = {"$ref": "#/components/schemas/Song"}
    one_broken = mutated(song, document)
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return (valid(body, document) | one_broken | st.lists(one_broken | valid(song, document), min_size=1, max_size=6)
            | json_junk)


@FUZZ
@given(data=st.data())
def test_post_predict_answers_200_exactly_when_the_body_fits_the_schema(fuzz_client, document, data):
    body = data.draw(song_bodies(document))
    text = strict_json(body)
    sent = text if text is not None else json.dumps(body)
    response = send(fuzz_client, document, "POST", "/predict", data=sent, content_type="application/json")
    schema = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fits = text is not None and not schema_errors(body, schema, document)
    assert response.status_code == (200 if fits else 400), (body, response.get_json())
    if fits and isinstance(body, list):
        assert len(response.get_json()["predictions"]) == len(body)


@FUZZ
@given(data=st.data())
def test_post_predict_with_any_bytes_and_content_type(fuzz_client, document, data):
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    raw = data.draw(st.binary(max_size=300) | st.text(ANY_CHARACTER, max_size=300).map(str.encode)
                    | json_junk.map(lambda value: json.dumps(value).encode()))
    encoding = data.draw(st.sampled_from([None, None, "gzip", "identity", "br"]))
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = send(fuzz_client, document, "POST", "/predict", data=raw, content_type=content_type, headers=headers)
    if content_type is None or not content_type.startswith(("application/json", "application/problem+json")):
        assert response.status_code == 415


def lookup_values(catalog):
    """Return a strategy of lookup parameter values: catalog names (respelt), documented strings and junk."""
    def respelt(name):
        return st.sampled_from([name, name.upper(), name.lower(), f"  {name} ", name.replace(" ", "   ")])
    known = st.integers(0, len(catalog) - 1)
    return (known.flatmap(lambda i: respelt(catalog.artist_names[i])) | known.flatmap(lambda i: respelt(catalog.track_names[i]))
            | known.map(lambda i: catalog.track_ids[i]) | st.text(ANY_CHARACTER, max_size=40)
            | st.text(ANY_CHARACTER, min_size=495, max_size=505) | st.sampled_from(["", " ", "%", "\x00", "&=&"]))


@st.composite
def lookups(draw, catalog):
    """Draw a lookup query: often one catalog track's names or id, else any mix of parameters."""
    i = draw(st.integers(0, len(catalog) - 1))
    values = lookup_values(catalog)
    query = draw(st.sampled_from([
        {"artist_name": catalog.artist_names[i], "track_name": catalog.track_names[i]},
        {"track_id": catalog.track_ids[i]}, {}]))
    for name in draw(st.lists(st.sampled_from(["artist_name", "track_name", "track_id", "other", "x" * 50]),
                              max_size=4, unique=True)):
        query[name] = draw(values)
    return query


def expected_lookup(catalog, query):
    """Return the status a lookup must get (None when a parameter's text alone decides)."""
    track_id, artist, track = (query.get(name) for name in ("track_id", "artist_name", "track_name"))
    if len(urllib.parse.urlencode(query)) > MAX_QUERY_BYTES:
        return 414
    if any(len(value) > 500 or any(ord(c) < 32 and c not in "\t\n\r" or c == "\x7f" for c in value)
           for value in (track_id, artist, track) if value is not None):
        return 400
    if track_id is not None:
        return 400 if artist is not None or track is not None else 200 if track_id in catalog.by_id else 404
    if artist is None or track is None:
        return 400
    return 200 if catalog.by_names(artist, track) is not None else 404


@FUZZ
@given(data=st.data())
def test_lookups_find_exactly_what_the_catalog_holds(app, fuzz_client, document, data):
    catalog = app.extensions["valence"].catalog
    query = data.draw(lookups(catalog))
    response = send(fuzz_client, document, "GET", f"/predict?{urllib.parse.urlencode(query)}")
    assert response.status_code == expected_lookup(catalog, query), (query, response.get_json())
    if response.status_code == 200:
        body = response.get_json()
        if "track_id" in query:
            assert body == catalog.by_track_id(query["track_id"])
        else:
            assert body == catalog.by_names(query["artist_name"], query["track_name"])


@FUZZ
@given(query=st.text(st.sampled_from("abc_=&%+;#?/ é\x00\\") | ANY_CHARACTER, max_size=200),
       path=st.sampled_from(["/predict", "/health", "/model", "/openapi.json"]))
def test_any_raw_query_string_on_any_get_route(fuzz_client, document, query, path):
    send(fuzz_client, document, "GET", f"{path}?{urllib.parse.quote(query, safe='=&%+;/?')}")


@FUZZ
@given(method=st.sampled_from(METHODS),
       path=st.sampled_from(["/predict", "/health", "/model", "/openapi.json", "/", "/predict/", "/PREDICT",
                             "/openapi.json/..", "/static/x", "/<script>", "/%00"]) | st.text(ANY_CHARACTER, max_size=30).map(
                                 lambda text: "/" + urllib.parse.quote(text)),
       body=st.none() | json_junk)
def test_any_method_on_any_path(fuzz_client, document, method, path, body):
    options = {} if body is None else {"data": json.dumps(body), "content_type": "application/json"}
    send(fuzz_client, document, method, path, **options)


@pytest.fixture(scope="module")
def degraded_clients(make_app, tmp_path_factory):
    """Return test clients of an app without a model and of one without a catalog."""
    empty = tmp_path_factory.mktemp("no-model")
    return [make_app(model_dir=empty).test_client(), make_app(data=empty / "absent.csv").test_client()]


@FUZZ
@given(which=st.sampled_from([0, 1]), method=st.sampled_from(METHODS[:3]),
       url=st.sampled_from(["/predict", "/health", "/model", "/openapi.json", "/nowhere"]) | st.builds(
           "/predict?{}".format, st.dictionaries(st.sampled_from(["artist_name", "track_name", "track_id"]),
                                                 st.text(ANY_CHARACTER, max_size=20)).map(urllib.parse.urlencode)),
       body=st.none() | json_junk)
def test_degraded_apps_answer_as_documented(degraded_clients, document, which, method, url, body):
    options = {} if body is None else {"data": json.dumps(body), "content_type": "application/json"}
    response = send(degraded_clients[which], document, method, url, degraded=True, **options)
    if response.status_code == 503:
        assert "VALENCE_DATA" in response.get_json()["message"] or "train" in response.get_json()["message"]
