"""How the catalog scales: build and look up a catalog of many generated tracks, beside one of 232,725 rows.

    python bench/catalog_scale.py                          # 10,000,000 generated tracks, SQLite (long: not in CI)
    python bench/catalog_scale.py --tracks 1000000         # a smaller run
    python bench/catalog_scale.py --postgres auto          # also PostgreSQL (a throwaway local cluster)
    python bench/catalog_scale.py --postgres postgresql://user@host/db
    python bench/catalog_scale.py --postgres auto --skip-sqlite   # PostgreSQL only

For each size and backend it prints the build's time (as users time it, and as
the build prints it: for PostgreSQL with its copy of the staged file into the
database), its peak memory (the build
is a child process: `--build-catalog` as users run it; the peak RSS of its largest
process, and the peak of its processes' summed PSS, as it predicts in two forked
ones that share the parent's pages), the catalog's size, and
the p50 of lookups by track_id and by names, in a fresh process that opens the
catalog and makes 10,000 lookups, with that process's memory and the time to its
first answer. Everything runs in a temporary folder and on 127.0.0.1.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SMALL = 232_725  # rows of the Kaggle file
CHUNK = 250_000  # rows generated and written at a time
# The child that measures lookups: open the catalog, 10,000 lookups, report its memory.
PROBE = r"""
import json, random, resource, statistics, sys, time
started = time.perf_counter()
from valence.catalog.store import open_store
store = open_store(sys.argv[1])
ids = json.loads(sys.argv[2])
first = store.by_track_id(ids[0][0])
ready = time.perf_counter() - started
by_id, by_names = [], []
for i in range(10_000):
    track_id, artist, track = ids[i % len(ids)]
    t = time.perf_counter()
    assert store.by_track_id(track_id) is not None
    by_id.append(time.perf_counter() - t)
    t = time.perf_counter()
    assert store.by_names(artist, track) is not None
    by_names.append(time.perf_counter() - t)
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
walk = None
if not sys.argv[1].startswith("postgresql://"):  # what walking every page at open would cost (warm)
    t = time.perf_counter()
    assert store.connection.execute("PRAGMA quick_check(3)").fetchall() == [("ok",)]
    walk = time.perf_counter() - t
print(json.dumps({"ready_s": ready, "id_p50_us": statistics.median(by_id) * 1e6,
                  "names_p50_us": statistics.median(by_names) * 1e6, "rss_mib": rss, "walk_s": walk}))
"""


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=10_000_000, help="rows of the large catalog (default: 10000000)")
    parser.add_argument("--postgres", metavar="URL", help="also measure PostgreSQL: a URL, or 'auto' for a "
                                                          "throwaway local cluster (default: SQLite only)")
    parser.add_argument("--model-dir", type=Path, help="score with these bundles instead of a 1-epoch model")
    parser.add_argument("--skip-sqlite", action="store_true", help="with --postgres: measure PostgreSQL only")
    return parser.parse_args()


def write_rows(path, rows, seed):
    """Write `rows` generated songs to a CSV, a chunk at a time (never all in memory); return 2,000 samples."""
    from valence.data.synthetic import generate_dataset

    samples, chunks = [], -(-rows // CHUNK)
    with open(path, "w", encoding="utf-8", newline="") as out:
        for i, start in enumerate(range(0, rows, CHUNK)):
            chunk = generate_dataset(min(CHUNK, rows - start), seed=seed * 1000 + i)
            chunk.to_csv(out, index=False, header=(i == 0))
            picked = chunk.sample(min(len(chunk), -(-2000 // chunks)), random_state=i)
            samples += picked[["track_id", "artist_name", "track_name"]].values.tolist()
    return samples[:2000]


def sample(path, n=2000):
    """Return n (track_id, artist_name, track_name) of a CSV's rows, at random."""
    import pandas as pd

    columns = ["track_id", "artist_name", "track_name"]
    frame = pd.read_csv(path, usecols=columns, keep_default_na=False)[columns]  # usecols keeps the file's order
    return frame.sample(n, random_state=0).values.tolist()


