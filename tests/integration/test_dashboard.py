"""The dashboard (SPEC.md section 13) over HTTP: GET / is one page of at most 64 KiB that
asks for nothing from elsewhere and loads without the token, while /dashboard.json asks for
admin.token; the JSON's counts agree with /metrics after a known burst, its charts hold the
burst once sampled, its top keys are /top's; a hundred used routes answer within 64 KiB;
a reload's routes and result show. The page in a real browser: test_dashboard_browser.py."""
import re

from conftest import get, request, http, wait_until
from dashboard_support import (BEARER, BURST, TOKEN, burst, dashboard, route, start,
                               wait_sampled)

PAGE_MAX = 64 * 1024


def test_page_is_self_contained_small_and_open(sluice_factory, upstream):
    s = start(sluice_factory, upstream)
    resp = get(s.admin_port, "/")
    assert resp.status == 200, resp
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    page = resp.body.decode()
    assert len(resp.body) <= PAGE_MAX, len(resp.body)
    print(f"page: {len(resp.body)} bytes")
    # Nothing from elsewhere: no script, style, font or image by address; the one URL is
    # the SVG namespace, a name and never fetched.
    assert not re.search(r"\bsrc\s*=", page)
    assert re.findall(r"\bhref\s*=\s*\"([^\"]*)\"", page) == ["data:,"]
    assert re.findall(r"https?://[^\s\"')]+", page) == ["http://www.w3.org/2000/svg"]
    assert "@import" not in page and "url(" not in page and "@font-face" not in page
    assert page.count("<script>") == 1 and page.count("<style>") == 1
    csp = resp.header("Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    assert resp.header("X-Content-Type-Options") == "nosniff"
    head = http(s.admin_port, request("HEAD", "/"), method="HEAD")
    assert head.status == 200 and int(head.header("Content-Length")) == len(resp.body)


def test_json_asks_for_the_token_the_page_does_not(sluice_factory, upstream):
    s = start(sluice_factory, upstream)
    assert get(s.admin_port, "/").status == 200
    resp, _ = dashboard(s, headers=[])
    assert resp.status == 401, resp
    assert resp.header("WWW-Authenticate") == 'Bearer realm="sluice admin"'
    resp, _ = dashboard(s, headers=[("Authorization", f"Bearer {TOKEN}x")])
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.header("WWW-Authenticate")
    resp, d = dashboard(s, headers=BEARER)
    assert resp.status == 200 and resp.header("Content-Type") == "application/json"
    assert TOKEN.encode() not in resp.body
    assert d["config"]["file"] == s.config_path


def test_json_agrees_with_metrics_after_a_burst(sluice_factory, upstream):
    s = start(sluice_factory, upstream)
    statuses = burst(s.port, ["/api/x"] * (BURST + 3) + ["/web/y"] * 4 + ["/elsewhere"])
    assert statuses[:BURST + 3] == [200] * BURST + [429] * 3, statuses
    d = wait_sampled(s, "api", BURST, 3)
    m = s.metrics()

    assert [r["name"] for r in d["routes"]] == ["api", "web"]
    for r in d["routes"]:
        for decision, n in zip(d["decisions"], r["requests"]):
            assert n == m.value("sluice_requests_total", route=r["name"], decision=decision), \
                (r["name"], decision)
    api = route(d, "api")
    assert api["requests"][:2] == [BURST, 3]
    assert route(d, "web")["requests"][0] == 4
    assert d["unmatched"] == m.value("sluice_requests_total", route="", decision="unmatched") == 1

    (limit,) = api["limits"]
    assert (limit["name"], limit["algorithm"], limit["rate"], limit["store"]) == \
        ("per_ip", "sliding_window", f"{BURST}/1m", "memory")
    for result, n in zip(d["checks"], limit["checks"]):
        assert n == m.value("sluice_limit_checks_total", route="api", limit="per_ip",
                            result=result), result
    assert limit["checks"][:2] == [BURST, 3]

    # The charts: the burst in one or two intervals, one character per interval.
    assert 1 <= len(api["allowed"]) == len(api["limited"]) <= d["samples"]
    assert api["allowed"].strip("0") and api["limited"].strip("0")
    assert api["peak"] > 0

    # The top keys are /top's.
    (top,) = d["top"]["limits"]
    assert (top["route"], top["limit"]) == ("api", "per_ip")
    assert top["requests"] == [BURST + 3, [["127.0.0.1", BURST + 3]]]
    assert top["denials"] == [3, [["127.0.0.1", 3]]]
    full = get(s.admin_port, "/top?limit=api/per_ip", BEARER).json()["limits"][0]
    assert full["requests"]["total"] == top["requests"][0]

    assert d["redis"]["configured"] is False and d["redis"]["connected"] is False
    for kind, n in d["upstream_errors"].items():
        assert n == m.value("sluice_upstream_errors_total", kind=kind), kind
    assert d["connections"]["accepted"] == m.value("sluice_connections_accepted_total")
    assert d["memory"]["keys"] == m.value("sluice_memory_keys")
    assert d["version"] == next(l["version"] for n, l, _ in m if n == "sluice_build_info")
    assert d["config"]["routes"] == 2 and d["config"]["last_reload"] is None


def test_hundred_used_routes_answer_within_64k(sluice_factory, upstream):
    n = 100
    routes = "".join(f"""\
  - name: route-{i:03d}
    match:
      path_prefix: /r/{i:03d}/
    limits:
      - name: per_client
        algorithm: sliding_window_counter
        rate: 2/1m
        key: client_ip
""" for i in range(n))
    s = start(sluice_factory, upstream, routes)
    for first in range(0, n, 25):
        statuses = burst(s.port, [f"/r/{i:03d}/x" for i in range(first, first + 25)
                                  for _ in range(3)])
        assert statuses.count(429) == 25, statuses
    d = wait_sampled(s, f"route-{n - 1:03d}", 2, 1)
    resp, d = dashboard(s)
    print(f"dashboard.json for {n} used routes: {len(resp.body)} bytes")
    assert len(d["routes"]) == n
    assert all(r["requests"][:2] == [2, 1] for r in d["routes"])
    assert len(resp.body) <= 64 * 1024, len(resp.body)


def test_reload_shows_new_routes_and_its_result(sluice_factory, upstream):
    s = start(sluice_factory, upstream)
    burst(s.port, ["/api/a", "/web/b"])
    wait_sampled(s, "web", 1, 0)

    s.reload(s.yaml_text.replace("name: web", "name: www"))
    wait_until(lambda: dashboard(s)[1]["config"]["last_reload"] is not None, what="a reload")
    d = dashboard(s)[1]
    assert d["config"]["last_reload"]["result"] == "success"
    assert d["config"]["reloads"] == {"success": 1, "failure": 0}
    assert abs(d["config"]["last_reload"]["ms"] - d["now_ms"]) < 60000
    # web is gone; www shows once used, its chart from zero.
    assert [r["name"] for r in d["routes"]] == ["api"]
    burst(s.port, ["/web/c"] * 2)
    d = wait_sampled(s, "www", 2, 0)
    assert route(d, "www")["requests"][0] == 2

    s.reload("routes: [\n")
    wait_until(lambda: dashboard(s)[1]["config"]["reloads"]["failure"] == 1,
               what="a failed reload")
    d = dashboard(s)[1]
    assert d["config"]["last_reload"]["result"] == "failure"
    assert [r["name"] for r in d["routes"]] == ["api", "www"]


def test_without_token_or_top(sluice_factory, upstream):
    s = start(sluice_factory, upstream, token=False)
    s.reload(s.yaml_text.replace('  listen: "{admin}"\n', '  listen: "{admin}"\n  top: false\n'))
    wait_until(lambda: dashboard(s)[1]["config"]["last_reload"] is not None, what="a reload")
    resp, d = dashboard(s)
    assert resp.status == 200
    assert d["top"] is None
