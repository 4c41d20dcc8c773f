"""Unit tests of valence.api.telemetry: buffered counts, the log writer, the multiprocess directory."""
import json
import os
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from valence.api import telemetry
from valence.config import ValenceError
from valence.api.telemetry import LATENCY_BUCKETS, LogWriter, Metrics, ProcessId


def samples(metrics):
    """Return {(sample name, sorted labels): value} of a per-process Metrics scrape."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in metrics.registry.collect() for sample in family.samples}


def test_buffered_requests_match_what_observe_would_record():
    metrics = Metrics()
    reference = Histogram("reference", "", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    durations = [0.0, 0.0004, 0.0005, 0.0005001, 0.001, 0.003, 0.7, 5.0, 7.5, 0.0012] * 3
    for seconds in durations:
        metrics.record_request("/predict", "GET", 200, seconds)
        reference.observe(seconds)
    metrics.flush()
    ours = {(name.split("_seconds")[-1], dict(labels).get("le")): value for (name, labels), value in samples(metrics).items()
            if name.startswith("valence_http_request_duration_seconds") and not name.endswith("_created")}
    theirs = {(sample.name.split("reference")[-1], sample.labels.get("le")): sample.value
              for sample in next(iter(reference.collect())).samples if not sample.name.endswith("_created")}
    assert ours.keys() == theirs.keys() and len(ours) == len(LATENCY_BUCKETS) + 3
    assert all(ours[key] == pytest.approx(theirs[key]) for key in theirs)
    assert ours[("_count", None)] == len(durations)


def test_counts_appear_at_the_flush_and_are_never_added_twice():
    metrics = Metrics()
    key = ("valence_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))
    for _ in range(3):
        metrics.record_request("/predict", "POST", 200, 0.01, songs=4)
    assert samples(metrics).get(key, 0) == 0
    metrics.flush()
    metrics.flush()
    assert samples(metrics)[key] == 3
    assert samples(metrics)[("valence_songs_predicted_total", ())] == 12


def test_an_unknown_method_is_labelled_other_and_statuses_are_text():
    metrics = Metrics()
    metrics.record_request("unmatched", "BREW", 405, 0.001)
    metrics.flush()
    assert samples(metrics)[("valence_http_requests_total",
                             (("method", "other"), ("route", "unmatched"), ("status", "405")))] == 1


def test_a_forked_child_drops_the_counts_its_parent_held(monkeypatch):
    metrics = Metrics()
    metrics.record_request("/health", "GET", 200, 0.001)
    monkeypatch.setattr(ProcessId, "pid", -1)  # what the fork hook does in a child
    monkeypatch.setattr(telemetry.Flusher, "ensure_running", classmethod(lambda cls: None))
    metrics.record_request("/health", "GET", 200, 0.001)
    metrics.flush()
    key = ("valence_http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))
    assert samples(metrics)[key] == 1


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


def test_log_writer_batches_whole_lines_under_pipe_buf_in_order(monkeypatch):
    writes = []
    monkeypatch.setattr(telemetry.os, "write", lambda fd, data: writes.append((fd, data)) or len(data))
    writer = LogWriter(fd=7)
    lines = [json.dumps({"n": i, "pad": "x" * (i % 300)}).encode() + b"\n" for i in range(500)]
    for line in lines:
        writer.write(line)
    writer.flush()
    assert {fd for fd, _ in writes} == {7} and len(writes) > 10
    assert all(len(data) <= 4096 and data.endswith(b"\n") for _, data in writes)
    assert b"".join(data for _, data in writes) == b"".join(lines)
    writer.flush()
    assert len(b"".join(data for _, data in writes)) == len(b"".join(lines))  # nothing written twice


def test_log_writer_flushes_by_itself_within_a_moment():
    read_end, write_end = os.pipe()
    try:
        writer = LogWriter(fd=write_end)
        writer.write(b'{"n":1}\n')
        os.set_blocking(read_end, False)
        deadline, got = time.monotonic() + 5, b""
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                got = os.read(read_end, 100)
            except BlockingIOError:
                pass
        assert got == b'{"n":1}\n'
    finally:
        os.close(read_end)
        os.close(write_end)
