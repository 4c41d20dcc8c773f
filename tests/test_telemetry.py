"""Unit tests of valence.api.telemetry: counts written at once, the request log's lines, the multiprocess directory."""
import json
import logging
import re

import pytest
from prometheus_client import CollectorRegistry, Histogram

from valence.api import telemetry
from valence.config import ValenceError
from valence.api.telemetry import LATENCY_BUCKETS, Metrics, request_logger


def samples(metrics):
    """Return {(sample name, sorted labels): value} of a per-process Metrics scrape."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in metrics.registry.collect() for sample in family.samples}


def test_requests_are_recorded_as_observe_records_them():
    metrics = Metrics()
    reference = Histogram("reference", "", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    durations = [0.0, 0.0004, 0.0005, 0.0005001, 0.001, 0.003, 0.7, 5.0, 7.5, 0.0012] * 3
    for seconds in durations:
        metrics.record_request("/predict", "GET", 200, seconds)
        reference.observe(seconds)
    ours = {(name.split("_seconds")[-1], dict(labels).get("le")): value for (name, labels), value in samples(metrics).items()
            if name.startswith("valence_http_request_duration_seconds") and not name.endswith("_created")}
    theirs = {(sample.name.split("reference")[-1], sample.labels.get("le")): sample.value
              for sample in next(iter(reference.collect())).samples if not sample.name.endswith("_created")}
    assert ours.keys() == theirs.keys() and len(ours) == len(LATENCY_BUCKETS) + 3
    assert all(ours[key] == pytest.approx(theirs[key]) for key in theirs)
    assert ours[("_count", None)] == len(durations)


def test_counts_appear_as_each_request_is_recorded():
    metrics = Metrics()
    key = ("valence_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))
    for count in range(1, 4):
        metrics.record_request("/predict", "POST", 200, 0.01, songs=4)
        assert samples(metrics)[key] == count
    assert samples(metrics)[("valence_songs_predicted_total", ())] == 12


def test_an_unknown_method_is_labelled_other_and_statuses_are_text():
    metrics = Metrics()
    for method in ("BREW", "PROPFIND"):
        metrics.record_request("unmatched", method, 405, 0.001)
    assert samples(metrics)[("valence_http_requests_total",
                             (("method", "other"), ("route", "unmatched"), ("status", "405")))] == 2


def test_model_info_marks_the_served_bundles_and_zeroes_the_replaced_ones():
    metrics = Metrics()
    metrics.set_model_info([("regression", "v1", "2026-01-01"), ("classification", "v1", "2026-01-01")])
    metrics.set_model_info([("regression", "v2", "2026-02-01")])
    info = {labels: value for (name, labels), value in samples(metrics).items() if name == "valence_model_info"}
    assert info == {(("created_at", "2026-01-01"), ("kind", "regression"), ("version", "v1")): 0,
                    (("created_at", "2026-01-01"), ("kind", "classification"), ("version", "v1")): 0,
                    (("created_at", "2026-02-01"), ("kind", "regression"), ("version", "v2")): 1}


def test_lookups_are_counted_from_the_requests():
    metrics = Metrics()
    for status, times in ((200, 4), (404, 2), (400, 5), (503, 1)):
        for _ in range(times):
            metrics.record_request("/predict", "GET", status, 0.001)
    metrics.record_request("/predict", "POST", 200, 0.001)
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'valence_lookups_total{result="found"} 4.0' in text and 'valence_lookups_total{result="not_found"} 2.0' in text


def test_multiprocess_mode_needs_the_variable_before_the_import(tmp_path):
    with pytest.raises(ValenceError, match="PROMETHEUS_MULTIPROC_DIR must be set before"):
        Metrics(str(tmp_path))


def test_clearing_the_directory_removes_metric_files_only(tmp_path):
    (tmp_path / "counter_12.db").write_bytes(b"x")
    (tmp_path / "histogram_13.db").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("keep")
    telemetry.clear_multiprocess_dir(str(tmp_path))
    telemetry.clear_multiprocess_dir(str(tmp_path / "new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "notes.txt"]


def log_record(logger, **fields):
    """Write one request-log record carrying `fields`, as the observer does."""
    logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, "request", None, None,
                                    extra={"fields": fields}))


def test_the_request_log_writes_one_json_line_per_record_at_once(capfd):
    logger = request_logger()
    log_record(logger, request_id="a-1", method="GET", route="/predict", status=200, duration_ms=0.25,
               model=None, pid=7, artist_name="Beyoncé \n {x}")
    line = capfd.readouterr().err  # no flush, no wait: the line is on stderr when handle returns
    assert line.endswith("}\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert list(entry) == ["time", "request_id", "method", "route", "status", "duration_ms", "model", "pid",
                           "artist_name"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert (entry["status"], entry["model"], entry["artist_name"]) == (200, None, "Beyoncé \n {x}")


def test_the_request_logger_is_set_up_once_and_keeps_its_lines_from_the_root_logger(capfd, caplog):
    logger = request_logger()
    assert request_logger() is logger and len(logger.handlers) == 1 and not logger.propagate
    log_record(logger, request_id="a-2")
    assert caplog.records == [] and json.loads(capfd.readouterr().err)["request_id"] == "a-2"
