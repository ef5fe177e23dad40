"""Shadow limits (SPEC.md section 3): a limit with `shadow: true` is evaluated on its store
and counted, result="shadow_deny" where it would have denied, but never denies, delays or
shows in the response headers; the enforced limits beside it decide as they would alone."""
import time

from conftest import wait_until
from limits_support import config, send, targets

ROUTES = """\
  - name: api
    limits:
      - {name: enforced, algorithm: sliding_window, rate: 4/1m, key: client_ip}
      - {name: candidate, algorithm: sliding_window, rate: 2/1m, key: client_ip, shadow: true}
      - name: slow
        algorithm: leaky_bucket
        rate: 1/10s
        burst: 10
        key: client_ip
        shadow: true
"""


def test_shadow_limit_counts_but_never_denies_delays_or_shows(sluice_factory, upstream):
    s = sluice_factory(config(ROUTES), upstream=upstream)
    statuses = []
    for i in range(6):
        sent = time.monotonic()
        r = send(s.port, f"/s/{i}")
        # The shadow leaky bucket would hold request i for i * 10 s.
        assert time.monotonic() - sent < 5, "a shadow limit delayed the request"
        statuses.append(r.status)
        assert r.header("RateLimit-Policy") == '"enforced";q=4;w=60'
        assert "candidate" not in r.header("RateLimit") and "slow" not in r.header("RateLimit")
        assert r.header("X-RateLimit-Limit") == "4"
        if r.status == 429:
            assert r.json()["limit"] == "enforced"
    # Exactly what the enforced limit alone would do.
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert targets(upstream.log()) == [f"/s/{i}" for i in range(4)]

    def settled():
        m = s.metrics()
        return m if m.value("sluice_responses_total", route="api") == 6 else None
    m = wait_until(settled, what="6 responses in the metrics")

    def checks(limit, result):
        return m.value("sluice_limit_checks_total", route="api", limit=limit, result=result)
    assert (checks("enforced", "allow"), checks("enforced", "deny")) == (4, 2)
    assert checks("enforced", "shadow_deny") == 0
    # The candidate saw every request: 2 admitted, then 4 it would have denied.
    assert (checks("candidate", "allow"), checks("candidate", "shadow_deny")) == (2, 4)
    assert checks("candidate", "deny") == 0
    assert (checks("slow", "allow"), checks("slow", "shadow_deny"), checks("slow", "deny")) == \
        (6, 0, 0)
    assert m.value("sluice_requests_total", route="api", decision="allowed") == 2
    assert m.value("sluice_requests_total", route="api", decision="shadow_limited") == 2
    assert m.value("sluice_requests_total", route="api", decision="limited") == 2


def test_only_shadow_limits_leave_responses_bare(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: trial
    limits:
      - {name: candidate, algorithm: fixed_window, rate: 1/1h, key: client_ip, shadow: true}
"""), upstream=upstream)
    for i in range(3):
        r = send(s.port, f"/t/{i}")
        assert r.status == 200
        assert r.header("RateLimit") is None and r.header("RateLimit-Policy") is None
        assert r.header("X-RateLimit-Limit") is None and r.header("Retry-After") is None
    assert targets(upstream.log()) == [f"/t/{i}" for i in range(3)]

    def settled():
        m = s.metrics()
        return m if m.value("sluice_responses_total", route="trial") == 3 else None
    m = wait_until(settled, what="3 responses in the metrics")
    assert m.value("sluice_limit_checks_total", route="trial", limit="candidate",
                   result="shadow_deny") == 2
    assert m.value("sluice_requests_total", route="trial", decision="shadow_limited") == 2
