"""Tests of valence.api.environment: every VALENCE_* setting read by one parser, in the app and in gunicorn.conf.py."""
import runpy
import types
from pathlib import Path

import prometheus_client  # noqa: F401  imported before a test sets PROMETHEUS_MULTIPROC_DIR: metrics stay in process
import pytest

from valence.api import environment
from valence.api.app import create_app
from valence.config import ValenceError

GUNICORN_CONF = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"


@pytest.mark.parametrize(("name", "value", "accepts"), [
    ("VALENCE_RELOAD_SECONDS", "abc", "a number of seconds, 0 or more"),
    ("VALENCE_RELOAD_SECONDS", "-1", "a number of seconds, 0 or more"),
    ("VALENCE_RELOAD_SECONDS", "nan", "a number of seconds, 0 or more"),
    ("VALENCE_RELOAD_SECONDS", "inf", "a number of seconds, 0 or more"),
    ("VALENCE_METRICS", "maybe", "use 1, true, yes or on (on), or 0, false, no or off (off)"),
    ("VALENCE_LOG_REQUESTS", "2", "use 1, true, yes or on (on)"),
])
def test_a_bad_value_is_refused_naming_the_setting_and_what_it_accepts(name, value, accepts):
    with pytest.raises(ValenceError) as refused:
        environment.from_environment({name: value})
    assert str(refused.value).startswith(f"{name}={value!r} is not understood: ") and accepts in str(refused.value)


@pytest.mark.parametrize(("name", "value", "read"), [
    ("VALENCE_RELOAD_SECONDS", "0.5", 0.5), ("VALENCE_RELOAD_SECONDS", "0", 0.0),
    ("VALENCE_METRICS", " Off ", False), ("VALENCE_METRICS", "yes", True),
    ("VALENCE_METRICS", "", True), ("VALENCE_LOG_LOOKUP_NAMES", "", False), ("VALENCE_RELOAD_SECONDS", " ", 1.0),
])
def test_good_values_and_empty_ones_which_mean_the_default(name, value, read):
    assert environment.parse(name, value) == read


def test_the_app_refuses_a_bad_setting_with_the_same_message(monkeypatch, trained):
    monkeypatch.setenv("VALENCE_RELOAD_SECONDS", "abc")
    with pytest.raises(ValenceError, match=r"^VALENCE_RELOAD_SECONDS='abc' is not understood: use a number of seconds"):
        create_app({"VALENCE_MODEL_DIR": str(trained[0]), "VALENCE_THREADS": None, "VALENCE_FREEZE_HEAP": False})


def on_starting(monkeypatch, environ, preload=False):
    """Run gunicorn.conf.py's on_starting with `environ` and a stand-in for gunicorn's server."""
    for name in environment.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    hooks = runpy.run_path(str(GUNICORN_CONF))
    server = types.SimpleNamespace(cfg=types.SimpleNamespace(preload_app=preload))
    hooks["on_starting"](server)
    return server


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_gunicorn_stops_at_start_with_the_message_not_a_worker_traceback(monkeypatch, tmp_path, value):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        on_starting(monkeypatch, {"VALENCE_RELOAD_SECONDS": value})
    assert str(stopped.value) == (f"gunicorn.conf.py: VALENCE_RELOAD_SECONDS={value!r} is not understood: use a "
                                  "number of seconds, 0 or more (such as 1 or 0.5)")


@pytest.mark.parametrize(("value", "metrics_on"), [("", True), ("0", False), ("off", False), ("1", True)])
def test_valence_metrics_means_the_same_to_gunicorn_and_to_the_app(monkeypatch, tmp_path, make_app, value,
                                                                    metrics_on):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    if metrics_on:  # with --preload, gunicorn refuses metrics that are on
        with pytest.raises(SystemExit, match="--preload is not supported with the metrics on"):
            on_starting(monkeypatch, {"VALENCE_METRICS": value}, preload=True)
    else:
        on_starting(monkeypatch, {"VALENCE_METRICS": value}, preload=True)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    app = make_app()  # the app reads VALENCE_METRICS from the environment
    assert (app.test_client().get("/metrics").status_code == 200) is metrics_on
