"""Weighted requests and budgets charged by the response (SPEC.md section 3, Cost): a cost
read from the request, and token budgets charged from an upstream's usage header, its
OpenAI-style JSON body and its server-sent-events stream, on the memory store and on Redis.

The debt timeline is asserted tightly where it follows from the arithmetic (never admitted
before the debt is repaid, counted from when the charged request was sent) and generously
where it depends on scheduling (admitted soon after)."""
import json

import pytest

from harness_http import wait_until
from limits_support import LATE, config, poll_until_allowed, send, timed
from redis_support import commandstats, hammer, redis_config, route, wait_connected

KEY = ("X-Api-Key", "k1")


def budget(charge, rate="100/2s", extra=""):
    """A token budget per API key: 100 tokens per 2 s (a token every 20 ms)."""
    return config(f"""\
  - name: llm
    match:
      path_prefix: /usage
    limits:
      - name: tokens
        algorithm: token_bucket
        rate: {rate}
        key: "header:X-Api-Key"
        charge: "{charge}"
{extra}""")


def spend_and_wait(s, target, used=150):
    """Spends `used` tokens of a full 100-token budget (admitted: a token was left), then
    checks the next request waits exactly until the debt is repaid: 50 tokens of debt and
    one to have, 51 × 20 ms after the charged response."""
    sent, answered, r = timed(s.port, target.format(used=used), [KEY])
    assert r.status == 200, r
    if "as=sse" in target:
        assert b"[DONE]" in r.body  # the stream went through whole
    one = target.format(used=1)
    _, _, denied = timed(s.port, one, [KEY])
    assert denied.status == 429
    assert 1 <= int(denied.header("Retry-After")) <= 2  # 1.02 s at most, rounded up
    body = json.loads(denied.body)
    assert body["error"] == "rate_limited" and body["limit"] == "tokens"
    last_denied, sent2, answered2, r2 = poll_until_allowed(s.port, one, [KEY])
    repaid = (used - 100 + 1) * 0.020
    assert answered2 >= sent + repaid, "admitted before the debt was repaid"
    assert sent2 < answered + repaid + LATE
    # Another key has its own budget.
    assert send(s.port, one, [("X-Api-Key", "k2")]).status == 200


def test_charge_from_usage_header(sluice_factory, upstream):
    s = sluice_factory(budget("response_header:X-Tokens-Used"), upstream=upstream)
    spend_and_wait(s, "/usage/{used}")
    m = s.metrics()
    assert m.value("sluice_limit_units_total", route="llm", limit="tokens", kind="charge") >= 151
    assert m.value("sluice_charge_errors_total", route="llm", limit="tokens") == 0


def test_charge_from_json_body(sluice_factory, upstream):
    s = sluice_factory(budget("response_json:usage.total_tokens"), upstream=upstream)
    spend_and_wait(s, "/usage/{used}?as=json")
    assert s.metrics().value("sluice_charge_errors_total", route="llm", limit="tokens") == 0


def test_charge_from_sse_stream(sluice_factory, upstream):
    s = sluice_factory(budget("response_json:usage.total_tokens"), upstream=upstream)
    spend_and_wait(s, "/usage/{used}?as=sse")
    assert s.metrics().value("sluice_charge_errors_total", route="llm", limit="tokens") == 0


@pytest.mark.parametrize("charge,target", [
    ("response_header:X-Tokens-Used", "/usage/bad"),
    ("response_json:usage.total_tokens", "/usage/bad?as=json"),
    ("response_json:usage.total_tokens", "/usage/bad?as=sse"),
    ("response_json:usage.total_tokens", "/usage/500"),  # JSON without the field
])
def test_malformed_usage_charges_nothing(sluice_factory, upstream, charge, target):
    s = sluice_factory(budget(charge, rate="3/1h"), upstream=upstream)
    for _ in range(5):  # a budget of 3: each admitted, none charged
        assert send(s.port, target, [KEY]).status == 200
    m = s.metrics()
    assert m.value("sluice_charge_errors_total", route="llm", limit="tokens") == 5
    assert m.value("sluice_limit_units_total", route="llm", limit="tokens", kind="charge") == 0


