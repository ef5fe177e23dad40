"""Limit keys end to end (SPEC.md section 4): which requests share a budget. Clients come
from distinct loopback addresses (127.0.0.0/8 is all local), so client_ip keys differ."""
import json

from limits_support import config, send, targets

# One route per key source, each with a budget of one request a minute, so that the
# second request under one key is denied and a request under another key is not.
KEY_ROUTES = "".join(f"""\
  - name: {name}
    match:
      path_prefix: "/{name}"
    limits:
      - name: l
        algorithm: sliding_window
        rate: {rate}
        key: {key}
""" for name, rate, key in [
    ("ip", "1/1m", "client_ip"),
    ("hdr", "2/1m", '"header:X-Api-Key"'),
    ("query", "1/1m", '"query:tenant"'),
    ("cookie", "1/1m", '"cookie:session"'),
    ("comp", "1/1m", '["header:X-Api-Key", method]'),
    ("route", "2/1m", "route"),
    ("xff", "1/1m", "client_ip"),
])


def codes(port, calls):
    """[(target, headers, src[, method])] -> statuses, in order."""
    out = []
    for call in calls:
        target, headers, src = call[:3]
        method = call[3] if len(call) > 3 else "GET"
        out.append(send(port, target, headers, method=method, src=src).status)
    return out


def test_client_ip_gives_each_address_its_budget(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    assert codes(s.port, [("/ip/1", [], "127.0.0.2"), ("/ip/2", [], "127.0.0.2"),
                          ("/ip/3", [], "127.0.0.3"), ("/ip/4", [], "127.0.0.3"),
                          ("/ip/5", [], "127.0.0.2")]) == [200, 429, 200, 429, 429]
    assert targets(upstream.log()) == ["/ip/1", "/ip/3"]


def test_header_key_budgets_are_separate_and_an_absent_header_skips_the_limit(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    a, b = [("X-Api-Key", "alpha")], [("X-Api-Key", "beta")]
    assert codes(s.port, [("/hdr", a, None), ("/hdr", a, None), ("/hdr", b, None),
                          ("/hdr", a, None), ("/hdr", b, None), ("/hdr", b, None)]) == \
        [200, 200, 200, 429, 200, 429]
    # Without the header the limit does not apply: no budget, and no fields describing one.
    for _ in range(4):
        r = send(s.port, "/hdr")
        assert r.status == 200
        assert r.header("RateLimit") is None and r.header("X-RateLimit-Limit") is None
    assert len(upstream.log()) == 4 + 4


def test_query_key_decodes_values_as_the_application_would(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    assert codes(s.port, [("/query?tenant=acme", [], None), ("/query?x=1&tenant=acme", [], None),
                          ("/query?tenant=%61cme", [], None), ("/query?tenant=other", [], None),
                          ("/query", [], None), ("/query?tenant2=acme", [], None),
                          ("/query", [], None)]) == [200, 429, 429, 200, 200, 200, 200]


def test_cookie_key(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    assert codes(s.port, [("/cookie", [("Cookie", "session=s1; theme=dark")], None),
                          ("/cookie", [("Cookie", "theme=light; session=s1")], None),
                          ("/cookie", [("Cookie", "session=s2")], None),
                          ("/cookie", [("Cookie", "theme=dark")], None),
                          ("/cookie", [], None), ("/cookie", [], None)]) == [200, 429, 200, 200, 200, 200]


def test_composite_key_needs_every_source_and_separates_every_tuple(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    k, j = [("X-Api-Key", "k")], [("X-Api-Key", "j")]
    assert codes(s.port, [("/comp", k, None, "GET"), ("/comp", k, None, "GET"),
                          ("/comp", k, None, "POST"), ("/comp", k, None, "POST"),
                          ("/comp", j, None, "GET"), ("/comp", [], None, "GET"),
                          ("/comp", [], None, "GET")]) == [200, 429, 200, 429, 200, 200, 200]


def test_route_key_is_one_budget_for_every_client(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES), upstream=upstream)
    assert codes(s.port, [("/route/a", [], "127.0.0.2"), ("/route/b", [("X-Api-Key", "x")], "127.0.0.3"),
                          ("/route/c", [], "127.0.0.4"), ("/route/d", [], "127.0.0.2")]) == \
        [200, 200, 429, 429]


def test_forwarded_for_is_believed_from_trusted_peers_only(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES, extra="trusted_proxies: [127.0.0.2/32]"), upstream=upstream)
    xff = lambda v: [("X-Forwarded-For", v)]  # noqa: E731
    trusted, untrusted = "127.0.0.2", "127.0.0.3"
    assert codes(s.port, [
        ("/xff/1", xff("10.1.1.1"), trusted),              # client 10.1.1.1
        ("/xff/2", xff("10.1.1.1"), trusted),              # same client: denied
        ("/xff/3", xff("10.1.1.2"), trusted),              # another client behind the proxy
        ("/xff/4", xff("10.9.9.9, 10.1.1.1"), trusted),    # the right-most untrusted entry counts
        ("/xff/5", [("X-Forwarded-For", "10.7.7.7"), ("X-Forwarded-For", "10.1.1.2")], trusted),
        ("/xff/6", [], trusted),                           # the proxy itself
        ("/xff/7", xff("10.5.5.5"), untrusted),            # ignored: client 127.0.0.3
        ("/xff/8", xff("10.6.6.6"), untrusted),            # still 127.0.0.3: denied
    ]) == [200, 429, 200, 429, 429, 200, 200, 429]
    log = upstream.log()
    assert targets(log) == ["/xff/1", "/xff/3", "/xff/6", "/xff/7"]
    forwarded = [[v for n, v in e["headers"] if n.lower() == "x-forwarded-for"] for e in log]
    assert forwarded == [["10.1.1.1, 127.0.0.2"], ["10.1.1.2, 127.0.0.2"], ["127.0.0.2"],
                         ["10.5.5.5, 127.0.0.3"]]
    entries = [json.loads(line) for line in s.wait_access_log(8)]
    clients = {e["path"]: e["client"] for e in entries}
    assert [clients[f"/xff/{i}"] for i in range(1, 9)] == [
        "10.1.1.1", "10.1.1.1", "10.1.1.2", "10.1.1.1", "10.1.1.2", "127.0.0.2", "127.0.0.3",
        "127.0.0.3"]


def test_exempt_clients_are_never_limited_nor_counted(sluice_factory, upstream):
    s = sluice_factory(config(KEY_ROUTES, extra="exempt: [127.0.0.4/32, 127.0.0.8/30]"), upstream=upstream)
    for src in ("127.0.0.4", "127.0.0.9", "127.0.0.11"):
        for i in range(3):
            r = send(s.port, f"/route/{src}/{i}", src=src)
            assert r.status == 200
            assert r.header("RateLimit") is None and r.header("X-RateLimit-Remaining") is None
    # The route's budget of 2 is untouched by the exempt clients.
    assert codes(s.port, [("/route/x", [], "127.0.0.2"), ("/route/y", [], "127.0.0.3"),
                          ("/route/z", [], "127.0.0.12"), ("/route/w", [], "127.0.0.4")]) == \
        [200, 200, 429, 200]
    assert len(upstream.log()) == 9 + 3
