"""Benchmark the API under gunicorn against a minimal Flask app served the same way.

    python bench/api_speed.py                      # generate 232,725 rows, train 1 epoch, measure
    python bench/api_speed.py --model-dir models   # serve models you trained (catalog still generated)

Starts everything it measures on 127.0.0.1 and stops it before exiting; every
load run is bounded in time (wrk) or in requests (the Python client).
"""
import argparse
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from valence.config import FEATURE_COLUMNS  # noqa: E402

GUNICORN = [sys.executable, "-m", "gunicorn", "-w", "2", "--timeout", "300", "--log-level", "warning"]


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=232_725, help="catalog rows to generate (default: 232725)")
    parser.add_argument("--model-dir", type=Path, help="serve these bundles instead of training a 1-epoch model")
    parser.add_argument("--seconds", type=int, default=5, help="length of each throughput run (default: 5)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per app, alternating (default: 3)")
    parser.add_argument("--connections", type=int, default=16, help="connections of the throughput runs (default: 16)")
    parser.add_argument("--port", type=int, default=8731, help="first of the two ports used (default: 8731)")
    return parser.parse_args()


def prepare(work, rows, model_dir):
    """Write the generated catalog and, unless given one, train a quick model; return both paths."""
    from valence.config import SplitConfig
    from valence.pipeline import RunOptions, run_training
    from valence.synthetic import generate_dataset, write_csv
    from valence.trainer import TrainConfig

    data = work / "catalog.csv"
    write_csv(generate_dataset(rows, seed=0), data)
    if model_dir is None:
        model_dir = work / "models"
        started = time.perf_counter()
        run_training(RunOptions(data=data, model_dir=model_dir, kinds=("regression", "classification"),
                                train=dataclasses.replace(TrainConfig(), epochs=1), split=SplitConfig()),
                     log=lambda message: None)
        print(f"trained a 1-epoch model on {rows:,} rows in {time.perf_counter() - started:.0f} s")
    return data, model_dir


def start_server(target, port, env, ready_path, extra=(), stderr=None):
    """Start gunicorn (2 workers) for a WSGI target; return (process, seconds) once ready_path answers 200."""
    command = [*GUNICORN, "-b", f"127.0.0.1:{port}", *extra, target]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stderr=stderr)
    started = time.perf_counter()
    while time.perf_counter() - started < 300:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}: {' '.join(command)}")
        try:
            status, _ = request(port, "GET", ready_path)
            if status == 200:
                return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise SystemExit("gunicorn did not answer within 300 s")


def stop(process):
    """Stop a gunicorn master and its workers (the master stops them: a signal to all would make it start new ones)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def request(port, method, path, body=None, connection=None):
    """Send one request (on a kept-alive connection when given); return (status, body bytes)."""
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    data = response.read()
    if own:
        connection.close()
    return response.status, data


def worker_rss_mib(master_pid):
    """Return the resident memory of each worker of a gunicorn master, in MiB."""
    sizes = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(master_pid):
            sizes.append(int(fields["VmRSS"].split()[0]) / 1024)
    return sorted(sizes)


def worker_cpu_seconds(master_pid):
    """Return the CPU time (user + system) the workers of a gunicorn master have used so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(master_pid):  # fields after the name: state, ppid, ...; utime and stime are 12, 13
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def throughput(port, paths, seconds, connections, master_pid):
    """Drive the server with wrk over the given paths; return (requests/s, non-2xx count, worker CPU ms/request)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\ni = 0\n"
                     "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    cpu = worker_cpu_seconds(master_pid)
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=seconds + 30, check=True).stdout
    finally:
        os.unlink(script.name)
    cpu = worker_cpu_seconds(master_pid) - cpu
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(bad.group(1)) if bad else 0, cpu * 1000 / max(count, 1)


def latencies_ms(port, method, paths, body=None, count=2000):
    """Time requests one after another on one kept-alive connection; return milliseconds each."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for i in range(count):
        started = time.perf_counter()
        status, _ = request(port, method, paths[i % len(paths)], body, connection)
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200, (status, paths[i % len(paths)])
    connection.close()
    return times


def lookup_paths(data, n=2000):
    """Return GET /predict paths for a random sample of catalog tracks, by names and by id."""
    import pandas as pd

    frame = pd.read_csv(data, usecols=["artist_name", "track_name", "track_id"], keep_default_na=False)
    rows = frame.sample(n, random_state=0).itertuples()
    return [f"/predict?{urllib.parse.urlencode({'artist_name': r.artist_name, 'track_name': r.track_name})}"
            if i % 2 else f"/predict?track_id={r.track_id}" for i, r in enumerate(rows)]


def post_body(data, n=1000):
    """Return a JSON list of n catalog songs' features."""
    import pandas as pd

    frame = pd.read_csv(data, nrows=n, keep_default_na=False)
    return json.dumps(frame[list(FEATURE_COLUMNS)].to_dict("records"))


def scrape_totals(port):
    """Return the /metrics request counts of GET /predict by status, summed over the workers."""
    _, body = request(port, "GET", "/metrics")
    totals = {}
    for line in body.decode().splitlines():
        found = re.match(r'valence_http_requests_total\{method="GET",route="/predict",status="(\d+)"\} (\S+)', line)
        if found:
            totals[found.group(1)] = float(found.group(2))
    return totals


