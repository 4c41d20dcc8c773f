"""Benchmark the API under gunicorn against a minimal Flask app served the same way, metrics and request log on.

    python bench/api_speed.py                      # generate 232,725 rows, train 1 epoch, build the catalog, measure
    python bench/api_speed.py --postgres auto      # the same, then again with the catalog in PostgreSQL
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
    parser.add_argument("--postgres", metavar="URL", help="also serve the catalog from PostgreSQL: a URL, or 'auto' "
                                                          "for a throwaway local cluster (default: SQLite only)")
    return parser.parse_args()


def prepare(work, rows, model_dir, epochs=1):
    """Write the generated catalog and, unless given one, train a quick model; return both paths."""
    from valence.training.pipeline import run_training
    from valence.training.settings import FoldPlan, RunOptions, TrainConfig
    from valence.data.synthetic import generate_dataset, write_csv

    data = work / "catalog.csv"
    write_csv(generate_dataset(rows, seed=0), data)
    if model_dir is None:
        model_dir = work / "models"
        started = time.perf_counter()
        run_training(RunOptions(data=data, model_dir=model_dir, kinds=("regression", "classification"),
                                train=dataclasses.replace(TrainConfig(), epochs=epochs), split=FoldPlan()),
                     log=lambda message: None)
        print(f"trained {epochs}-epoch models on {rows:,} rows in {time.perf_counter() - started:.0f} s")
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
            time.sleep(0.02)  # the start-up is measured to this step: a coarser poll would add to it
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


def throughput(port, paths, seconds, connections, master_pid=None):
    """Drive the server with wrk over the given paths; return (requests/s, non-2xx count, worker CPU us/request)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\ni = 0\n"
                     "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    cpu = worker_cpu_seconds(master_pid) if master_pid else 0.0
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=seconds + 30, check=True).stdout
    finally:
        os.unlink(script.name)
    cpu = (worker_cpu_seconds(master_pid) - cpu) if master_pid else 0.0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(bad.group(1)) if bad else 0, cpu * 1e6 / max(count, 1)


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


def measure(args, env, paths, body, log, minimal_log):
    """Serve the API (metrics and request log on, to `log`; and off) and the minimal app (metrics and request
    log on, to `minimal_log`); return the figures."""
    api, boot = start_server("musical_valence_predictor:create_app()", args.port, env, "/health", stderr=log)
    minimal = off = None
    try:
        health = json.loads(request(args.port, "GET", "/health")[1])
        assert health["status"] == "ok", health
        minimal, _ = start_server("minimal_app:create_app()", args.port + 1, env, "/", ("--pythonpath", "bench"),
                                  stderr=minimal_log)
        off, _ = start_server("musical_valence_predictor:create_app()", args.port + 2,
                              {**env, "VALENCE_METRICS": "0", "VALENCE_LOG_REQUESTS": "0"}, "/health")
        latencies_ms(args.port, "GET", paths, count=500)  # the first request of each worker loads its models
        latencies_ms(args.port + 2, "GET", paths, count=500)
        latencies_ms(args.port + 1, "GET", ["/"], count=500)
        rss_start = worker_rss_mib(api.pid)
        # Alternate short runs, so that other load on the machine hits all three alike.
        lookup_rates, minimal_rates, off_rates, lookup_bad, cpu = [], [], [], 0, {"on": [], "off": [], "minimal": []}
        for _ in range(args.rounds):
            rate, bad, used = throughput(args.port, paths, args.seconds, args.connections, api.pid)
            lookup_rates.append(rate)
            cpu["on"].append(used)
            lookup_bad += bad
            rate, bad, used = throughput(args.port + 2, paths, args.seconds, args.connections, off.pid)
            off_rates.append(rate)
            cpu["off"].append(used)
            rate, _, used = throughput(args.port + 1, ["/"], args.seconds, args.connections, minimal.pid)
            minimal_rates.append(rate)
            cpu["minimal"].append(used)
        one_client = latencies_ms(args.port, "GET", paths, count=10_000)
        minimal_one = latencies_ms(args.port + 1, "GET", ["/"])
        posts = latencies_ms(args.port, "POST", ["/predict"], body, count=30)
        rss_end = worker_rss_mib(api.pid)
    finally:
        for process in (api, minimal, off):
            if process is not None:
                stop(process)
    return {"boot": boot, "health": health, "lookup_rates": lookup_rates, "minimal_rates": minimal_rates,
            "off_rates": off_rates, "cpu": {name: statistics.median(used) for name, used in cpu.items()},
            "lookup_bad": lookup_bad, "one_client": one_client, "minimal_one": minimal_one, "posts": posts,
            "rss_start": rss_start, "rss_end": rss_end}


