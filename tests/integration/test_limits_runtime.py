"""The limiter in a running process: metrics after a scripted sequence (SPEC.md section 8),
one memory store shared by every worker, and state across SIGHUP reloads (section 7)."""

import pytest

from conftest import Client, request, wait_until
from limits_support import concurrently, config, send, targets, window_start

METRIC_ROUTES = """\
  - name: m
    match:
      path_regex: "^/(m/|status/[45]0[34]$)"
    limits:
      - name: a
        algorithm: sliding_window
        rate: 3/1m
        key: route
      - name: b
        algorithm: sliding_window
        rate: 1/1m
        key: "header:X-Api-Key"
"""


def settled(s, total):
    """The metrics once `total` responses are counted (they are counted as each ends)."""
    return wait_until(lambda: (lambda m: m if m.value("sluice_responses_total") == total else None)(
        s.metrics()), what=f"{total} responses in the metrics")


def test_metrics_after_a_scripted_sequence(sluice_factory, upstream):
    s = sluice_factory(config(METRIC_ROUTES, extra="exempt: [127.0.0.9/32]"), upstream=upstream)
    k, j = [("X-Api-Key", "k")], [("X-Api-Key", "j")]
    script = [
        ("/status/404", [], None, 404),   # a allows (1); b has no key
        ("/m/1", k, None, 200),           # a allows (2); b allows k
        ("/m/2", k, None, 429),           # a allows (3); b denies k
        ("/m/3", [], None, 429),          # a denies
        ("/m/4", j, None, 429),           # a denies; b allows j
        ("/m/5", k, "127.0.0.9", 200),    # exempt: no limit asked
        ("/elsewhere", [], None, 200),    # unmatched
        ("/status/503", [], "127.0.0.9", 503),  # exempt, the upstream's own 503
        ("/status/500", [], None, 500),   # unmatched
    ]
    for target, headers, src, code in script:
        assert send(s.port, target, headers, src=src).status == code, target
    m = settled(s, len(script))

    def values(name, *labels):
        return {tuple(lab.get(x) for x in labels): v for n, lab, v in m if n == name and v}
    assert values("sluice_requests_total", "route", "decision") == {
        ("m", "allowed"): 2, ("m", "limited"): 3, ("m", "exempt"): 2, ("", "unmatched"): 2}
    assert values("sluice_limit_checks_total", "route", "limit", "result") == {
        ("m", "a", "allow"): 3, ("m", "a", "deny"): 2, ("m", "b", "allow"): 2, ("m", "b", "deny"): 1}
    assert values("sluice_responses_total", "route", "code") == {
        ("m", "404"): 1, ("m", "200"): 2, ("m", "429"): 3, ("m", "503"): 1, ("", "200"): 1,
        ("", "500"): 1}
    assert m.value("sluice_store_errors_total") == 0
    assert m.value("sluice_request_duration_seconds_count", route="m") == 7
    assert m.value("sluice_store_duration_seconds_count", store="memory") == 8
    assert targets(upstream.log()) == ["/status/404", "/m/1", "/m/5", "/elsewhere", "/status/503",
                                       "/status/500"]


WORKER_LIMITS = {
    "sliding_window": "rate: 20/1h",
    "fixed_window": "rate: 20/1h",
    "token_bucket": "rate: 20/1h",
    "leaky_bucket": "rate: 1/1h\n        burst: 19\n        delay: false",
}


@pytest.mark.parametrize("algorithm", sorted(WORKER_LIMITS))
def test_a_limit_holds_across_workers(sluice_factory, upstream, algorithm):
    """40 connections spread over 2 workers by SO_REUSEPORT, 2 requests each: exactly 20
    are admitted in all, whichever worker served them."""
    s = sluice_factory(config(f"""\
  - name: r
    limits:
      - name: l
        algorithm: {algorithm}
        {WORKER_LIMITS[algorithm]}
        key: route
""", workers=2), upstream=upstream)
    if algorithm == "fixed_window":
        window_start(3600, 30)

    def client(i):
        with Client(s.port, timeout=15) as c:
            return [c.exchange(request("GET", f"/w/{i}/{j}")).status for j in range(2)]
    codes = [code for pair in concurrently([lambda i=i: client(i) for i in range(40)]) for code in pair]
    assert sorted(codes) == [200] * 20 + [429] * 60
    assert len(upstream.log()) == 20
    m = settled(s, 80)
    assert m.value("sluice_requests_total", route="r", decision="allowed") == 20
    assert m.value("sluice_requests_total", route="r", decision="limited") == 60


def reload(s, text, n):
    """Reloads with `text` and waits for the n-th successful reload."""
    s.reload(text)
    # Requests begun after the reload is counted run under the new configuration.
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == n,
               what=f"reload {n}")


def reload_config(algorithm="sliding_window", rate="3/1m", headers="both", more_routes=""):
    return config(more_routes + f"""\
  - name: r
    limits:
      - name: l
        algorithm: {algorithm}
        rate: {rate}
        key: client_ip
""", headers=headers)


def test_reload_keeps_state_across_rates_and_resets_other_algorithms(sluice_factory, upstream):
    s = sluice_factory(reload_config(), upstream=upstream)
    assert [send(s.port, "/a").status for _ in range(4)] == [200, 200, 200, 429]

    # Another route in front, other header fields: limit r/l is the same, so is its state.
    reload(s, reload_config(headers="legacy", more_routes="""\
  - name: other
    match:
      path_prefix: "/other"
    limits:
      - {name: o, algorithm: fixed_window, rate: 1/1h, key: route}
"""), 1)
    r = send(s.port, "/a")
    assert r.status == 429
    assert r.header("RateLimit") is None and r.header("X-RateLimit-Remaining") == "0"

    # A new rate reads the same log: 3 of 4 are taken, one is left.
    reload(s, reload_config(rate="4/1m"), 2)
    codes = [send(s.port, "/a") for _ in range(5)]
    assert [r.status for r in codes] == [200] + [429] * 4
    assert codes[0].header("RateLimit") == '"l";r=0;t=60'

    # A bad file changes nothing.
    s.reload("routes: [", raw=True)
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="failure") == 1,
               what="the failed reload")
    assert send(s.port, "/a").status == 429

    # Another algorithm at the same rate starts afresh.
    reload(s, reload_config(algorithm="fixed_window", rate="4/1m"), 3)
    window_start(60, 2)
    assert [send(s.port, "/a").status for _ in range(5)] == [200] * 4 + [429]
    assert len(upstream.log()) == 3 + 1 + 4
