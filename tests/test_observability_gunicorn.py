"""Tests of the metrics and request log under real gunicorn with 2 workers (gunicorn.conf.py's hooks)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from processes import live_children
from test_observability import FIELDS, REQUESTS as REQUEST_COUNT, SONG, sample

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FOUND = "/predict?track_id=DUPLICATE0000000000001"
REQUESTS = [  # (method, url, body, counted as (method, route, status))
    *[("GET", FOUND, None, ("GET", "/predict", "200"))] * 12,
    *[("GET", "/predict?artist_name=Nobody&track_name=Nothing", None, ("GET", "/predict", "404"))] * 6,
    *[("GET", "/no/such/path", None, ("GET", "unmatched", "404"))] * 4,
    *[("DELETE", "/predict", None, ("DELETE", "/predict", "405"))] * 3,
    *[("POST", "/predict", json.dumps([SONG, SONG]), ("POST", "/predict", "200"))] * 3,
]


def free_port():
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A gunicorn master with 2 workers serving the test models and catalog on 127.0.0.1."""

    def __init__(self, tmp_path, env):
        self.port, self.log_path = free_port(), tmp_path / "stderr.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{self.port}", "--log-level",
                 "warning", "musical_valence_predictor:create_app()"],
                cwd=ROOT, env=env, stderr=log, start_new_session=True)
        try:
            self.wait_for(lambda: self.get("/health/ready")[0] == 200, "the server to be ready")
        except BaseException:
            self.stop()  # never leave a server behind a failed start
            raise

    def request(self, method, url, body=None, headers=None):
        """Send one request on a new connection; return (status, headers, body bytes)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, url, body, {"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def get(self, url):
        """Return (status, body text) of a GET, or (None, "") while nothing listens."""
        try:
            status, _, body = self.request("GET", url)
            return status, body.decode()
        except OSError:
            return None, ""

    def wait_for(self, condition, what, seconds=120):
        """Poll `condition` until it holds; fail the test after `seconds`."""
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, f"gunicorn exited: {self.log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.2)

    def log(self):
        """Return the request log's JSON lines so far (gunicorn's own lines are skipped)."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def workers(self):
        """Return the pids of the master's live worker processes."""
        return live_children(self.process.pid)

    def stop(self):
        """Stop the master, which stops its workers (a signal to all would make it start new ones)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def serve(trained, served_catalog, tmp_path):
    """Return a function that starts a Server with extra environment; stop them all afterwards."""
    started = []

    def start(**extra):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("VALENCE_", "PROMETHEUS_"))}
        env.update(VALENCE_CATALOG=str(served_catalog), VALENCE_MODEL_DIR=str(trained[0]), **extra)
        started.append(Server(tmp_path, env))
        return started[-1]
    yield start
    for server in started:
        server.stop()


def send_all(server, requests):
    """Send requests from 8 threads at once (so both workers answer); return the X-Request-IDs answered."""
    def one(item):
        method, url, body, _ = item
        status, headers, _ = server.request(method, url, body)
        assert str(status) == item[3][2], (method, url, status)
        return headers["X-Request-ID"]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, requests))


def pids_of(server, request_ids):
    """Return the workers that answered the given requests, by their log lines (each written before its answer)."""
    wanted = set(request_ids)
    lines = [line for line in server.log() if line["request_id"] in wanted]
    assert {line["request_id"] for line in lines} == wanted, "a request has no log line"
    return {line["pid"] for line in lines}


def answer_on_every_worker(server, requests, seconds=120):
    """Send the requests again and again until every worker has answered some; return how many rounds were sent.

    Bounded by time, not by rounds: each worker loads the app itself, and on a loaded machine one of them may
    still be loading while the other answers hundreds of requests.
    """
    workers, answered, rounds = server.workers(), set(), 0
    deadline = time.monotonic() + seconds
    while answered != workers:
        if time.monotonic() > deadline:
            pytest.fail(f"only {answered} of the workers {workers} answered within {seconds} s")
        answered |= pids_of(server, send_all(server, requests))
        rounds += 1
    return rounds


def assert_scrapes_show(server, expected, workers):
    """Scrape until each worker has answered a scrape; every scrape must show exactly the expected counts."""
    scraped_by = set()
    for attempt in range(200):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: server.request("GET", "/metrics"), range(4)))
        for status, headers, body in answers:
            assert status == 200
            text = body.decode()
            for (method, route, status_code), count in expected.items():
                found = sample(text, REQUEST_COUNT, method=method, route=route, status=status_code)
                assert found == count, (method, route, status_code, found, count)
        ids = {headers["X-Request-ID"] for _, headers, _ in answers}
        scraped_by |= pids_of(server, ids)
        if scraped_by >= workers:
            return text
    pytest.fail(f"scrapes were answered by {scraped_by} only, not by all of {workers}")


def test_counts_are_summed_over_workers_and_survive_a_killed_worker(serve, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")
    server = serve(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert not (metrics_dir / "counter_1.db").exists()
    workers = server.workers()
    assert len(workers) == 2

    rounds = answer_on_every_worker(server, REQUESTS)
    expected = Counter({key: count * rounds for key, count in Counter(item[3] for item in REQUESTS).items()})
    text = assert_scrapes_show(server, expected, workers)
    found = expected[("GET", "/predict", "200")]
    assert sample(text, "valence_lookups_total", result="found") == found
    assert sample(text, "valence_songs_predicted_total") == 2 * expected[("POST", "/predict", "200")]
    assert sample(text, "valence_catalog_tracks") > 0

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    server.wait_for(lambda: len(server.workers() - {victim}) == 2, "a new worker")
    newcomer = (server.workers() - workers).pop()
    served, deadline = set(), time.monotonic() + 60
    while newcomer not in served:  # the new worker loads the app, then answers its share
        assert time.monotonic() < deadline, "the new worker never answered"
        served |= pids_of(server, send_all(server, REQUESTS[:8]))
        expected.update(item[3] for item in REQUESTS[:8])
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))  # its live gauges are dropped ...
    assert (metrics_dir / f"counter_{victim}.db").exists()  # ... and its counts kept
    text = assert_scrapes_show(server, expected, server.workers())
    assert sample(text, "valence_catalog_tracks") > 0
    assert sample(text, "valence_lookups_total", result="found") == expected[("GET", "/predict", "200")]

    for line in server.log():
        assert set(line) >= FIELDS and line["route"] in {"/predict", "unmatched", "/metrics", "/health/ready",
                                                          "/health/live"}


def test_hostile_request_ids_under_gunicorn(serve):
    server = serve()
    answers = {}
    for hostile in ("x" * 65, "a\x01b", "a\x7fb", "a b", "'; DROP TABLE"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: " + hostile.encode()
                               + b"\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := connection.recv(65536):
                raw += chunk
        answers[hostile] = raw
    assert len(server.log()) >= 1 + sum(b" 200 " in raw.split(b"\r\n")[0] for raw in answers.values())
    text = server.log_path.read_text()
    for hostile, raw in answers.items():
        head = raw.split(b"\r\n\r\n")[0].decode("latin-1")
        if " 200 " in head.splitlines()[0]:  # gunicorn may refuse control characters itself (400)
            given = [line.split(": ", 1)[1] for line in head.splitlines() if line.lower().startswith("x-request-id")]
            assert len(given) == 1 and given[0] != hostile and given[0] in text
        assert hostile not in text
    status, headers, _ = server.request("GET", "/health/live", headers={"X-Request-ID": "caller-7"})
    assert status == 200 and headers["X-Request-ID"] == "caller-7"


def test_the_default_metrics_directory_is_made_and_removed_and_a_stop_loses_no_log_line(serve):
    server = serve()
    assert server.get("/metrics")[0] == 200
    # The worker's metric files, memory-mapped; a worker that has answered nothing yet has none (they
    # start in about a second, so the readiness poll may have reached one worker only).
    mapped = {worker: {line.split()[-1] for line in Path(f"/proc/{worker}/maps").read_text().splitlines()
                       if line.endswith(f"_{worker}.db")} for worker in server.workers()}
    worker = min(pid for pid, files in mapped.items() if files)
    path = Path(mapped[worker].pop()).parent
    assert path.name.startswith("valence-metrics-") and list(path.glob(f"*_{worker}.db"))
    answered = send_all(server, REQUESTS[:16])
    server.stop()  # at once: the workers write the lines they still hold as they exit
    assert not path.exists(), server.log_path.read_text()[-3000:]
    assert set(answered) <= {line["request_id"] for line in server.log()}
    assert "Traceback" not in server.log_path.read_text()  # the master's hooks ran cleanly to the end


def test_a_scrape_right_after_the_answers_counts_every_one_of_them(serve):
    server = serve()
    found = [("GET", FOUND, None, ("GET", "/predict", "200"))]
    before = 8 * answer_on_every_worker(server, found * 8)
    send_all(server, found * 100)
    for _ in range(4):  # answered by either worker: each sums both workers' files
        status, _, body = server.request("GET", "/metrics")
        assert status == 200
        assert sample(body.decode(), REQUEST_COUNT, method="GET", route="/predict", status="200") == before + 100


def test_workers_killed_right_after_answering_leave_every_log_line(serve):
    server = serve()
    workers = server.workers()
    answered = send_all(server, [("GET", FOUND, None, ("GET", "/predict", "200"))] * 20)
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    lines = [line for line in server.log() if line["request_id"] in set(answered)]
    assert len(set(answered)) == len(lines) == 20
