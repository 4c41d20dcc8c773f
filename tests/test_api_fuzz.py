"""Property-based fuzzing of every operation with schemathesis, driven by the app's own /openapi.json.

Every answer must be documented for its operation (status, content type, and
the body checked with jsonschema), carry the security headers, and never be a
5xx (but the documented 503 of an app without a model or catalog). Where the
right answer is known the status is checked too: a body the Song schema accepts
must be predicted, one it refuses must be a 400; a lookup of a catalog track's
names (respelt as people type them) or id must find exactly that track.

    python -m pytest tests/test_api_fuzz.py -q                 # a few examples per operation
    python -m pytest tests/test_api_fuzz.py -q -m slow         # the long run (VALENCE_FUZZ_EXAMPLES, 500)
"""
import collections
import json
import os
import urllib.parse

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from schema_check import answer_errors, schema_errors
from valence.api.app import SECURITY_HEADERS
from valence.config import normalise_name as normalise
from valence.api.schemas import MAX_QUERY_BYTES, MAX_QUERY_TEXT, text_error

QUICK, LONG = 5, int(os.environ.get("VALENCE_FUZZ_EXAMPLES", "500"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.function_scoped_fixture]
SENT = collections.Counter()  # (method, path, status) of every request this module sends
# The coverage phase (every boundary value, undocumented methods, wrong media types: about 450
# requests, 20 s) runs in the long run only.
QUICK_CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.pytest.from_fixture("api_schema")
no_model_schema = schemathesis.pytest.from_fixture("no_model_api_schema")
no_catalog_schema = schemathesis.pytest.from_fixture("no_catalog_api_schema")


def examples(count):
    """Return hypothesis settings for `count` examples per operation."""
    return settings(max_examples=count, deadline=None, suppress_health_check=HEALTH, print_blob=True)


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Print how many requests the fuzzing sent and what they were answered."""
    yield
    statuses = collections.Counter()
    for (_, _, status), count in SENT.items():
        statuses[status] += count
    line = (f"API fuzz: {sum(SENT.values()):,} requests, statuses "
            + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items())))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and SENT:
        with capture.global_and_fixture_disabled():  # shown even though pytest captures output
            reporter.write_line("")
            reporter.write_line(line)


@pytest.fixture(scope="module")
def degraded_apps(make_app, tmp_path_factory):
    """Return an app without a model and one without a catalog."""
    return (make_app(model_dir=tmp_path_factory.mktemp("no-model")),
            make_app(catalog=tmp_path_factory.mktemp("no-catalog") / "absent.sqlite"))


def load_schema(request, app):
    """Return schemathesis's view of an app's document, calling the app in process (WSGI)."""
    config = None if request.node.get_closest_marker("slow") else QUICK_CONFIG
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


@pytest.fixture
def api_schema(request, app):
    """Return the schema of the app with a model and a catalog."""
    return load_schema(request, app)


@pytest.fixture
def no_model_api_schema(request, degraded_apps):
    """Return the schema of the app without a model."""
    return load_schema(request, degraded_apps[0])


@pytest.fixture
def no_catalog_api_schema(request, degraded_apps):
    """Return the schema of the app without a catalog."""
    return load_schema(request, degraded_apps[1])


def has_lone_surrogate(value):
    """Tell whether a JSON value holds a lone UTF-16 surrogate anywhere (such text is refused)."""
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


def check(case, response, degraded=False):
    """Check one answer: no 5xx but a degraded app's 503, the security headers, JSON as documented."""
    document = case.operation.schema.raw_schema
    status = response.status_code
    SENT[case.method, case.path, status] += 1
    assert status < 500 or degraded and status == 503, response.content[:500]
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name.lower()) == [value]
    mimetype = response.headers["content-type"][0].split(";")[0]
    if case.method == "HEAD":
        body = None
    else:  # JSON but for the text of /metrics
        body = json.loads(response.content) if mimetype == "application/json" else response.content.decode()
    operations = document["paths"][case.path]
    if case.method.lower() in operations:
        assert answer_errors(document, case.path, case.method, status, mimetype, body) == []
    else:  # schemathesis tries methods the document does not name
        assert status == 405 and mimetype == "application/json"
        assert {method.upper() for method in operations} <= set(response.headers["allow"][0].split(", "))
        if body is not None:
            assert schema_errors(body, {"$ref": "#/components/schemas/Error"}, document) == []
    # the Open Inference Protocol's routes answer their errors as {"error": ...} alone
    protocol = case.path.startswith("/v2/") and isinstance(body, dict) and "status" not in body
    if status != 200 and body is not None and not protocol:
        assert body["status"] == status
    if status == 503:
        message = body["error"] if protocol else body["message"]
        assert "train one with" in message or "--build-catalog" in message
    # schemathesis's own checks (status, content type, schema conformance, negative data refused); not
    # "valid data accepted": the document cannot say that a lookup takes track_id or both names, not both.
    # The 5xx check is ours (above): a degraded app's 503 is documented.
    case.validate_response(response, excluded_checks=[positive_data_acceptance, not_a_server_error])


