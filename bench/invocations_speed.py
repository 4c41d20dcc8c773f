"""Benchmark POST /invocations of a CSV file under gunicorn against --predict of the same file, in one run.

    python bench/invocations_speed.py                       # 100,000 generated songs, a quick model trained here
    python bench/invocations_speed.py --model-dir models    # score with models you trained

Writes a CSV of generated songs in the Kaggle schema (valence.data.synthetic), trains a small model in a
temporary folder unless given one, then times `python musical_valence_predictor.py --predict FILE` (a fresh
interpreter, as a user runs it) and POST /invocations of the same file to gunicorn (one worker, the project's
gunicorn.conf.py, 127.0.0.1 on a free port): MLflow's JSON answer, its CSV answer, and the page's
?format=predict. The worker's resident memory is sampled every few milliseconds throughout each request (psutil
when installed, else /proc/PID/status). Prints the times, their ratio to --predict's (target: at most 3x) and
the worker's peak RSS (target: at most 350 MiB). Everything it starts is stopped before it exits.
"""
import argparse
import dataclasses
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_speed import stop  # noqa: E402  (the gunicorn master stops its workers)
from soak_api import workers  # noqa: E402

TARGET_RATIO = 3.0  # POST /invocations may take at most 3 times --predict's time
TARGET_RSS_MIB = 350  # the worker's peak resident memory during a request
SAMPLE_S = 0.005  # how often the worker's RSS is read
ANSWERS = (("JSON (MLflow)", "", "application/json"), ("CSV (MLflow, Accept: text/csv)", "", "text/csv"),
           ("?format=predict (the page)", "?format=predict", "*/*"))


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="songs in the scored file (default: 100000)")
    parser.add_argument("--model-dir", type=Path, help="score with these bundles instead of training quick ones")
    parser.add_argument("--train-rows", type=int, default=20_000,
                        help="rows the quick model is trained on (default: 20000)")
    return parser.parse_args()


def prepare(work, rows, model_dir, train_rows):
    """Write the file to score and, unless given a model folder, train a 1-epoch one; return both paths."""
    from valence.data.synthetic import generate_dataset, write_csv

    songs = work / "songs.csv"
    write_csv(generate_dataset(rows, seed=1), songs)
    if model_dir is None:
        from valence.training.pipeline import run_training
        from valence.training.settings import FoldPlan, RunOptions, TrainConfig

        model_dir = work / "models"
        write_csv(generate_dataset(train_rows, seed=0), work / "train.csv")
        started = time.perf_counter()
        run_training(RunOptions(data=work / "train.csv", model_dir=model_dir, kinds=("regression", "classification"),
                                train=dataclasses.replace(TrainConfig(), epochs=1), split=FoldPlan(folds=3)),
                     log=lambda message: None)
        print(f"trained 1-epoch models on {train_rows:,} rows in {time.perf_counter() - started:.0f} s")
    return songs, model_dir


def time_predict(songs, model_dir, work):
    """Return the wall time of --predict in a fresh interpreter, as a user runs it."""
    command = [sys.executable, "musical_valence_predictor.py", "--predict", str(songs), "--output",
               str(work / "songs.predictions.csv"), "--model-dir", str(model_dir), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def free_port():
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_reader():
    """Return a function of a pid giving its resident memory in bytes: psutil's, or /proc/PID/status VmRSS."""
    try:
        import psutil
    except ImportError:
        def from_proc(pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise OSError(f"no VmRSS in /proc/{pid}/status")
        return from_proc
    return lambda pid: psutil.Process(pid).memory_info().rss


def worker_of(master_pid):
    """Return the process id of a gunicorn master's one worker, waiting for it to start."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = workers(master_pid)
        if found:
            return found[0]
        time.sleep(0.05)
    raise SystemExit("gunicorn started no worker in 60 s")


def start_gunicorn(port, model_dir, work):
    """Start gunicorn with one worker serving the models; return (process, worker pid) once it answers."""
    env = {**os.environ, "VALENCE_MODEL_DIR": str(model_dir), "VALENCE_CATALOG": str(work / "no-catalog.sqlite"),
           "VALENCE_LOG_REQUESTS": "0"}
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
               "musical_valence_predictor:create_app()"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}: {' '.join(command)}")
        try:
            status, _ = post(port, "/health/live", None, "application/json", method="GET")
            if status == 200:
                return process, worker_of(process.pid)
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise SystemExit("gunicorn did not answer /health/live in 120 s")


def post(port, path, body, accept, method="POST"):
    """Send one request; return (status, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "text/csv"
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def timed_request(port, worker, body, query, accept, read_rss):
    """Return (seconds, peak worker RSS in bytes, answer bytes) of one POST /invocations, RSS sampled throughout."""
    peak, done = [read_rss(worker)], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], read_rss(worker))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        status, answer = post(port, f"/invocations{query}", body, accept)
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    if status != 200:
        raise SystemExit(f"POST /invocations{query} answered {status}: {answer[:300]!r}")
    return seconds, max(peak[0], read_rss(worker)), answer


def main():
    args = parse_args()
    read_rss = rss_reader()
    with tempfile.TemporaryDirectory(prefix="valence-invocations-bench-") as folder:
        work = Path(folder)
        songs, model_dir = prepare(work, args.rows, args.model_dir, args.train_rows)
        body = songs.read_bytes()
        print(f"file: {args.rows:,} songs, {len(body) / 2**20:.1f} MiB; models: {model_dir}")
        predict_s = time_predict(songs, model_dir, work)
        print(f"--predict (a fresh interpreter, torch imported): {predict_s:.2f} s")
        process, worker = start_gunicorn(free_port(), model_dir, work)
        port = int(process.args[process.args.index("-b") + 1].rsplit(":", 1)[1])
        try:
            post(port, "/invocations", b"genre\nPop\n", "application/json")  # loads the models: not timed
            print(f"gunicorn worker {worker}: RSS {read_rss(worker) / 2**20:.0f} MiB with the models loaded")
            results = []
            for name, query, accept in ANSWERS:
                seconds, peak, answer = timed_request(port, worker, body, query, accept, read_rss)
                results.append((name, seconds, peak))
                print(f"POST /invocations {name}: {seconds:.2f} s ({seconds / predict_s:.2f}x --predict), "
                      f"answer {len(answer) / 2**20:.1f} MiB, peak worker RSS {peak / 2**20:.0f} MiB")
        finally:
            stop(process)
    worst_ratio = max(seconds for _, seconds, _ in results) / predict_s
    worst_rss = max(peak for _, _, peak in results) / 2**20
    print(f"slowest answer: {worst_ratio:.2f}x --predict (target at most {TARGET_RATIO:g}x: "
          f"{'met' if worst_ratio <= TARGET_RATIO else 'MISSED'}); peak worker RSS {worst_rss:.0f} MiB "
          f"(target at most {TARGET_RSS_MIB} MiB: {'met' if worst_rss <= TARGET_RSS_MIB else 'MISSED'})")


if __name__ == "__main__":
    main()