def build(data, model_dir, target):
    """Run --build-catalog in a child process; return (seconds, peak RSS of its largest process in MiB, peak
    of the summed PSS of it and its prediction processes in MiB, sampled every 0.2 s, and what it printed of
    its own time: the build's, and of it the copy into PostgreSQL's, or None)."""
    command = [sys.executable, str(ROOT / "musical_valence_predictor.py"), "--build-catalog", "--data", str(data),
               "--model-dir", str(model_dir), "--catalog", str(target)]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # a few lines, which a pipe holds
    peak_pss = 0.0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        peak_pss = max(peak_pss, tree_pss(child.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"--build-catalog failed with status {child.returncode}: {' '.join(command)}")
    printed = child.stdout.read()
    own = re.search(r"^catalog: .* in ([0-9.]+) s$", printed, re.MULTILINE)
    copy = re.search(r"^copied .* in ([0-9.]+) s and swapped", printed, re.MULTILINE)
    return seconds, usage.ru_maxrss / 1024, peak_pss, (float(own[1]) if own else None, float(copy[1]) if copy else None)


def tree_pss(pid):
    """The summed proportional set size (MiB) of a process and its children: pages they share (a fork's) are
    counted once between them, not once in each."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        total += int(text.split("Pss:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return 0.0
    return total + sum(tree_pss(int(child)) for child in children)


def probe(target, samples):
    """Measure lookups in a fresh process that opens the catalog; return its figures."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(target), json.dumps(samples)], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)


def size_of(target):
    """Return the catalog's size in MB: the file, or the PostgreSQL tables of its generation."""
    if not str(target).startswith("postgresql://"):
        return Path(target).stat().st_size / 1e6
    import psycopg

    with psycopg.connect(str(target)) as connection:
        generation = connection.execute("SELECT generation FROM valence_catalog").fetchone()[0]
        total = connection.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                                   "WHERE c.relname LIKE %s AND c.relkind = 'r'", (f"valence_%_{generation}",))
        return float(total.fetchone()[0]) / 1e6


def main():
    """Generate, build, probe, print."""
    from api_speed import prepare

    args = parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="catalog-scale-") as tmp:
        work = Path(tmp)
        small_data, model_dir = prepare(work, SMALL, args.model_dir)
        small_samples = sample(small_data)
        started = time.perf_counter()
        big_data = work / "big.csv"
        big_samples = write_rows(big_data, args.tracks, seed=2)
        print(f"generated {args.tracks:,} rows ({big_data.stat().st_size / 1e9:.2f} GB) in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        targets = [] if args.skip_sqlite and args.postgres else [("sqlite", lambda name: work / f"{name}.sqlite")]
        if args.postgres:
            if args.postgres == "auto":
                sys.path.insert(0, str(ROOT / "tests"))
                from postgres_server import start_server

                server = start_server()
                targets.append(("postgresql", lambda name: server.create_database(name)))
            else:
                targets.append(("postgresql", lambda name, url=args.postgres: url))
        try:
            for backend, make_target in targets:
                rows = []
                for name, data, samples, count in (("small", small_data, small_samples, SMALL),
                                                   ("big", big_data, big_samples, args.tracks)):
                    target = make_target(name)
                    seconds, peak, pss, (own, copy) = build(data, model_dir, target)
                    figures = probe(target, samples)
                    rows.append((count, seconds, peak, size_of(target), figures))
                    inside = "" if own is None else (f" (as it prints it {own:.1f} s" + (
                        "" if copy is None else f", of which the copy into PostgreSQL {copy:.1f} s") + ")")
                    print(f"{backend:10} {count:>11,} rows: build {seconds:7.1f} s{inside}, peak RSS {peak:6.0f} MiB "
                          f"(all its processes' PSS {pss:6.0f} MiB), "
                          f"size {rows[-1][3]:8.1f} MB; lookup p50 by id {figures['id_p50_us']:6.1f} us, by names "
                          f"{figures['names_p50_us']:6.1f} us; reader RSS {figures['rss_mib']:5.0f} MiB, first "
                          f"answer {figures['ready_s'] * 1000:5.0f} ms" + ("" if figures["walk_s"] is None else
                          f"; quick_check of every page {figures['walk_s']:.2f} s"), flush=True)
                small, big = rows[0][4], rows[1][4]
                print(f"{backend:10} build: {SMALL:,} rows {rows[0][1]:.1f} s (target <= 5 s), {args.tracks:,} rows "
                      f"{rows[1][1]:.1f} s ({rows[1][1] / rows[0][1]:.1f}x for {args.tracks / SMALL:.1f}x the rows; "
                      f"target <= 400 s at 10,000,000)", flush=True)
                print(f"{backend:10} large/small: lookup p50 by id {big['id_p50_us'] / small['id_p50_us']:.2f}x, "
                      f"by names {big['names_p50_us'] / small['names_p50_us']:.2f}x (target <= 1.5x); reader RSS "
                      f"{big['rss_mib'] - small['rss_mib']:+.0f} MiB; first answer "
                      f"{(big['ready_s'] - small['ready_s']) * 1000:+.0f} ms", flush=True)
        finally:
            if server is not None:
                server.remove()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
