"""What clients see of the limits (SPEC.md section 6): the denied response, and the
rate-limit header fields on allowed (forwarded) and denied responses in every mode."""
import pytest

from limits_support import config, send, targets

RATE_FIELDS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
               "X-RateLimit-Reset")


@pytest.mark.parametrize("status", [429, 503])
def test_denied_response_is_exact_and_never_reaches_the_upstream(sluice_factory, upstream, status):
    s = sluice_factory(config("""\
  - name: login
    match:
      path: "/api/login"
    limits:
      - name: per_ip
        algorithm: sliding_window
        rate: 2/5s
        key: client_ip
""", status=status), upstream=upstream)
    assert [send(s.port, f"/api/login?i={i}", method="POST").status for i in range(2)] == [200, 200]
    r = send(s.port, "/api/login?i=2", method="POST")
    assert r.status == status
    # The oldest admission leaves the 5 s window a few ms short of 5 s from now: rounded up.
    assert r.header_all("Retry-After") == ["5"]
    assert r.header_all("Content-Type") == ["application/json"]
    assert r.body == b'{"error":"rate_limited","route":"login","limit":"per_ip","retry_after":5}'
    assert int(r.header("Content-Length")) == len(r.body)
    # Other paths are not on the route, so they reach the upstream whatever the limit says.
    assert send(s.port, "/api/logout").status == 200
    assert targets(upstream.log()) == ["/api/login?i=0", "/api/login?i=1", "/api/logout"]


def test_the_first_denying_limit_is_named_and_the_longest_wait_is_given(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: two
    limits:
      - name: a
        algorithm: sliding_window
        rate: 1/30s
        key: route
      - name: b
        algorithm: sliding_window
        rate: 1/10s
        key: route
      - name: c
        algorithm: sliding_window
        rate: 9/1m
        key: route
"""), upstream=upstream)
    assert send(s.port, "/x").status == 200
    r = send(s.port, "/x")
    assert r.status == 429
    assert r.header("Retry-After") == "30"
    assert r.json() == {"error": "rate_limited", "route": "two", "limit": "a", "retry_after": 30}
    # Every limit counts independently: c still took a unit for the denied request.
    assert r.header("RateLimit") == '"a";r=0;t=30, "b";r=0;t=10, "c";r=7;t=60'
    assert len(upstream.log()) == 1


def test_one_limit_denying_names_that_limit(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: two
    limits:
      - name: wide
        algorithm: sliding_window
        rate: 5/1m
        key: route
      - name: narrow
        algorithm: sliding_window
        rate: 1/10s
        key: route
"""), upstream=upstream)
    assert send(s.port, "/x").status == 200
    r = send(s.port, "/x")
    assert r.status == 429
    assert r.body == b'{"error":"rate_limited","route":"two","limit":"narrow","retry_after":10}'
    assert r.header("RateLimit-Policy") == '"wide";q=5;w=60, "narrow";q=1;w=10'
    assert r.header("RateLimit") == '"wide";r=3;t=60, "narrow";r=0;t=10'
    assert (r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining"),
            r.header("X-RateLimit-Reset")) == ("1", "0", "10")


HEADER_ROUTES = """\
  - name: api
    limits:
      - name: per_ip
        algorithm: sliding_window
        rate: 5/1m
        key: client_ip
      - name: per_key
        algorithm: token_bucket
        rate: 3/1m
        key: "header:X-Api-Key"
"""

# Per request: (sends the key, status, draft (policy, ratelimit), legacy (limit, remaining,
# reset)). per_key refills one token every 20 s; the legacy fields follow the limit with
# the lowest remaining, the first in configuration order on a tie.
BOTH = '"per_ip";q=5;w=60, "per_key";q=3;w=60'
SCRIPT = [
    (True, 200, (BOTH, '"per_ip";r=4;t=60, "per_key";r=2;t=20'), ("3", "2", "20")),
    (False, 200, ('"per_ip";q=5;w=60', '"per_ip";r=3;t=60'), ("5", "3", "60")),
    (True, 200, (BOTH, '"per_ip";r=2;t=60, "per_key";r=1;t=40'), ("3", "1", "40")),
    (True, 200, (BOTH, '"per_ip";r=1;t=60, "per_key";r=0;t=60'), ("3", "0", "60")),
    (True, 429, (BOTH, '"per_ip";r=0;t=60, "per_key";r=0;t=60'), ("5", "0", "60")),
]


@pytest.mark.parametrize("mode", ["draft", "legacy", "both", "none"])
def test_rate_limit_fields_on_allowed_and_denied_responses(sluice_factory, upstream, mode):
    s = sluice_factory(config(HEADER_ROUTES, headers=mode), upstream=upstream)
    for i, (keyed, status, draft, legacy) in enumerate(SCRIPT):
        headers = [("X-Api-Key", "k1")] if keyed else []
        r = send(s.port, f"/h/{i}", headers)
        assert r.status == status, (i, r)
        for name in RATE_FIELDS:
            assert len(r.header_all(name)) <= 1, (name, r)
        got_draft = (r.header("RateLimit-Policy"), r.header("RateLimit"))
        got_legacy = (r.header("X-RateLimit-Limit"), r.header("X-RateLimit-Remaining"),
                      r.header("X-RateLimit-Reset"))
        assert got_draft == (draft if mode in ("draft", "both") else (None, None)), i
        assert got_legacy == (legacy if mode in ("legacy", "both") else (None, None, None)), i
        if status == 200:
            assert r.json()["target"] == f"/h/{i}", "the upstream's own response"
        else:
            assert r.header("Retry-After") == "20"
            assert r.json()["limit"] == "per_key"
    log = upstream.log()
    assert targets(log) == [f"/h/{i}" for i in range(4)]
    # The fields are for the client; the upstream's request carries none of them.
    for entry in log:
        names = {n.lower() for n, _ in entry["headers"]}
        assert not names & {n.lower() for n in RATE_FIELDS}