def report(args, backend, figures):
    """Print one backend's figures."""
    lookup_rate = statistics.median(figures["lookup_rates"])
    minimal_rate = statistics.median(figures["minimal_rates"])
    one_client = figures["one_client"]
    catalog = figures["health"]["catalog"]
    print(f"--- {backend}: catalog of {catalog['tracks']:,} tracks ({catalog['rows']:,} rows), gunicorn -w 2, "
          f"wrk -t2 -c{args.connections}, {args.rounds} alternating runs of {args.seconds} s, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    print(f"first /health 200:    {figures['boot']:8.2f} s after gunicorn starts   (target <= 2 s)")
    print(f"lookup GET /predict:  {lookup_rate:8.0f} req/s median of {[round(r) for r in figures['lookup_rates']]} "
          f"({figures['lookup_bad']} non-2xx)")
    print(f"minimal Flask app:    {minimal_rate:8.0f} req/s median of {[round(r) for r in figures['minimal_rates']]} "
          f"(metrics and request log on)")
    print(f"ratio lookup/minimal: {lookup_rate / minimal_rate:8.2f}   (target >= 0.75; both with metrics and request log)")
    off_rate, cpu = statistics.median(figures["off_rates"]), figures["cpu"]
    print(f"  with them off:      {off_rate / minimal_rate:8.2f}   ({off_rate:.0f} req/s median of "
          f"{[round(r) for r in figures['off_rates']]}; VALENCE_METRICS=0 VALENCE_LOG_REQUESTS=0)")
    print(f"worker CPU/request:   {cpu['on']:8.0f} us lookup, {cpu['off']:.0f} us with metrics and log off, "
          f"{cpu['minimal']:.0f} us minimal app (medians)")
    print(f"lookup p50, 1 client: {statistics.median(one_client):8.2f} ms (p99 "
          f"{statistics.quantiles(one_client, n=100)[98]:.2f} ms; minimal app p50 "
          f"{statistics.median(figures['minimal_one']):.2f} ms)   (target < 2 ms)")
    print(f"POST 1,000 songs p50: {statistics.median(figures['posts']):8.1f} ms (max {max(figures['posts']):.1f} ms)"
          f"   (target < 50 ms)")
    print(f"worker RSS:           {', '.join(f'{m:.0f}' for m in figures['rss_start'])} MiB after the first "
          f"requests, {', '.join(f'{m:.0f}' for m in figures['rss_end'])} MiB after the runs (over 10,000 "
          f"lookups each)   (target <= 350 MiB)", flush=True)


def main():
    """Prepare, serve, measure, print, and stop everything started."""
    from valence.catalog.build import build_catalog

    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the throughput runs: apt-get install wrk")
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir = prepare(Path(tmp), args.rows, args.model_dir)
        paths, body = lookup_paths(data), post_body(data)
        targets = [("sqlite", Path(tmp) / "catalog.sqlite")]
        if args.postgres == "auto":
            sys.path.insert(0, str(ROOT / "tests"))
            from postgres_server import start_server

            server = start_server()
            targets.append(("postgresql", server.create_database("catalog")))
        elif args.postgres:
            targets.append(("postgresql", args.postgres))
        try:
            for backend, target in targets:
                started = time.perf_counter()
                build_catalog(data, model_dir, target, log=lambda message: None)
                print(f"built the {backend} catalog in {time.perf_counter() - started:.1f} s", flush=True)
                env = {**os.environ, "VALENCE_CATALOG": str(target), "VALENCE_MODEL_DIR": str(model_dir)}
                # Each app's request log goes to a file, as a log collector takes it.
                with open(Path(tmp) / f"requests-{backend}.log", "wb") as log, \
                        open(Path(tmp) / f"minimal-{backend}.log", "wb") as minimal_log:
                    report(args, backend, measure(args, env, paths, body, log, minimal_log))
        finally:
            if server is not None:
                server.remove()


if __name__ == "__main__":
    main()
