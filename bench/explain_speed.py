"""Benchmark explanations: latency in process and under gunicorn, and the estimate against exact values.

    python bench/explain_speed.py                     # generate 30,000 rows, train a 5-member model, measure
    python bench/explain_speed.py --model-dir models  # explain with bundles you trained (songs still generated)

Targets: one song p50 <= 30 ms under gunicorn, a list of 100 songs <= 1 s, a worker's first
explanation after start <= 300 ms. The explainer (permutation sampling by the served numpy network)
is timed at its permutation count and at twice it, and measured against exact Shapley values (all
2**16 coalitions, enumerated through the same network), as the reasons for the choices
valence/model/explain.py makes.
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000,
                        help="generated rows; below 100,000 the model has 5 members (default: 30000)")
    parser.add_argument("--model-dir", type=Path, help="explain with these bundles instead of training a quick model")
    parser.add_argument("--exact-songs", type=int, default=10,
                        help="songs whose exact Shapley values are computed to measure the estimate (default: 10)")
    parser.add_argument("--requests", type=int, default=300, help="one-song requests timed under gunicorn (default: 300)")
    parser.add_argument("--port", type=int, default=8741, help="port of the gunicorn run (default: 8741)")
    parser.add_argument("--no-server", action="store_true", help="measure in process only")
    return parser.parse_args()


def timed_ms(function, repeat):
    """Call function repeat times; return the milliseconds of each call."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def exact_values(explainer, numeric, categorical, chunk=4096):
    """Return one encoded song's exact Shapley values: all 2**G coalitions through the served network."""
    import math

    import numpy as np

    n_groups = len(explainer.permutations[0])
    codes = np.arange(2 ** n_groups)
    coalitions = ((codes[:, None] >> np.arange(n_groups)) & 1).astype(np.float32)
    deltas, _ = explainer.group_deltas(numeric, categorical)
    values = np.concatenate([explainer.coalition_values(coalitions[i:i + chunk], deltas)[0]
                             for i in range(0, len(codes), chunk)]).astype(np.float64)
    sizes = coalitions.sum(axis=1).astype(int)
    weight = np.array([math.factorial(s) * math.factorial(n_groups - s - 1) / math.factorial(n_groups)
                       for s in range(n_groups)])
    return np.array([(weight[sizes[without]] * (values[without | (1 << g)] - values[without])).sum()
                     for g in range(n_groups) for without in [codes[coalitions[:, g] == 0]]])


def in_process(frame, bundle, exact_songs):
    """Print the in-process figures: the explainer at its permutation count and at twice it, exact values,
    and each estimate's error."""
    import numpy as np

    from valence.model.explain import GROUPS, N_PERMUTATIONS, Explainer

    explainers = [Explainer(bundle, n_permutations=n) for n in (N_PERMUTATIONS, 2 * N_PERMUTATIONS)]
    one, hundred = frame.head(1), frame.head(100)
    cfg = bundle.network.config
    print(f"model: {cfg.n_members} member(s), hidden {cfg.hidden}; numpy, one BLAS thread")
    for explainer in explainers:
        explainer.explain(hundred)  # warm up
        single = timed_ms(lambda: explainer.explain(one), 200)
        batch = timed_ms(lambda: explainer.explain(hundred), 10)
        label = f"{len(explainer.permutations)} permutations"
        print(f"{label}, one song (encoding included): p50 {statistics.median(single):7.2f} ms "
              f"(p90 {statistics.quantiles(single, n=10)[8]:.2f} ms)")
        print(f"{label}, 100 songs:                    p50 {statistics.median(batch):7.1f} ms")

    explainer = explainers[0]
    arrays = bundle.encoder.transform(frame.head(exact_songs))
    numeric, categorical = arrays["numeric"], arrays["categorical"]
    estimates = [e.explain_arrays(numeric, categorical).contributions for e in explainers]
    exact, exact_ms = [], []
    for i in range(len(numeric)):
        started = time.perf_counter()
        exact.append(exact_values(explainer, numeric[i:i + 1], categorical[i:i + 1]))
        exact_ms.append((time.perf_counter() - started) * 1000)
    print(f"exact Shapley values (2**{len(GROUPS)} coalitions), one song: p50 {statistics.median(exact_ms):7.1f} ms")
    for e, estimate in zip(explainers, estimates):
        errors = np.abs(estimate - np.stack(exact))
        print(f"{len(e.permutations)} permutations - exact over {len(numeric)} songs x {len(GROUPS)} groups: "
              f"mean |error| {errors.mean():.5f}, p95 {np.quantile(errors, 0.95):.5f}, max {errors.max():.5f} "
              f"(valence units)")


