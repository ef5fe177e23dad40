"""Which route, and so which limits, a request meets (SPEC.md section 2): first match wins,
method, host, header and regex conditions, path normalisation, unmatched and shadow routes.
The RateLimit-Policy field names the limits applied, so it tells the route that matched."""
from conftest import wait_until
from limits_support import config, send, targets

MATCH_ROUTES = """\
  - name: login
    match:
      path_prefix: "/api/login"
    limits:
      - {name: login_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: api
    match:
      path_prefix: "/api"
    limits:
      - {name: api_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: writes
    match:
      path: "/m"
      methods: [POST, PUT]
    limits:
      - {name: writes_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: hosted
    match:
      path_prefix: "/h"
      host: "api.example.com"
    limits:
      - {name: host_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: versioned
    match:
      path_prefix: "/v"
      headers:
        X-Api-Version: "2"
        X-Tier: "gold"
    limits:
      - {name: v2_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: users
    match:
      path_regex: "^/users/[0-9]+$"
    limits:
      - {name: user_cap, algorithm: sliding_window, rate: 100/1m, key: route}
  - name: open
    match:
      path_prefix: "/open"
    limits: []
"""


def policy_name(resp):
    """The limit named by RateLimit-Policy, None when the response has no such field."""
    p = resp.header("RateLimit-Policy")
    return p.split(";")[0].strip('"') if p else None


def test_first_matching_route_wins(sluice_factory, upstream):
    s = sluice_factory(config(MATCH_ROUTES), upstream=upstream)
    cases = [
        ("/api/login", "login_cap"),
        ("/api/login/sso", "login_cap"),   # prefixes are segment-aware...
        ("/api/loginx", "api_cap"),        # ...so this is not under /api/login
        ("/api/other", "api_cap"),
        ("/api", "api_cap"),
        ("/apix", None),                   # nothing: forwarded unlimited
    ]
    for target, name in cases:
        r = send(s.port, target)
        assert r.status == 200
        assert policy_name(r) == name, target
    assert targets(upstream.log()) == [t for t, _ in cases]


def test_methods_host_headers_and_regex_conditions(sluice_factory, upstream):
    s = sluice_factory(config(MATCH_ROUTES), upstream=upstream)
    v2 = [("X-Api-Version", "2"), ("X-Tier", "gold")]
    cases = [
        (("/m", [], "POST", "localhost"), "writes_cap"),
        (("/m", [], "PUT", "localhost"), "writes_cap"),
        (("/m", [], "GET", "localhost"), None),
        (("/m", [], "PATCH", "localhost"), None),
        (("/h/1", [], "GET", "api.example.com"), "host_cap"),
        (("/h/1", [], "GET", "API.Example.COM:8443"), "host_cap"),  # case and port ignored
        (("/h/1", [], "GET", "api.example.com."), "host_cap"),      # a trailing dot too
        (("/h/1", [], "GET", "www.example.com"), None),
        (("/v/1", v2, "GET", "localhost"), "v2_cap"),
        (("/v/1", [("x-api-version", "2"), ("X-TIER", "gold")], "GET", "localhost"), "v2_cap"),
        (("/v/1", [("X-Api-Version", "3"), ("X-Tier", "gold")], "GET", "localhost"), None),
        (("/v/1", [("X-Api-Version", "2")], "GET", "localhost"), None),  # all must be present
        (("/v/1", [("X-Tier", "Gold"), ("X-Api-Version", "2")], "GET", "localhost"), None),
        (("/users/42", [], "GET", "localhost"), "user_cap"),
        (("/users/4%32", [], "GET", "localhost"), "user_cap"),  # %32 is "2", decoded
        (("/users/42/", [], "GET", "localhost"), None),
        (("/users/x42", [], "GET", "localhost"), None),
        (("/users/42?page=2", [], "GET", "localhost"), "user_cap"),  # the query is ignored
    ]
    for (target, headers, method, host), name in cases:
        r = send(s.port, target, headers, method=method, host=host)
        assert r.status == 200, (target, method, host, r)
        assert policy_name(r) == name, (target, headers, method, host)


def test_unmatched_and_unlimited_routes_are_forwarded_without_fields(sluice_factory, upstream):
    s = sluice_factory(config(MATCH_ROUTES), upstream=upstream)
    for target in ["/nothing/here"] * 3 + ["/open/x"] * 3:
        r = send(s.port, target)
        assert r.status == 200
        assert not any(n.lower().startswith(("ratelimit", "x-ratelimit", "retry-after"))
                       for n, _ in r.headers)
    assert len(upstream.log()) == 6


def test_respelt_paths_share_the_budget_and_reach_the_upstream_as_sent(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: login
    match:
      path: "/api/login"
    limits:
      - name: per_route
        algorithm: sliding_window
        rate: 5/1m
        key: route
"""), upstream=upstream)
    spellings = ["/api/login", "/api//login", "/api/./login", "/api/x/../login", "/api/%6Cogin"]
    for i, target in enumerate(spellings):
        r = send(s.port, target, method="POST")
        assert r.status == 200, target
        assert r.header("RateLimit") == f'"per_route";r={4 - i};t=60', target
    for target in ["/api/login?x=1", "/api/%6cogin", "//api/login", "/x/../api/login"]:
        r = send(s.port, target, method="POST")
        assert r.status == 429, target
        assert r.json()["route"] == "login"
    # Paths are case-sensitive, and /api/login/x is another path.
    assert send(s.port, "/API/login", method="POST").status == 200
    assert send(s.port, "/api/login/x", method="POST").status == 200
    assert targets(upstream.log()) == spellings + ["/API/login", "/api/login/x"]


def test_shadow_route_never_rejects_and_counts_what_it_would_have(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: trial
    shadow: true
    limits:
      - name: per_ip
        algorithm: sliding_window
        rate: 2/1m
        key: client_ip
"""), upstream=upstream)
    for i in range(5):
        r = send(s.port, f"/s/{i}")
        assert r.status == 200
        # Shadow limits are invisible to clients.
        assert r.header("RateLimit") is None and r.header("X-RateLimit-Limit") is None
    assert targets(upstream.log()) == [f"/s/{i}" for i in range(5)]

    def settled():
        m = s.metrics()
        return m if m.value("sluice_responses_total", route="trial") == 5 else None
    m = wait_until(settled, what="5 responses in the metrics")
    assert m.value("sluice_requests_total", route="trial", decision="allowed") == 2
    assert m.value("sluice_requests_total", route="trial", decision="shadow_limited") == 3
    assert m.value("sluice_requests_total", route="trial", decision="limited") == 0
    assert m.value("sluice_limit_checks_total", route="trial", limit="per_ip", result="allow") == 2
    assert m.value("sluice_limit_checks_total", route="trial", limit="per_ip", result="deny") == 3
    assert m.value("sluice_responses_total", route="trial", code="200") == 5
    assert m.value("sluice_responses_total", route="trial", code="429") == 0
