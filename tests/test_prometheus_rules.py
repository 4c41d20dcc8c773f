"""The rules shipped in docs/prometheus.yml, evaluated against a real scrape of /metrics."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

RULES_DOC = Path(__file__).resolve().parents[1] / "docs" / "prometheus.yml"
SELECTOR = re.compile(r"\b(valence_[a-z_]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def shipped_rules():
    """Return the rules of the commented valence-rules.yml block of docs/prometheus.yml."""
    lines = RULES_DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# groups:"))
    text = "\n".join(line[2:] for line in lines[start:] if line.startswith("#"))
    return yaml.safe_load(text)["groups"][0]["rules"]


def scrape_samples(client):
    """Return [(sample name, labels)] of a scrape."""
    text = client.get("/metrics").get_data(as_text=True)
    return [(s.name, s.labels) for family in text_string_to_metric_families(text) for s in family.samples]


def matches(labels, matchers):
    """Return whether a sample's labels satisfy PromQL matchers (regexes match whole values)."""
    for name, op, value in matchers:
        have = labels.get(name, "")
        hit = re.fullmatch(value, have) is not None if op in ("=~", "!~") else have == value
        if hit != (op in ("=", "=~")):
            return False
    return True


@pytest.fixture(scope="module")
def scraped(make_app, tmp_path_factory):
    """A scrape of an app that answered a 200, a 404 and a 503 lookup and failed to load a catalog."""
    served = make_app().test_client()
    served.get("/predict?track_id=nope")
    served.get("/predict?artist_name=Duo Act&track_name=Shared Song")
    broken = make_app(catalog=tmp_path_factory.mktemp("none") / "absent.sqlite").test_client()
    assert broken.get("/predict?track_id=X").status_code == 503
    return scrape_samples(broken) + scrape_samples(served)  # metrics kept per app in one process: both


@pytest.mark.parametrize("rule", shipped_rules(), ids=lambda rule: rule.get("alert") or rule.get("record"))
def test_every_selector_of_a_rule_selects_series_with_the_labels_it_uses(scraped, rule):
    expr = rule["expr"]
    grouped = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    selectors = SELECTOR.findall(expr)
    assert selectors, expr
    for metric, inside in selectors:
        matchers = MATCHER.findall(inside)
        selected = [labels for name, labels in scraped if name == metric and matches(labels, matchers)]
        assert selected, f"{metric}{{{inside}}} selects nothing in a scrape that has {sorted({n for n, _ in scraped})}"
        for labels in selected:
            assert grouped <= set(labels), f"{metric} has no label {grouped - set(labels)} ({expr})"


def test_the_errors_alert_selects_the_503s_the_app_answered(scraped):
    errors = next(rule for rule in shipped_rules() if rule.get("alert") == "ValenceErrors")
    metric, inside = SELECTOR.findall(errors["expr"])[0]
    statuses = {labels["status"] for name, labels in scraped if name == metric and matches(labels, MATCHER.findall(inside))}
    assert statuses == {"503"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_fires_the_errors_alert_on_series_shaped_like_the_scrape(scraped, tmp_path):
    rules = tmp_path / "valence-rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "valence", "rules": shipped_rules()}]}))
    assert subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True).returncode == 0
    # Every counter series of the scrape grows by one a minute for 20 minutes.
    series = [{"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
               "values": "0+1x20"} for name, labels in scraped
              if name.endswith(("_total", "_count", "_bucket"))]
    test = {"rule_files": [str(rules)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "15m", "alertname": "ValenceErrors",
                                            "exp_alerts": [{"exp_labels": {}}]}]}]}
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump(test))
    result = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
