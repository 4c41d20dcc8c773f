"""Soak the API under gunicorn: many mixed good and bad requests, every answer checked.

    python bench/soak_api.py                                  # 50,000 requests, 16 connections, about 2 minutes
    python bench/soak_api.py --requests 3000 --data CSV --model-dir DIR   # the short form the tests run

Starts gunicorn (2 workers, ./gunicorn.conf.py) on 127.0.0.1 with a generated
catalog and a 1-epoch model in a temporary folder (or the given ones; the
catalog CSV is scored into a catalog.sqlite in the temporary folder), sends a
fixed mix of requests over concurrent connections, and compares every answer
with the one an in-process app gives to the same request (status, JSON body,
security headers), and lookups' `expected` with the catalog CSV's valence.
Then it tries what gunicorn itself answers (request line and header limits,
chunked and oversized bodies). Prints counts, req/s and the workers' memory;
exits 1 if any answer was wrong. Stops everything it started; bounded by
--requests and --max-seconds.
"""
import argparse
import http.client
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api_speed import prepare, stop, worker_rss_mib  # noqa: E402
from valence.api.app import SECURITY_HEADERS  # noqa: E402
from valence.config import FEATURE_COLUMNS  # noqa: E402
from valence.api.schemas import MAX_QUERY_TEXT  # noqa: E402

GOOD = {"lookup by id", "lookup by names", "post one", "post batch", "health"}
WARM_UP = 0.05  # share of the requests sent before the "start" memory reading


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000, help="requests to send (default: 50000)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default: 16)")
    parser.add_argument("--rows", type=int, default=20_000, help="catalog rows to generate (default: 20000)")
    parser.add_argument("--data", type=Path, help="serve this catalog CSV instead of generating one")
    parser.add_argument("--model-dir", type=Path, help="serve these bundles instead of training a 1-epoch model")
    parser.add_argument("--max-seconds", type=int, default=600, help="stop sending after this long (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default: 0)")
    return parser.parse_args()