def strict_json(value):
    """Return value as strict JSON text, or None when it has no strict JSON form (NaN, infinity)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None


def expected_post(case):
    """Return the status a POST /predict or /explain must get: 200 exactly when a JSON body fits the document."""
    sent_as = (case.headers or {}).get("Content-Type", case.media_type) or ""
    if not sent_as.startswith("application/json"):
        return 415
    document = case.operation.schema.raw_schema
    body_schema = document["paths"][case.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fits = (strict_json(case.body) is not None and not has_lone_surrogate(case.body)
            and not schema_errors(case.body, body_schema, document))
    return 200 if fits else 400


def run(case, degraded=False):
    """Send a generated request, check its answer, and check the status where it is known."""
    response = case.call()
    check(case, response, degraded)
    if not degraded and case.method == "POST" and case.path in ("/predict", "/explain"):
        expected = expected_post(case)
        assert response.status_code == expected, (case.body, response.content[:1000])
        if expected == 200 and isinstance(case.body, list):
            key = "predictions" if case.path == "/predict" else "explanations"
            assert len(json.loads(response.content)[key]) == len(case.body)
    return response


@pytest.mark.slow  # seconds: in the slow run, which CI runs too
@schema.parametrize()
@examples(QUICK)
def test_every_operation_answers_as_documented(case):
    run(case)


@pytest.mark.slow
@schema.parametrize()
@examples(LONG)
def test_every_operation_answers_as_documented_long_run(case):
    run(case)


@pytest.mark.slow
@no_model_schema.parametrize()
@examples(LONG)
def test_an_app_without_a_model_answers_as_documented_long_run(case):
    run(case, degraded=True)


@pytest.mark.slow
@no_catalog_schema.parametrize()
@examples(LONG)
def test_an_app_without_a_catalog_answers_as_documented_long_run(case):
    run(case, degraded=True)


def respelt(name, how):
    """Return a name as people may type it: as it is, in capitals, lower case, padded, with spaces doubled."""
    return [name, name.upper(), name.lower(), f"  {name} ", name.replace(" ", "  ")][how]


def expected_lookup(catalog, query):
    """Return the status a lookup must get."""
    track_id, artist, track = (query.get(name) for name in ("track_id", "artist_name", "track_name"))
    if len(urllib.parse.urlencode(query)) > MAX_QUERY_BYTES:
        return 414
    if any(len(value) > MAX_QUERY_TEXT or text_error(value) or not value.strip()
           for value in (track_id, artist, track) if value is not None):
        return 400
    if track_id is not None:
        return 400 if artist is not None or track is not None else 200 if track_id.strip() in catalog.by_id else 404
    if artist is None or track is None:
        return 400
    return 200 if catalog.by_names(artist, track) is not None else 404


@pytest.mark.slow  # 4 s with its reference catalog: in the slow run, which CI runs
@schema.include(method="GET", path="/predict").parametrize()
@schema.given(data=st.data())
@examples(QUICK * 3)
def test_lookups_of_catalog_tracks_find_exactly_them(case, data, app, reference_catalog):
    catalog = reference_catalog
    i = data.draw(st.integers(0, len(catalog) - 1), label="track")
    how = data.draw(st.sampled_from(["names", "id", "generated"]), label="lookup")
    if how == "names":
        case.query = {"artist_name": respelt(catalog.artist_names[i], data.draw(st.integers(0, 4))),
                      "track_name": respelt(catalog.track_names[i], data.draw(st.integers(0, 4)))}
    elif how == "id":
        case.query = {"track_id": catalog.track_ids[i]}
    query = dict(case.query or {})
    response = run(case)
    assert response.status_code == expected_lookup(catalog, query), (query, response.content[:500])
    body = json.loads(response.content)
    if how == "names":
        assert response.status_code == 200
        assert (normalise(body["artist_name"]), normalise(body["track_name"])) == (
            normalise(catalog.artist_names[i]), normalise(catalog.track_names[i]))
        assert body == catalog.served(catalog.by_names(query["artist_name"], query["track_name"]))
    elif how == "id":
        assert response.status_code == 200 and body == catalog.served(catalog.by_track_id(catalog.track_ids[i]))
