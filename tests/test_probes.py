"""Tests of valence.api.probes: liveness, readiness and /metrics as routes, and their OpenAPI paths."""
import pytest

from test_observability import sample


def test_liveness_and_readiness_with_everything_loaded(client):
    assert client.get("/health/live").json == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


@pytest.mark.parametrize(("which", "reasons"), [
    ("model", ["no model is loaded"]),  # and so no catalog: the same reason
    ("catalog", ["no catalog is loaded"]),
])
def test_readiness_is_503_without_a_model_or_a_catalog(make_app, tmp_path, which, reasons):
    settings = {"model_dir": tmp_path} if which == "model" else {"catalog": tmp_path / "absent.sqlite"}
    app = make_app(**settings)
    client = app.test_client()
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json["status"] == 503
    assert [reason.split(" (")[0] for reason in ready.json["reasons"]] == reasons
    assert ready.json["message"].startswith("not ready: no ")
    assert ("train one with" if which == "model" else "absent.sqlite") in ready.json["message"]
    scrape = client.get("/metrics").get_data(as_text=True)
    assert sample(scrape, "valence_load_failures_total", what=which) == 1
    assert sample(scrape, "valence_catalog_tracks") == 0


def test_openapi_lists_the_new_routes(client):
    paths = client.get("/openapi.json").json["paths"]
    assert {"/metrics", "/health/live", "/health/ready"} <= set(paths)
    assert set(paths["/health/ready"]["get"]["responses"]) == {"200", "503"}


def test_metrics_can_be_turned_off(make_app):
    client = make_app(VALENCE_METRICS="0").test_client()
    assert client.get("/metrics").status_code == 404
    assert "/metrics" not in client.get("/openapi.json").json["paths"]
    assert client.get("/health/ready").status_code == 200


def test_metrics_answer_openmetrics_when_asked(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200 and response.mimetype == "application/openmetrics-text"
    text = response.get_data(as_text=True)
    assert text.endswith("# EOF\n") and "valence_lookups_total" in text
    assert client.get("/metrics").mimetype == "text/plain"