def request_pool(app, data, rng, size):
    """Return [(kind, method, path, body, headers)] of a fixed mix; kinds in GOOD must be answered 200."""
    import pandas as pd

    first = pd.read_csv(data, keep_default_na=False).drop_duplicates("track_id")  # a track's first listing names it
    catalog = SimpleNamespace(**{f"{column}s": first[column].tolist()
                                 for column in ("track_id", "artist_name", "track_name")})
    rows = pd.read_csv(data, keep_default_na=False, nrows=5000)[list(FEATURE_COLUMNS)].to_dict("records")
    json_headers = {"Content-Type": "application/json"}

    def tracks():
        return rng.randrange(len(catalog.track_ids))

    def respell(name):
        return rng.choice([name, name.upper(), name.lower(), f"  {name} ", name.replace(" ", "  ")])

    def query(**values):
        return "/predict?" + urllib.parse.urlencode(values)

    def post(body, kind, headers=json_headers, method="POST"):
        text = body if isinstance(body, str) else json.dumps(body)
        return kind, method, "/predict", text.encode(), headers

    def song():
        return dict(rng.choice(rows), genre=rng.choice(["Pop", "Rock", "Jazz", "Polka"]))

    makers = [  # (weight, maker)
        (25, lambda i: ("lookup by id", "GET", query(track_id=catalog.track_ids[i]), None, {})),
        (20, lambda i: ("lookup by names", "GET", query(artist_name=respell(catalog.artist_names[i]),
                                                        track_name=respell(catalog.track_names[i])), None, {})),
        (8, lambda i: ("not found", "GET", query(artist_name=catalog.artist_names[i],
                                                 track_name=catalog.track_names[i][:-1] + "#"), None, {})),
        (4, lambda i: ("not found", "GET", query(track_id=catalog.track_ids[i][::-1] + "x"), None, {})),
        (5, lambda i: ("bad query", "GET", rng.choice([
            query(artist_name=catalog.artist_names[i]), query(track_id="x", track_name="y"),
            query(artist_name="a" * (MAX_QUERY_TEXT + 1), track_name="b"), query(artist_name="a\x00", track_name="b")]), None, {})),
        (1, lambda i: ("query too long", "GET", query(artist_name="a", track_name="b", pad="x" * 8100), None, {})),
        (15, lambda i: post(song(), "post one")),
        (8, lambda i: post([song() for _ in range(rng.randrange(2, 50))], "post batch")),
        (8, lambda i: post(rng.choice([
            [song(), dict(song(), tempo="fast")], dict(song(), energy=True), "{not json", '{"a": 1, "a": 2}',
            json.dumps(song())[:-1] + ', "key": "C"}', [], "5", ""]), "bad body")),
        (2, lambda i: post(song(), "wrong content type", headers={"Content-Type": "text/plain"})),
        (2, lambda i: post(song(), "wrong method", method=rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"]))),
        (2, lambda i: ("health", "GET", "/health", None, {})),
    ]
    weights, builders = zip(*makers)
    return [rng.choices(builders, weights)[0](tracks()) for _ in range(size)]


def close(a, b):
    """Tell whether two JSON values are equal, floats to within 1e-6 relative."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def reference_answers(app, pool, catalog_valence):
    """Answer every pooled request in-process; check kinds and the catalog's valence; return (status, JSON, bytes)."""
    client = app.test_client()
    answers = []
    for kind, method, path, body, headers in pool:
        response = client.open(path, method=method, data=body, headers=headers)
        want = 200 if kind in GOOD else {"not found": 404, "query too long": 414, "wrong content type": 415,
                                         "wrong method": 405}.get(kind, 400)
        assert response.status_code == want, (kind, path, response.get_data()[:200])
        answer = response.get_json()
        if kind.startswith("lookup"):
            assert abs(answer["expected"] - catalog_valence[answer["track_id"]]) < 1e-9, answer
        answers.append((response.status_code, answer, response.get_data()))
    return answers


def problem_with(answer, status, headers, data):
    """Return why a served answer differs from the reference (status, JSON, bytes), or None."""
    if status != answer[0]:
        return f"status {status}, expected {answer[0]}"
    if any(headers.get(name) != value for name, value in SECURITY_HEADERS):
        return "a security header is missing"
    if headers.get("Content-Type") != "application/json":
        return f"content type {headers.get('Content-Type')}"
    if data != answer[2] and not close(json.loads(data), answer[1]):  # the same bytes, or the same to 1e-6
        return f"body differs: {data[:200]!r}"
    return None


def drive(port, pool, answers, order, stop_at):
    """Send pool[order[i]] over one connection per thread; return (sent per kind, wrong per kind, examples)."""
    counter, sent, wrong, examples, lock = itertools.count(), Counter(), Counter(), [], threading.Lock()

    def run():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad, seen = Counter(), Counter(), []
        while (i := next(counter)) < len(order) and time.monotonic() < stop_at:
            kind, method, path, body, headers = pool[order[i]]
            try:
                connection.request(method, path, body, headers)
                response = connection.getresponse()
                data = response.read()
                problem = problem_with(answers[order[i]], response.status, dict(response.getheaders()), data)
            except (OSError, http.client.HTTPException, ValueError) as error:
                problem = f"{type(error).__name__}: {error}"
                connection.close()
            mine[kind] += 1
            if problem:
                bad[kind] += 1
                seen.append(f"{kind} {method} {path[:80]}: {problem}")
        with lock:
            sent.update(mine)
            wrong.update(bad)
            examples.extend(seen[:5])
    return run, (sent, wrong, examples)


def send_all(port, pool, answers, order, connections, stop_at):
    """Drive the server with `connections` threads until order is done or time is up."""
    run, result = drive(port, pool, answers, order, stop_at)
    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def raw_exchange(port, data, chunks=()):
    """Send raw bytes (then chunks) on a new connection; return (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading everything: read what it said
        reply = b""
        try:
            while block := sock.recv(65536):
                reply += block
        except ConnectionResetError:
            pass  # closed with our unread bytes in its buffer: keep what came before
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def protocol_checks(port):
    """Try what gunicorn itself answers; return [(check, ok, what came back)]."""
    def get(target, extra=b""):
        return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"

    def post(headers, body=b""):
        return b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n" + body

    song = json.dumps({"genre": "Pop", "popularity": 50, "acousticness": 0.1, "danceability": 0.8,
                       "duration_ms": 200000, "energy": 0.7, "instrumentalness": 0.0, "key": "C", "liveness": 0.1,
                       "loudness": -5.0, "mode": "Major", "speechiness": 0.05, "tempo": 120.0,
                       "time_signature": "4/4"}).encode()
    prefix = b"/predict?artist_name=a&track_name=b&pad="
    line_8180 = prefix + b"x" * (8180 - len(b"GET  HTTP/1.1") - len(prefix))
    cases = [  # (check, request bytes, chunks, status, content type, must be in body, must not be in body)
        ("8,180-byte request line: the app's JSON 414", get(line_8180), (), 414, "application/json", b"8,000 bytes", None),
        ("9,000-byte request line: gunicorn's 400", get(b"/predict?x=" + b"<b>" * 3000), (), 400, "text/html",
         b"Request Line is too large", b"<b>"),
        ("user text in gunicorn's page is escaped", b"GET /predict HTTP/<script>\r\nHost: x\r\n\r\n", (), 400,
         "text/html", b"&lt;script&gt;", b"<script>"),
        ("a 9,000-byte header: gunicorn's 431", get(b"/health", b"X-Big: " + b"y" * 9000 + b"\r\n"), (), 431,
         "text/html", b"", None),
        ("101 headers: gunicorn's 431", get(b"/health", b"".join(b"X-%d: 1\r\n" % i for i in range(101))), (), 431,
         "text/html", b"", None),
        ("Content-Length of 2 MB, no body sent: the app's 413", post(b"Content-Type: application/json\r\n"
                                                                       b"Content-Length: 2000000\r\n"), (), 413,
         "application/json", b"larger than", None),
        ("a chunked good body: 200", post(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
         (b"%x\r\n%s\r\n0\r\n\r\n" % (len(song), song),), 200, "application/json", b"prediction", None),
        ("a chunked 2 MB body: the app's 413", post(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
         [b"10000\r\n" + b" " * 0x10000 + b"\r\n"] * 32 + [b"0\r\n\r\n"], 413, "application/json", b"larger than", None),
        ("Transfer-Encoding: gzip with a Content-Length: the app's 400", post(
            b"Content-Type: application/json\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n", b"{}"), (), 400,
         "application/json", b"Transfer-Encoding", None),
        ("Transfer-Encoding: foo: gunicorn's 501", post(b"Transfer-Encoding: foo\r\n"), (), 501, "text/html", b"", None),
        ("still serving: GET /health", get(b"/health"), (), 200, "application/json", b'"status":"ok"', None),
    ]
    results = []
    for check, data, chunks, status, content_type, present, absent in cases:
        try:
            got, headers, body = raw_exchange(port, data, chunks)
        except (OSError, ValueError, IndexError) as error:
            results.append((check, False, f"{type(error).__name__}: {error}"))
            continue
        ok = (got == status and headers.get("Content-Type", "").startswith(content_type) and present in body
              and (absent is None or absent not in body))
        results.append((check, ok, f"{got} {headers.get('Content-Type')} {body[:120]!r}"))
    return results


def start_gunicorn(port, env, log):
    """Start gunicorn with the project's config and 2 workers; return the process once /health answers."""
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
               "musical_valence_predictor:create_app()"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    started = time.monotonic()
    while time.monotonic() - started < 300:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, time.monotonic() - started
        except OSError:
            time.sleep(0.3)
    stop(process)
    raise SystemExit("gunicorn did not answer within 300 s")


def free_port():
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workers(master_pid):
    """Return the process ids of a gunicorn master's workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = stat.read_text().rsplit(") ", 1)[-1].split()[1]  # after "pid (name) state"
        except OSError:
            continue
        if parent == str(master_pid):
            found.append(int(stat.parent.name))
    return sorted(found)


def main():
    """Prepare, serve, soak, check, print, and stop everything started."""
    import pandas as pd

    from valence.api.app import create_app
    from valence.catalog.build import build_catalog

    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, model_dir = (args.data, args.model_dir)
        if data is None or model_dir is None:
            generated, trained = prepare(work, args.rows, model_dir)
            data = data or generated
            model_dir = model_dir or trained
        target = work / "catalog.sqlite"  # beside the run, never in a model folder it was given
        build_catalog(data, model_dir, target, log=lambda message: None)
        env = {**os.environ, "VALENCE_CATALOG": str(target), "VALENCE_MODEL_DIR": str(model_dir)}
        for name in ("FLASK_DEBUG",):
            env.pop(name, None)
        app = create_app({"VALENCE_CATALOG": str(target), "VALENCE_MODEL_DIR": str(model_dir)})
        valence = pd.read_csv(data, keep_default_na=False).groupby("track_id")["valence"].mean().to_dict()
        rng = random.Random(args.seed)
        pool = request_pool(app, data, rng, min(args.requests, 4000))
        answers = reference_answers(app, pool, valence)
        order = [rng.randrange(len(pool)) for _ in range(args.requests)]
        port, log = free_port(), open(work / "gunicorn.log", "w+")
        server, boot = start_gunicorn(port, env, log)
        try:
            pids, rss_boot = workers(server.pid), worker_rss_mib(server.pid)
            started = time.monotonic()
            stop_at = started + args.max_seconds
            warm = int(len(order) * WARM_UP)
            sent, wrong, examples = send_all(port, pool, answers, order[:warm], args.connections, stop_at)
            rss_start = worker_rss_mib(server.pid)
            more = send_all(port, pool, answers, order[warm:], args.connections, stop_at)
            seconds = time.monotonic() - started
            rss_end, pids_end = worker_rss_mib(server.pid), workers(server.pid)
            sent, wrong, examples = sent + more[0], wrong + more[1], examples + more[2]
            checks = protocol_checks(port)
        finally:
            stop(server)
        log.seek(0)
        tracebacks = log.read().count("Traceback")
    report(args, boot, sent, wrong, examples, seconds, (rss_boot, rss_start, rss_end), pids != pids_end, checks,
           tracebacks, len(pool))
    failed = sum(wrong.values()) or tracebacks or pids != pids_end or not all(ok for _, ok, _ in checks)
    raise SystemExit(1 if failed or sum(sent.values()) < args.requests else 0)


def report(args, boot, sent, wrong, examples, seconds, rss, restarted, checks, tracebacks, distinct):
    """Print the soak's figures."""
    total = sum(sent.values())
    good = sum(count for kind, count in sent.items() if kind in GOOD)
    good_wrong = sum(count for kind, count in wrong.items() if kind in GOOD)
    print(f"gunicorn -w 2 up in {boot:.1f} s; {total:,} requests ({distinct:,} distinct) over {args.connections} "
          f"connections in {seconds:.1f} s: {total / seconds:,.0f} req/s, {os.cpu_count()} CPUs")
    for kind, count in sorted(sent.items(), key=lambda item: -item[1]):
        print(f"  {kind:20} {count:7,}  wrong: {wrong[kind]}")
    print(f"good requests: {good:,}, errors: {good_wrong}; bad requests: {total - good:,}, "
          f"wrong answers: {sum(wrong.values()) - good_wrong}")
    for example in examples[:10]:
        print(f"  {example}")
    print("worker RSS: " + "; ".join(f"{name} {', '.join(f'{m:.0f}' for m in sizes)} MiB" for name, sizes in zip(
        ("after boot", f"after {WARM_UP:.0%} warm-up", "at the end"), rss)))
    print(f"workers restarted: {'yes' if restarted else 'no'}; tracebacks in gunicorn's log: {tracebacks}")
    for check, ok, what in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {check}" + ("" if ok else f": {what}"))


if __name__ == "__main__":
    main()
