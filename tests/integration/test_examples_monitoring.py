"""The monitoring examples: the Grafana dashboard (examples/grafana/) and the Prometheus
rules (examples/prometheus/). Every expression must parse (promtool) and select only
metrics sluice exports, with SPEC.md section 8's labels: the exports are read from a real
scrape, plus SPEC's list for metrics a build may not have yet."""
import json
import os
import re
import shutil

import pytest
import yaml

from conftest import base_config, get
from examples_support import (EXAMPLES, SPEC_METRICS, check_selectors, exported_metrics,
                              promtool, promtool_check_exprs, selectors)

DASHBOARD = os.path.join(EXAMPLES, "grafana", "sluice-dashboard.json")
RULES_DIR = os.path.join(EXAMPLES, "prometheus")
RULES = os.path.join(RULES_DIR, "sluice-rules.yaml")
RULES_TEST = os.path.join(RULES_DIR, "sluice-rules.test.yaml")

# Grafana's own variables, given a value that keeps an expression valid for promtool.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                    "__range_s": "3600", "__interval_ms": "60000"}

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool is not installed (scripts/install-deps.sh --test)")


@pytest.fixture(scope="module")
def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


@pytest.fixture
def families(sluice_factory, upstream):
    """{name: type} of every metric sluice exports: a scrape of a running sluice, plus
    SPEC's metrics that this build does not export yet. A scraped family that SPEC's table
    names must have the table's type."""
    s = sluice_factory(base_config(), upstream=upstream)
    scraped = exported_metrics(get(s.admin_port, "/metrics").body.decode())
    assert "sluice_requests_total" in scraped
    for name, kind in scraped.items():
        assert SPEC_METRICS.get(name, (kind,))[0] == kind, f"{name} is a {kind}"
    out = {name: kind for name, (kind, _) in SPEC_METRICS.items()}
    out.update(scraped)
    return out


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def substitute(expr, variables):
    """Grafana's $var, ${var} and ${var:format} replaced: built-ins by a duration, the
    dashboard's variables by ".*"; any other variable is an error."""
    def value(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        assert name in variables, f"unknown variable ${name} in {expr!r}"
        return ".*"
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_exprs(dash):
    """Every PromQL expression of the dashboard, variables substituted: panel targets,
    annotation queries and the series selectors of the variables' label_values()."""
    variables = {v["name"] for v in dash["templating"]["list"]}
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            out.append(substitute(t["expr"], variables))
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            out.append(substitute(a["expr"], variables))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, f"variable {v['name']}: {q!r} is not label_values(selector, label)"
            out.append(substitute(m.group(1), variables))
    return out


def test_dashboard_panels_are_well_formed(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 10
    for p in graphs:
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance", "route"} <= names


def test_dashboard_covers_what_an_operator_watches(dashboard):
    """Allowed, limited and denied rates per route, p99 duration, store errors, Redis
    connected, deny-cache hits and memory keys each have a panel."""
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for needle in ('sluice_requests_total{job=~"$job", instance=~"$instance", route=~"$route", decision="allowed"}',
                   'decision="limited"', 'result="deny"',
                   "histogram_quantile(0.99, sum by (route, le) (rate(sluice_request_duration_seconds_bucket",
                   "sluice_store_errors_total", "sluice_redis_connected",
                   "sluice_deny_cache_hits_total", "sluice_memory_keys"):
        assert needle in exprs, needle


def test_dashboard_queries_parse_and_name_exported_metrics(dashboard, families, tmp_path):
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 20
    rc, out = promtool_check_exprs(str(tmp_path), exprs)
    assert rc == 0, out
    problems = [p for e in exprs for p in check_selectors(e, families)]
    assert problems == []


def test_selector_check_catches_a_wrong_name_or_label(families):
    """The check above can fail: a misspelt metric, a histogram without _bucket, a label
    the metric lacks and a decision SPEC does not name are all reported."""
    assert check_selectors('rate(sluice_request_total[5m])', families)
    assert check_selectors('rate(sluice_request_duration_seconds[5m])', families)
    assert check_selectors('sluice_memory_keys{route="x"}', families)
    assert check_selectors('sluice_requests_total{decision="denied"}', families)
    assert check_selectors('sum by (route) (rate(sluice_requests_total[5m]))', families) == []
    assert [n for n, _ in selectors('a_b{x="1"} / on (job) c offset 5m')] == ["a_b", "c"]


def load_rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def test_rules_pass_promtool_check_rules():
    rc, out = promtool("check", "rules", RULES)
    assert rc == 0, out
    assert "SUCCESS" in out


def test_rules_unit_test_passes():
    """promtool test rules: input series in, the alerts expected at each time out."""
    rc, out = promtool("test", "rules", os.path.basename(RULES_TEST), cwd=RULES_DIR)
    assert rc == 0, out
    assert "SUCCESS" in out


def test_rules_name_exported_metrics_and_cover_the_alerts(families):
    rules = [r for g in load_rules()["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    problems = [p for r in rules for p in check_selectors(r["expr"], families, recorded)]
    assert problems == []
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert set(alerts) >= {"SluiceStoreErrors", "SluiceRedisDisconnected",
                           "SluiceLimitedRatioJump", "SluiceConfigReloadFailed"}
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"], name


def test_rules_unit_test_fails_when_an_alert_is_broken(tmp_path):
    """The unit test really depends on the rules: with the Redis alert's threshold
    changed it fails."""
    text = open(RULES).read().replace("sluice_redis_connected == 0", "sluice_redis_connected == 1")
    assert text != open(RULES).read()
    (tmp_path / os.path.basename(RULES)).write_text(text)
    shutil.copy(RULES_TEST, tmp_path)
    rc, out = promtool("test", "rules", os.path.basename(RULES_TEST), cwd=str(tmp_path))
    assert rc != 0
    assert "SluiceRedisDisconnected" in out
