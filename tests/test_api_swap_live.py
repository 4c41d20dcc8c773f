"""A retrain while gunicorn serves: every worker serves the new pair within 5 s, no answer fails or mixes models."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import empty_target
from test_serving import build, copy_models, save_changed
from valence.config import MODEL_KINDS
from valence.model.predictor import model_version

pytestmark = pytest.mark.slow  # gunicorn, a rebuild and 10 s of requests
ROOT = Path(__file__).resolve().parents[1]
TRACK = "/predict?track_id=DUPLICATE0000000000001"


RELOAD_SECONDS = 1  # VALENCE_RELOAD_SECONDS's default: how often a worker looks for new files


def wait_for_answers(answers, after, timeout=60):
    """Wait until the clients have an answer given after the monotonic time `after`."""
    deadline = time.monotonic() + timeout
    while not answers or answers[-1][0] <= after:
        assert time.monotonic() < deadline, "the server stopped answering"
        time.sleep(0.02)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port, path):
    """Return (status, X-Model-Version, JSON body) of one request on a new connection (any worker may take it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("X-Model-Version"), json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_retrain_under_gunicorn_is_served_by_every_worker_within_5_s(kind, trained, catalog_csv, tmp_path,
                                                                         request):
    model_dir = copy_models(trained[0], tmp_path / "models")
    target = empty_target(kind, tmp_path, request)
    build(catalog_csv, model_dir, target)
    old_version = model_version(model_dir)
    port = free_port()
    env = {**os.environ, "VALENCE_MODEL_DIR": str(model_dir), "VALENCE_CATALOG": str(target)}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                               "musical_valence_predictor:create_app()"], cwd=ROOT, env=env,
                              start_new_session=True, stderr=subprocess.DEVNULL)
    answers, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                answers.append((time.monotonic(), *get(port, TRACK)))
            except OSError:
                time.sleep(0.05)  # not listening yet

    threads = [threading.Thread(target=client) for _ in range(3)]
    try:
        deadline = time.monotonic() + 120
        while not any(status == 200 for _, status, *_ in list(answers)):
            if not threads[0].is_alive():
                for thread in threads:
                    thread.start()
            assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
            time.sleep(0.1)
        # Both workers serving the first pair (three clients keep both busy) before anything changes.
        wait_for_answers(answers, after=time.monotonic() + RELOAD_SECONDS)
        for kind_saved in MODEL_KINDS:  # a retrain: the bundles one after the other, then the catalog
            save_changed(model_dir, kind_saved)
            # Answers after every worker has looked at least once: served while the files are half new.
            wait_for_answers(answers, after=time.monotonic() + RELOAD_SECONDS + 0.2)
        build(catalog_csv, model_dir, target)
        built = time.monotonic()
        new_version = model_version(model_dir)
        # Answers until past the 5 s the workers have, ending with 60 new answers in a row and with more than 20
        # after those 5 s (a loaded machine answers slowly: the loop waits for them rather than assuming them).
        deadline = built + 60
        while not (sum(1 for answer in answers if answer[0] > built + 5) > 20
                   and {answer[2] for answer in answers[-60:]} == {new_version}):
            assert time.monotonic() < deadline, "the new models were not served within a minute"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    served = [(at, status, version, body) for at, status, version, body in answers]
    assert all(status == 200 for _, status, _, _ in served), {status for _, status, _, _ in served}
    assert {version for _, _, version, _ in served} == {old_version, new_version}
    predictions = {}
    for _, _, version, body in served:  # one prediction per version: never a model with another's catalog
        predictions.setdefault(version, body["prediction"])
        assert body["prediction"] == predictions[version]
    last_old = max(at for at, _, version, _ in served if version == old_version)
    assert last_old < built + 5  # every worker serves the new pair within 5 s of the build
    late = [version for at, _, version, _ in served if at > built + 5]
    assert len(late) > 20 and set(late) == {new_version}
    early = [version for at, _, version, _ in served if at < built]
    assert set(early) == {old_version}