def under_gunicorn(data, model_dir, port, count):
    """Print request latencies of the explanation routes under gunicorn (2 workers), one client at a time."""
    import pandas as pd
    from api_speed import latencies_ms, request, start_server, stop

    from valence.config import FEATURE_COLUMNS

    frame = pd.read_csv(data, keep_default_na=False).sample(frac=1.0, random_state=2)
    ids = [f"/explain?track_id={t}" for t in frame["track_id"].head(count)]
    lookups = [path.replace("/explain", "/predict") for path in ids]
    searches = [f"/search?{urllib.parse.urlencode({'q': name[:n]})}" for name, n in zip(frame["artist_name"].head(count), itertools.cycle((2, 3, 5)))]
    one = json.dumps(frame[list(FEATURE_COLUMNS)].iloc[0].to_dict())
    hundred = json.dumps(frame[list(FEATURE_COLUMNS)].head(100).to_dict("records"))
    from valence.catalog.build import build_catalog

    catalog = Path(data).with_name("catalog.sqlite")
    build_catalog(data, model_dir, catalog, log=lambda message: None)  # what the workers look tracks up in
    env = {**os.environ, "VALENCE_CATALOG": str(catalog), "VALENCE_MODEL_DIR": str(model_dir)}
    # The request log goes nowhere: a line per request would bury the figures.
    server, boot = start_server("musical_valence_predictor:create_app()", port, env, "/health",
                                stderr=subprocess.DEVNULL)
    try:
        started = time.perf_counter()
        assert request(port, "GET", ids[0])[0] == 200
        first = (time.perf_counter() - started) * 1000
        print(f"the first GET /explain after start: {first:.0f} ms")
        latencies_ms(port, "GET", ids, count=50)  # warm both workers
        results = {
            "GET /predict?track_id= (lookup, for reference)": latencies_ms(port, "GET", lookups, count=count),
            "GET /explain?track_id=": latencies_ms(port, "GET", ids, count=count),
            "POST /explain, one song": latencies_ms(port, "POST", ["/explain"], one, count=count),
            "GET /search?q= (2, 3, 5 letters)": latencies_ms(port, "GET", searches, count=count),
            "POST /explain, 100 songs": latencies_ms(port, "POST", ["/explain"], hundred, count=20),
        }
    finally:
        stop(server)
    print(f"gunicorn -w 2 on 127.0.0.1 (up in {boot:.1f} s), one client, keep-alive:")
    for name, times in results.items():
        print(f"  {name:48s} p50 {statistics.median(times):7.1f} ms   p90 {statistics.quantiles(times, n=10)[8]:7.1f} ms"
              f"   max {max(times):7.1f} ms   ({len(times)} requests)")
    return catalog


def cpu_per_request(catalog, model_dir, frame, count):
    """Print the CPU time one request costs in process (a test client, one BLAS thread).

    CPU time is what a worker spends on a request; on a busy machine the wall time of a
    request also holds the time spent waiting for a core, which CPU time leaves out.
    """
    from valence.api.app import create_app
    from valence.config import FEATURE_COLUMNS

    app = create_app({"VALENCE_CATALOG": str(catalog), "VALENCE_MODEL_DIR": str(model_dir),
                      "VALENCE_THREADS": 1, "VALENCE_LOG_REQUESTS": False})
    client = app.test_client()
    songs = frame[list(FEATURE_COLUMNS)].to_dict("records")
    requests = {
        "GET /predict?track_id= (lookup, for reference)": lambda i: client.get(f"/predict?track_id={frame['track_id'].iloc[i]}"),
        "GET /explain?track_id=": lambda i: client.get(f"/explain?track_id={frame['track_id'].iloc[i]}"),
        "POST /explain, one song": lambda i: client.post("/explain", json=songs[i]),
        "POST /explain, 100 songs": lambda i: client.post("/explain", json=songs[:100]),
    }
    print("CPU time per request, in process (test client, one BLAS thread):")
    for name, send in requests.items():
        n = count if "100 songs" not in name else 20
        assert send(0).status_code == 200, name
        times = []
        for i in range(n):
            started = time.process_time()
            send(i % len(frame))
            times.append((time.process_time() - started) * 1000)
        print(f"  {name:48s} p50 {statistics.median(times):7.1f} ms   p90 {statistics.quantiles(times, n=10)[8]:7.1f} ms"
              f"   ({n} requests)")


def main():
    """Prepare, measure in process (and under gunicorn), print."""
    import pandas as pd
    import threadpoolctl

    from api_speed import prepare

    from valence.model.bundle import load_bundle_from_dir

    args = parse_args()
    threadpoolctl.threadpool_limits(1, user_api="blas")  # what each gunicorn worker uses
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir = prepare(Path(tmp), args.rows, args.model_dir, epochs=3)
        frame = pd.read_csv(data, keep_default_na=False).sample(frac=1.0, random_state=1).head(200)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
        in_process(frame, load_bundle_from_dir(model_dir, "regression"), args.exact_songs)
        if not args.no_server:
            catalog = under_gunicorn(data, model_dir, args.port, args.requests)
            cpu_per_request(catalog, model_dir, frame, min(args.requests, len(frame)))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
