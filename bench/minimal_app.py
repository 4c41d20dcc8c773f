"""The yardstick for bench/api_speed.py: a Flask app that answers a constant JSON body, metrics and request log on.

Like the API, it counts each request in prometheus_client (a Counter and a
Histogram; multiprocess mode under gunicorn.conf.py's directory) and writes
one JSON line per request to stderr with the logging module, both before the
answer leaves: the comparison is of the route, not of what operators watch.
"""
import json
import logging
import os
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def create_app():
    """Build an app with one route that returns a small constant JSON object, and /metrics."""
    app = Flask(__name__)
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry = None if multiprocess else CollectorRegistry()  # the files hold the figures under gunicorn
    requests = Counter("minimal_http_requests", "Requests answered.", ("route", "method", "status"), registry=registry)
    latency = Histogram("minimal_http_request_duration_seconds", "Time to answer a request.", ("route", "method"),
                        registry=registry)
    log = logging.getLogger("minimal.requests")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    @app.before_request
    def start_clock():
        """Note when the request began."""
        g.started = time.perf_counter()

    @app.after_request
    def record(response):
        """Count the request and log it as one JSON line."""
        seconds = time.perf_counter() - g.started
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        requests.labels(route, request.method, str(response.status_code)).inc()
        latency.labels(route, request.method).observe(seconds)
        log.info(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "method": request.method,
                             "route": route, "status": response.status_code, "duration_ms": seconds * 1000}))
        return response

    @app.get("/")
    def constant():
        """Answer the same JSON every time."""
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics():
        """Answer the metrics, summed over the workers under gunicorn."""
        source = registry
        if source is None:
            source = CollectorRegistry()
            MultiProcessCollector(source)
        return generate_latest(source), {"Content-Type": "text/plain; version=0.0.4"}

    return app
