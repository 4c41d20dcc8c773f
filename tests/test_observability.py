"""Tests of valence.api.observability in one process: request ids, the request log, the metrics of each request."""
import json
import re
from pathlib import Path

import pytest

from valence.config import ValenceError
from valence.api.serving import Pair
from valence.model.predictor import Models, model_version

SONG = {"genre": "ZZMARKERGENRE", "popularity": 50, "acousticness": 0.1, "danceability": 0.8, "duration_ms": 200000,
        "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1, "loudness": -5.0, "mode": "Major",
        "speechiness": 0.05, "tempo": 120.0, "time_signature": "4/4"}
FIELDS = {"time", "request_id", "method", "route", "status", "duration_ms", "model", "pid"}
REQUESTS = "valence_http_requests_total"  # by route, method and status


def log_lines(capfd):
    """Return the JSON request-log lines written to stderr since the last call (each is written as it is answered)."""
    return [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]


def sample(metrics_text, name, **labels):
    """Return the value of one sample of a Prometheus text scrape (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if found == {key: str(value) for key, value in labels.items()}:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def fresh(make_app):
    """Return a new app (its own metrics) and its client."""
    app = make_app()
    return app, app.test_client()


@pytest.mark.parametrize("given", ["abc", "A.b-c_9", "x" * 64])
def test_a_safe_request_id_is_echoed(client, given):
    assert client.get("/health/live", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


@pytest.mark.parametrize("hostile", ["x" * 65, "a b", "a\nb", "a\r\nSet-Cookie: x=1", "id\x00", "id\x1b[31m",
                                     "é", "a,b", "", "../../etc"])
def test_a_hostile_request_id_is_replaced_and_never_logged(fresh, capfd, hostile):
    app, client = fresh
    log_lines(capfd)
    response = client.get("/health/live", environ_overrides={"HTTP_X_REQUEST_ID": hostile})
    answered = response.headers["X-Request-ID"]
    assert answered != hostile and re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", answered)
    err = capfd.readouterr().err
    assert json.loads(err.splitlines()[-1])["request_id"] == answered
    if hostile not in ("", "a,b", "a b", "é"):  # short innocent fragments may occur by chance
        assert hostile not in err


def test_generated_ids_are_new_for_each_request(client):
    ids = [client.get("/health/live").headers["X-Request-ID"] for _ in range(50)]
    assert len(set(ids)) == 50


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), [
    ("GET", "/no/such/path", {}, 404),
    ("DELETE", "/predict", {}, 405),
    ("POST", "/predict", {"data": b"x" * (1024 * 1024 + 1), "content_type": "application/json"}, 413),
    ("GET", "/predict?track_id=NOSUCH", {}, 404),
    ("POST", "/predict", {"json": {}}, 400),
])
def test_errors_carry_the_request_id(client, method, url, kwargs, status):
    response = client.open(url, method=method, headers={"X-Request-ID": "err-1"}, **kwargs)
    assert response.status_code == status and response.headers["X-Request-ID"] == "err-1"


def test_a_500_carries_the_id_and_is_logged_and_counted(make_app, capfd):
    app = make_app()

    def boom():
        raise RuntimeError("secret internals")
    app.add_url_rule("/boom", view_func=boom)
    client = app.test_client()
    log_lines(capfd)
    response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "boom-1"
    line = [entry for entry in log_lines(capfd) if entry["request_id"] == "boom-1"]
    assert line[0]["status"] == 500 and line[0]["route"] == "/boom"
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, REQUESTS, method="GET", route="/boom", status=500) == 1


def test_one_json_line_per_request_with_the_route_not_the_path(fresh, capfd):
    app, client = fresh
    log_lines(capfd)
    client.get("/predict?track_id=DUPLICATE0000000000001", headers={"X-Request-ID": "r1"})
    client.get("/predict?artist_name=Nobody&track_name=Secret Title", headers={"X-Request-ID": "r2"})
    client.post("/predict", json=[SONG, SONG, SONG], headers={"X-Request-ID": "r3"})
    client.get("/secret/raw/path", headers={"X-Request-ID": "r4"})
    client.put("/health", headers={"X-Request-ID": "r5"})
    lines = log_lines(capfd)
    assert [line["request_id"] for line in lines] == ["r1", "r2", "r3", "r4", "r5"]
    for line in lines:
        assert set(line) >= FIELDS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert 0 < line["duration_ms"] < 10_000
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/predict", 200), ("GET", "/predict", 404), ("POST", "/predict", 200),
        ("GET", "unmatched", 404), ("PUT", "/health", 405)]
    assert [line.get("songs") for line in lines] == [None, None, 3, None, None]
    assert lines[0]["model"] == model_version(app.config["VALENCE_MODEL_DIR"]) and len(lines[0]["model"]) == 12


def test_bodies_and_lookup_names_are_not_logged_by_default(fresh, capfd):
    _, client = fresh
    log_lines(capfd)
    client.post("/predict", json=SONG)
    client.get("/predict?artist_name=Duo Act&track_name=Shared Song")
    client.get("/predict?track_id=DUPLICATE0000000000001")
    err = capfd.readouterr().err
    for secret in ("ZZMARKERGENRE", "Duo Act", "Shared Song", "DUPLICATE0000000000001"):
        assert secret not in err


def test_lookup_names_are_logged_when_asked_for_as_json_text(make_app, capfd):
    client = make_app(VALENCE_LOG_LOOKUP_NAMES="1").test_client()
    log_lines(capfd)
    client.get("/predict?artist_name=Duo Act&track_name=Shared Song")
    client.get("/predict?track_id=NOPE%0A%7B%22status%22%3A200%7D")  # a newline and a fake JSON line
    first, second = log_lines(capfd)
    assert (first["artist_name"], first["track_name"]) == ("Duo Act", "Shared Song") and "track_id" not in first
    assert second["track_id"] == 'NOPE\n{"status":200}' and second["status"] == 404


def test_the_request_log_can_be_turned_off(make_app, capfd):
    client = make_app(VALENCE_LOG_REQUESTS="0").test_client()
    log_lines(capfd)
    assert client.get("/health/live").headers["X-Request-ID"]
    assert log_lines(capfd) == []


def test_metrics_count_requests_by_route_method_and_status(fresh):
    _, client = fresh
    for _ in range(7):
        client.get("/predict?track_id=DUPLICATE0000000000001")
    for _ in range(3):
        client.get("/predict?artist_name=Nobody&track_name=Nothing")
    for _ in range(2):
        client.post("/predict", json=[SONG] * 4)
    client.get("/nowhere")
    client.open("/predict", method="BREW")
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, REQUESTS, method="GET", route="/predict", status=200) == 7
    assert sample(scrape, REQUESTS, method="GET", route="/predict", status=404) == 3
    assert sample(scrape, REQUESTS, method="POST", route="/predict", status=200) == 2
    assert sample(scrape, REQUESTS, method="GET", route="unmatched", status=404) == 1
    assert sample(scrape, REQUESTS, method="other", route="/predict", status=405) == 1
    assert sample(scrape, "valence_lookups_total", result="found") == 7
    assert sample(scrape, "valence_lookups_total", result="not_found") == 3
    assert sample(scrape, "valence_songs_predicted_total") == 8
    latency = "valence_http_request_duration_seconds"
    assert sample(scrape, latency + "_count", method="GET", route="/predict") == 10
    assert sample(scrape, latency + "_bucket", le="+Inf", method="POST", route="/predict") == 2
    assert sample(scrape, latency + "_bucket", le="0.0005", method="POST", route="/predict") == 0  # 4 songs take longer
    assert 0 < sample(scrape, latency + "_sum", method="GET", route="/predict") < 10 * 5


def test_a_scrape_right_after_the_answers_counts_every_one_of_them(fresh):
    _, client = fresh
    for answered in range(1, 101):
        client.get("/predict?track_id=DUPLICATE0000000000001")
        if answered in (1, 37, 100):
            scrape = client.get("/metrics").get_data(as_text=True)
            assert sample(scrape, REQUESTS, method="GET", route="/predict", status=200) == answered
            assert sample(scrape, "valence_lookups_total", result="found") == answered


def test_metrics_show_the_model_and_the_catalog_served(fresh):
    app, client = fresh
    client.get("/health/ready")  # a worker loads its models and catalog on its first request
    pair = app.extensions["valence"].pair
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, "valence_catalog_tracks") == pair.store.size() > 0
    version = model_version(app.config["VALENCE_MODEL_DIR"])
    for kind in ("regression", "classification"):
        created_at = getattr(pair.models.predictor, kind).meta["created_at"]
        assert sample(scrape, "valence_model_info", kind=kind, version=version, created_at=created_at) == 1


def test_swaps_are_counted_and_published_and_failures_once_per_reason(make_app, capfd):
    app = make_app(VALENCE_RELOAD_SECONDS=3600)  # no check of its own during the test
    client = app.test_client()
    client.get("/health/ready")
    serving = app.extensions["valence"]
    served = serving.pair
    retrained = Pair(Models(served.models.predictor, "abc123abc123", ()), served.store)
    serving.on_serve(served, retrained)
    broken = Pair(None, None, "regression.pt is damaged", "no model is loaded to serve the catalog with")
    serving.on_serve(retrained, broken)
    for _ in range(3):  # every check that fails again: one failure, not three
        serving._count_failures(model="regression.pt is damaged", catalog="no catalog at catalog.sqlite")
    log_lines(capfd)
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, "valence_reloads_total", what="model") == 1
    assert sample(scrape, "valence_load_failures_total", what="model") == 1
    assert sample(scrape, "valence_load_failures_total", what="catalog") == 1
    assert sample(scrape, "valence_catalog_tracks") == 0
    info = [line for line in scrape.splitlines() if line.startswith("valence_model_info{")]
    assert len(info) == 4 and all(line.endswith(" 0.0") for line in info)  # two versions, both no longer served
    assert log_lines(capfd)[-1]["model"] is None


def test_settings_come_from_the_environment_and_bad_values_are_refused(monkeypatch, make_app):
    monkeypatch.setenv("VALENCE_METRICS", "off")
    assert make_app().test_client().get("/metrics").status_code == 404
    monkeypatch.setenv("VALENCE_METRICS", "sometimes")
    with pytest.raises(ValenceError, match="VALENCE_METRICS='sometimes'"):
        make_app()



def test_the_sample_prometheus_configuration_names_metrics_the_app_exposes(client):
    text = (Path(__file__).resolve().parents[1] / "docs" / "prometheus.yml").read_text()
    named = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"valence_[a-z_]+", text)}
    scrape = client.get("/metrics").get_data(as_text=True)
    exposed = set(re.findall(r"^# HELP (\S+)", scrape, re.MULTILINE))
    assert len(named) >= 3 and named <= exposed, named - exposed
    assert re.search(r"^\s+metrics_path: /metrics$", text, re.MULTILINE)


def test_songs_explained_are_counted_and_logged_as_songs_predicted(fresh, capfd):
    _, client = fresh
    log_lines(capfd)
    assert client.post("/explain", json=[SONG] * 3, headers={"X-Request-ID": "ex-1"}).status_code == 200
    assert client.post("/explain", json=SONG).status_code == 200
    assert client.post("/explain", json=[{"genre": "Pop"}]).status_code == 400  # none predicted
    line = [entry for entry in log_lines(capfd) if entry["request_id"] == "ex-1"][0]
    assert (line["route"], line["songs"]) == ("/explain", 3)
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, "valence_songs_predicted_total") == 4
