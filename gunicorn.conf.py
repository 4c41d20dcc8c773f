"""Settings gunicorn reads from the working directory (its default config file).

A worker starts in about a second: it reads no data file and predicts nothing at
start; it loads the model bundles and opens the catalog (a SQLite file or a
PostgreSQL pool) on its first request, after the fork, and checks every second
for a new pair. gunicorn's 30 s worker timeout is then ample: a worker that
stops answering is restarted instead of hanging.
"""
timeout = 30

# gunicorn answers requests over these limits itself, with a small HTML page
# (text escaped) and none of the app's JSON or security headers. The request
# line gets gunicorn's largest allowed value (its default is 4,094), so that a
# lookup with two 500-character names reaches the app, which answers query
# strings over 8,000 bytes with a JSON 414; only lines over 8,190 bytes get
# gunicorn's 400. Headers keep gunicorn's defaults (431 beyond them).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


# Prometheus metrics summed over the workers (valence/api/telemetry.py): the master
# gives every worker one directory, cleared at each start, before any of them
# imports prometheus_client; a dead worker's live gauges are dropped, its
# counters kept (so none of its requests is lost, nor counted twice by its
# replacement, which starts files of its own). An operator's
# PROMETHEUS_MULTIPROC_DIR is used as it is; else a temporary one, removed at exit.
def on_starting(server):
    """Check the VALENCE_* settings; create or clear the metrics directory and hand it to the workers."""
    import os
    import tempfile

    from valence.api import environment
    from valence.api.telemetry import MULTIPROC_ENV, clear_multiprocess_dir, dead_worker_marker
    from valence.config import ValenceError

    try:  # every VALENCE_* setting, read as the app reads it: a bad one stops gunicorn before any worker boots
        given = environment.from_environment()
    except ValenceError as error:
        raise SystemExit(f"gunicorn.conf.py: {error}") from None
    if server.cfg.preload_app and given.get("VALENCE_METRICS", True):
        # The app, prometheus_client with it, was loaded before this hook could set the directory.
        raise SystemExit("--preload is not supported with the metrics on: start without it, or set VALENCE_METRICS=0")
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        path = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="valence-metrics-")
        server.valence_metrics_tmp = path
    clear_multiprocess_dir(path)
    server.valence_mark_dead = dead_worker_marker(path)  # imports prometheus_client now, with the directory set


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited."""
    server.valence_mark_dead(worker.pid)


def on_exit(server):
    """Remove the temporary metrics directory made at start."""
    import shutil

    path = getattr(server, "valence_metrics_tmp", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