def test_header_cost(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: bulk
    limits:
      - name: units
        algorithm: fixed_window
        rate: 10/1h
        key: route
        cost: "header:X-Cost"
"""), upstream=upstream)
    assert send(s.port, "/a", [("X-Cost", "7")]).status == 200
    r = send(s.port, "/a", [("X-Cost", "4")])
    assert r.status == 429  # 7 + 4 > 10
    assert r.header("X-RateLimit-Remaining") == "0"
    r = send(s.port, "/a", [("X-Cost", "12")])
    assert r.status == 429 and r.header("Retry-After") is None
    assert json.loads(r.body)["error"] == "cost_exceeds_capacity"
    for bad in ("-1", "1.5", "x", "4294967297"):
        r = send(s.port, "/a", [("X-Cost", bad)])
        assert r.status == 400, bad
        assert json.loads(r.body) == {"error": "bad_cost", "route": "bulk", "limit": "units",
                                      "header": "X-Cost"}
    assert send(s.port, "/a", [("X-Cost", "3")]).status == 200  # nothing spent by the 400s
    assert send(s.port, "/a").status == 429  # absent: 1, and 10 are taken
    assert send(s.port, "/a", [("X-Cost", "0")]).status == 200  # a check
    m = s.metrics()
    assert m.value("sluice_limit_units_total", route="bulk", limit="units", kind="cost") == 10
    assert m.value("sluice_responses_total", code="400") == 4


def test_redis_charges_with_one_pipelined_call_each(sluice_factory, upstream, redis_server):
    routes = route("usage", [dict(name="tokens", algorithm="token_bucket", rate="1000/1h",
                                  key="route", charge="response_header:X-Tokens-Used")])
    s = sluice_factory(redis_config(redis_server.url, routes), upstream=upstream)
    wait_connected(s)
    redis_server.command("CONFIG", "RESETSTAT")
    for _ in range(10):
        assert send(s.port, "/usage/30").status == 200
    # One EVALSHA for each decision and one for each charge. A charge is sent when the
    # upstream's answer arrives, alongside passing it on: the last may still be on its way.
    wait_until(lambda: commandstats(redis_server, "evalsha") >= 20, what="the last charge")
    assert commandstats(redis_server, "evalsha") == 20
    # 300 taken, 700 left: a charge of 1500 leaves 800 of debt. A token comes back every
    # 3.6 s, so the next request waits for 801 tokens: 2883.6 s, less what refilled meanwhile.
    assert send(s.port, "/usage/1500").status == 200
    r = send(s.port, "/usage/1")
    assert r.status == 429
    assert 2870 <= int(r.header("Retry-After")) <= 2884


def test_instances_on_one_redis_overshoot_by_in_flight_requests_only(sluice_factory, upstream,
                                                                     redis_server):
    """The bound: a request is admitted while a token is left and charged when its answer
    comes back, so only requests whose charges have not reached Redis yet can pass the
    budget. Each of T clients has at most one such request when its next one is decided
    (its previous charge may still be on its way, pipelined from another instance), so at
    most T requests beyond the last that fitted, each charging C: admitted cost <= B + T·C.
    A budget of B = 100 (refill negligible: 100 an hour) and C = 10 admits between B/C = 10
    and B/C + T requests."""
    threads = 6
    routes = route("usage", [dict(name="tokens", algorithm="token_bucket", rate="100/1h",
                                  key="route", charge="response_header:X-Tokens-Used")])
    cfg = redis_config(redis_server.url, routes)
    instances = [sluice_factory(cfg, upstream=upstream) for _ in range(3)]
    for s in instances:
        wait_connected(s)
    res = hammer([s.port for s in instances], "/usage/10", total=120, threads=threads)
    assert not res.errors, res.errors[:5]
    admitted = res.count(200)
    assert res.count(200) + res.count(429) == 120
    assert 10 <= admitted <= 10 + threads, f"{admitted} admitted"
    charged = sum(s.metrics().value("sluice_limit_units_total", route="usage", limit="tokens",
                                    kind="charge") for s in instances)
    assert charged == 10 * admitted
    assert charged <= 100 + 10 * threads