def main():
    """Prepare, serve, measure, print, and stop everything started."""
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the throughput runs: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir = prepare(Path(tmp), args.rows, args.model_dir)
        env = {**os.environ, "VALENCE_DATA": str(data), "VALENCE_MODEL_DIR": str(model_dir),
               "VALENCE_METRICS": "1", "VALENCE_LOG_REQUESTS": "1"}
        quiet = {**env, "VALENCE_METRICS": "0", "VALENCE_LOG_REQUESTS": "0"}
        paths, body = lookup_paths(data), post_body(data)
        log_path = Path(tmp) / "requests.log"
        servers = {}
        try:
            with open(log_path, "wb") as log:  # the request log, as a log collector would take it
                servers["api"], boot = start_server("musical_valence_predictor:create_app()", args.port, env,
                                                    "/health/ready", stderr=log)
            print(f"API up in {boot:.1f} s: {json.loads(request(args.port, 'GET', '/health')[1])['catalog']}")
            servers["off"], _ = start_server("musical_valence_predictor:create_app()", args.port + 2, quiet,
                                             "/health/ready")
            servers["minimal"], _ = start_server("minimal_app:create_app()", args.port + 1, env, "/",
                                                 ("--pythonpath", "bench"))
            rss_start = worker_rss_mib(servers["api"].pid)
            for port, warm in ((args.port, paths), (args.port + 2, paths), (args.port + 1, ["/"])):
                latencies_ms(port, "GET", warm, count=500)  # warm both workers of each
            # Alternate short runs, so that other load on the machine hits all three alike.
            rates = {"api": [], "off": [], "minimal": []}
            cpu = {name: [] for name in rates}
            lookup_bad = 0
            for _ in range(args.rounds):
                for name, port, targets in (("api", args.port, paths), ("off", args.port + 2, paths),
                                            ("minimal", args.port + 1, ["/"])):
                    rate, bad, cpu_ms = throughput(port, targets, args.seconds, args.connections, servers[name].pid)
                    rates[name].append(rate)
                    cpu[name].append(cpu_ms)
                    lookup_bad += bad if name != "minimal" else 0
            one_client = latencies_ms(args.port, "GET", paths)
            minimal_one = latencies_ms(args.port + 1, "GET", ["/"])
            posts = latencies_ms(args.port, "POST", ["/predict"], body, count=30)
            rss_end = worker_rss_mib(servers["api"].pid)
            totals = scrape_totals(args.port)
        finally:
            for process in servers.values():
                stop(process)
        log_lines = log_path.read_bytes().count(b"\n")
    median = {name: statistics.median(values) for name, values in rates.items()}
    cpu_us = {name: statistics.median(values) * 1000 for name, values in cpu.items()}
    load = os.getloadavg()[0]
    print(f"gunicorn -w 2, wrk -t2 -c{args.connections}, {args.rounds} alternating runs of {args.seconds} s each, "
          f"{os.cpu_count()} CPUs (load average {load:.1f} at the end), catalog {args.rows:,} rows")
    print(f"lookup GET /predict:  {median['api']:8.0f} req/s median of {[round(r) for r in rates['api']]} "
          f"({lookup_bad} non-2xx, both API servers)   metrics and request log on")
    print(f"  the same, all off:  {median['off']:8.0f} req/s median of {[round(r) for r in rates['off']]}   "
          "VALENCE_METRICS=0 VALENCE_LOG_REQUESTS=0")
    print(f"minimal Flask app:    {median['minimal']:8.0f} req/s median of {[round(r) for r in rates['minimal']]}")
    print(f"ratio lookup/minimal: {median['api'] / median['minimal']:8.2f}   (target >= 0.8; metrics and log on)")
    print(f"  with them off:      {median['off'] / median['minimal']:8.2f}   (cost of metrics and log: "
          f"{1 - median['api'] / median['off']:.1%} of the lookup rate)")
    print(f"worker CPU/request:   {cpu_us['api']:8.0f} us lookup, {cpu_us['off']:.0f} us with metrics and log off, "
          f"{cpu_us['minimal']:.0f} us minimal app (medians; CPU ratio minimal/lookup "
          f"{cpu_us['minimal'] / cpu_us['api']:.2f}, with them off {cpu_us['minimal'] / cpu_us['off']:.2f})")
    print(f"lookup p50, 1 client: {statistics.median(one_client):8.2f} ms (p99 "
          f"{statistics.quantiles(one_client, n=100)[98]:.2f} ms; minimal app p50 "
          f"{statistics.median(minimal_one):.2f} ms)   (target < 2 ms)")
    print(f"POST 1,000 songs p50: {statistics.median(posts):8.1f} ms (max {max(posts):.1f} ms)   (target < 50 ms)")
    print(f"worker RSS:           {', '.join(f'{m:.0f}' for m in rss_start)} MiB after start, "
          f"{', '.join(f'{m:.0f}' for m in rss_end)} MiB after the runs")
    print(f"/metrics, GET /predict by status (both workers): {totals}; request log: {log_lines:,} JSON lines")


if __name__ == "__main__":
    main()
