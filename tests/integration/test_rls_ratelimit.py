"""envoyproxy/ratelimit's black-box scenarios, ported: the same configuration files, the same
ShouldRateLimit requests from a real gRPC client (python3-grpcio), the same answers, from
sluice's rls listener on the memory store (SPEC section 12). Each test names the scenario
it ports and its file in envoyproxy/ratelimit. Where ratelimit's own test mocks its cache,
the files and requests here put the descriptors into the states the mock returned."""
import os
import random
import socket
import time

import grpc

from conftest import wait_until
from rls_support import (MAX_UINT32, OK, OVER_LIMIT, UNITS, descriptor, framed,
                         rate_limit_request, start_rls)

# test/integration/runtime/current/ratelimit/config/basic.yaml
BASIC = """\
    domain: basic
    descriptors:
      - key: key1
        rate_limit:
          unit: second
          requests_per_unit: 50

      - key: key1_local
        rate_limit:
          unit: second
          requests_per_unit: 50

      - key: one_per_minute
        rate_limit:
          unit: minute
          requests_per_unit: 1
"""

# test/integration/runtime/current/ratelimit/config/another.yaml
ANOTHER = """\
    domain: another
    descriptors:
      - key: key2
        rate_limit:
          unit: minute
          requests_per_unit: 20

      - key: key3
        rate_limit:
          unit: hour
          requests_per_unit: 10

      - key: key2_local
        rate_limit:
          unit: minute
          requests_per_unit: 20

      - key: key3_local
        rate_limit:
          unit: hour
          requests_per_unit: 10

      - key: key4
        rate_limit:
          unit: day
          requests_per_unit: 20

      - key: key4_local
        rate_limit:
          unit: day
          requests_per_unit: 20
"""

# test/integration/runtime/current/ratelimit/config/share_threshold.yaml
SHARE_THRESHOLD = """\
    domain: share-threshold-test
    descriptors:
      - key: files
        value: files/*
        share_threshold: true
        rate_limit:
          unit: hour
          requests_per_unit: 10

      - key: files_no_share
        value: files_no_share/*
        rate_limit:
          unit: hour
          requests_per_unit: 10
"""

# test/integration/runtime/current/ratelimit/reload.yaml
RELOAD = """\
    domain: reload
    descriptors:
      - key: key1
        rate_limit:
          unit: second
          requests_per_unit: 50

      - key: block
        rate_limit:
          unit: second
          requests_per_unit: 0

      - key: one_per_minute
        rate_limit:
          unit: minute
          requests_per_unit: 1
"""

FILES = {"basic.yaml": BASIC, "another.yaml": ANOTHER, "share_threshold.yaml": SHARE_THRESHOLD}


def reset_bound(status, unit):
    """duration_until_reset as ratelimit gives it: whole seconds, at most the unit."""
    seconds, nanos = status.reset
    assert nanos == 0, status
    assert 1 <= seconds <= {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit], status
    return seconds


def expect(status, code, limit, unit, remaining):
    assert status.code == code, status
    assert status.limit == (limit, UNITS[unit], ""), status
    assert status.remaining == remaining, status
    reset_bound(status, unit)


def no_limit(status, remaining=0):
    assert status.code == OK and status.limit is None and status.reset is None, status
    assert status.remaining == remaining, status


def test_basic_config(sluice_factory, tmp_path):
    """testBasicBaseConfig, test/integration/integration_test.go (with basic.yaml and
    another.yaml): an unknown domain, key1's first hit, key2 over its 20 a minute, key2 and
    key3 together with key3 the one over, and a day's reset ticking down."""
    s, c = start_rls(sluice_factory, tmp_path, FILES)
    r = c.call("foo", [[("hello", "world")]])
    assert r.overall == OK
    assert len(r.statuses) == 1
    no_limit(r.statuses[0])

    r = c.call("basic", [[("key1", "foo")]])
    assert r.overall == OK
    expect(r.statuses[0], OK, 50, "second", 49)

    value = str(random.getrandbits(62))
    for i in range(25):
        r = c.call("another", [[("key2", value)]])
        code, remaining = (OVER_LIMIT, 0) if i >= 20 else (OK, 20 - (i + 1))
        assert r.overall == code, (i, r)
        expect(r.statuses[0], code, 20, "minute", remaining)

    value = str(random.getrandbits(62))
    for i in range(15):
        r = c.call("another", [[("key2", value)], [("key3", value)]])
        code, remaining2 = (OVER_LIMIT, 0) if i >= 10 else (OK, 10 - (i + 1))
        assert r.overall == code, (i, r)
        expect(r.statuses[0], OK, 20, "minute", 20 - (i + 1))
        expect(r.statuses[1], code, 10, "hour", remaining2)

    first = c.call("another", [[("key4", "durTest")]]).statuses[0].reset[0]
    time.sleep(2)
    second = c.call("another", [[("key4", "durTest")]]).statuses[0].reset[0]
    assert second < first
    c.close()


def test_share_threshold(sluice_factory, tmp_path):
    """testShareThreshold, test/integration/integration_test.go (share_threshold.yaml): every
    value files/* matches shares one counter; files_no_share/* counts each value alone."""
    s, c = start_rls(sluice_factory, tmp_path, FILES)
    domain = "share-threshold-test"
    for i in range(10):
        r = c.call(domain, [[("files", "files/a.pdf")]])
        assert r.overall in (OK, OVER_LIMIT)
    r = c.call(domain, [[("files", "files/b.csv")]])
    assert r.overall == OVER_LIMIT
    expect(r.statuses[0], OVER_LIMIT, 10, "hour", 0)
    base = time.time_ns()
    for i in range(10):
        r = c.call(domain, [[("files_no_share", f"files_no_share/{base}-{random.getrandbits(62)}")]])
        assert r.overall == OK
        expect(r.statuses[0], OK, 10, "hour", 9)
    c.close()


def test_config_reload(sluice_factory, tmp_path):
    """testConfigReload, test/integration/integration_test.go (reload.yaml copied into the
    directory, then removed): before, the domain is unknown; SIGHUP reads it; after its
    removal and another SIGHUP, unknown again. A file ratelimit would refuse keeps the
    running files and counts a failed reload."""
    s, c = start_rls(sluice_factory, tmp_path, FILES)
    r = c.call("reload", [[("block", "foo")]])
    assert r.overall == OK
    no_limit(r.statuses[0])

    path = os.path.join(s.config_dir, "reload.yaml")
    with open(path, "w") as f:
        f.write(RELOAD.replace("    ", "", 1).replace("\n    ", "\n"))
    s.reload()
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               10, 0.05, "the reload")
    r = c.call("reload", [[("key1", "foo")]])
    assert r.overall == OK
    expect(r.statuses[0], OK, 50, "second", 49)
    r = c.call("reload", [[("block", "foo")]])
    assert r.overall == OVER_LIMIT
    expect(r.statuses[0], OVER_LIMIT, 0, "second", 0)

    with open(path, "w") as f:
        f.write("domain: reload\ndescriptors:\n  - key: key1\n    rate_limit: {unit: fortnight}\n")
    s.reload()
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="failure") == 1,
               10, 0.05, "the failed reload")
    assert "reload.yaml:4:" in s.stderr_text()
    expect(c.call("reload", [[("key1", "foo")]]).statuses[0], OK, 50, "second", 48)

    os.remove(path)
    s.reload()
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 2,
               10, 0.05, "the second reload")
    no_limit(c.call("reload", [[("key1", "foo")]]).statuses[0])
    c.close()


# The limits TestUnlimited, TestServiceGlobalShadowMode, TestRuleShadowMode,
# TestMixedRuleShadowMode and TestServiceWithCustomRatelimitHeaders
# (test/service/ratelimit_test.go) give their descriptors, as a file.
SERVICE = """\
    domain: some-domain
    descriptors:
      - key: foo
        value: bar
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: baz
        value: qux
        rate_limit: {requests_per_unit: 55, unlimited: true}
      - key: shadow
        shadow_mode: true
        rate_limit: {unit: minute, requests_per_unit: 10}
"""


def test_unlimited(sluice_factory, tmp_path):
    """TestUnlimited, test/service/ratelimit_test.go: a limited descriptor, one with no
    limit, and an unlimited one answered with limit_remaining 2^32 - 1 and no limit."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    r = c.call("some-domain", [[("foo", "bar")], [("hello", "world")], [("baz", "qux")]])
    assert r.overall == OK
    expect(r.statuses[0], OK, 10, "minute", 9)
    no_limit(r.statuses[1])
    no_limit(r.statuses[2], MAX_UINT32)
    c.close()


def test_rule_and_global_shadow_mode(sluice_factory, tmp_path):
    """TestRuleShadowMode and TestMixedRuleShadowMode (a shadow limit over its limit answers
    OK; a normal one beside it still OVER_LIMIT), then TestServiceGlobalShadowMode
    (ratelimit's SHADOW_MODE, sluice's rls.shadow_mode: overall OK, descriptor codes kept),
    test/service/ratelimit_test.go."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    for _ in range(10):
        c.call("some-domain", [[("shadow", "x")], [("foo", "bar")]])
    r = c.call("some-domain", [[("shadow", "x")]])
    assert r.overall == OK
    expect(r.statuses[0], OK, 10, "minute", 0)
    r = c.call("some-domain", [[("shadow", "x")], [("foo", "bar")]])
    assert r.overall == OVER_LIMIT
    expect(r.statuses[0], OK, 10, "minute", 0)
    expect(r.statuses[1], OVER_LIMIT, 10, "minute", 0)
    c.close()

    s2, c2 = start_rls(sluice_factory, tmp_path / "global", {"service.yaml": SERVICE},
                       shadow_mode=True)
    for _ in range(10):
        c2.call("some-domain", [[("foo", "bar")]])
    r = c2.call("some-domain", [[("foo", "bar")], [("hello", "world")]])
    assert r.overall == OK
    expect(r.statuses[0], OVER_LIMIT, 10, "minute", 0)
    no_limit(r.statuses[1])
    c2.close()


def test_response_headers(sluice_factory, tmp_path):
    """TestServiceWithCustomRatelimitHeaders, test/service/ratelimit_test.go, with sluice's
    header names: the descriptor over its limit gives x-ratelimit-limit, -remaining and
    -reset (seconds to the window's end)."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE}, response_headers=True)
    r = c.call("some-domain", [[("foo", "bar")], [("hello", "world")]])
    assert r.headers["x-ratelimit-limit"] == "10"
    assert r.headers["x-ratelimit-remaining"] == "9"
    assert 1 <= int(r.headers["x-ratelimit-reset"]) <= 60
    for _ in range(10):
        r = c.call("some-domain", [[("foo", "bar")], [("hello", "world")]])
    assert r.overall == OVER_LIMIT
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) == r.statuses[0].reset[0]
    c.close()


def test_hits_addend_and_override(sluice_factory, tmp_path):
    """hits_addend at request and descriptor level (utils.GetHitsAddends in
    src/utils/utilities.go) and the descriptor's own limit (GetLimit in
    src/config/config_impl.go)."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    r = c.call("some-domain", [[("foo", "bar")]], hits_addend=4)
    expect(r.statuses[0], OK, 10, "minute", 6)
    r = c.call("some-domain", [descriptor([("foo", "bar")], hits_addend=0)], hits_addend=4)
    expect(r.statuses[0], OK, 10, "minute", 6)
    r = c.call("some-domain", [descriptor([("foo", "bar")], hits_addend=7)], hits_addend=1)
    expect(r.statuses[0], OVER_LIMIT, 10, "minute", 0)
    r = c.call("some-domain", [descriptor([("any", "thing")], limit=(3, "hour"))])
    expect(r.statuses[0], OK, 3, "hour", 2)
    c.close()


def test_empty_domain_and_descriptors(sluice_factory, tmp_path):
    """TestEmptyDomain and TestEmptyDescriptors, test/service/ratelimit_test.go: errors, as
    grpc-go sends a plain error (UNKNOWN)."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    code, details, _ = c.raw(rate_limit_request("", [[("foo", "bar")]]))
    assert (code, details) == (grpc.StatusCode.UNKNOWN, "rate limit domain must not be empty")
    code, details, _ = c.raw(rate_limit_request("some-domain", []))
    assert (code, details) == (grpc.StatusCode.UNKNOWN,
                               "rate limit descriptor list must not be empty")
    c.close()


def test_malformed_messages(sluice_factory, tmp_path):
    """Bytes that are not a RateLimitRequest are INVALID_ARGUMENT, another method
    UNIMPLEMENTED; sluice serves on (checked by a good call after each)."""
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    bad = [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x03\x0a\x01", b"\x08" + b"\xff" * 11,
           b"\x0a" + b"\x80" * 10]
    for message in bad:
        code, details, _ = c.raw(message)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (message, code, details)
        assert c.call("some-domain", [[("hello", "world")]]).overall == OK
    code, _, _ = c.raw(rate_limit_request("some-domain", [[("foo", "bar")]]),
                       method="/envoy.service.ratelimit.v2.RateLimitService/ShouldRateLimit")
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert s.alive()
    c.close()


def test_message_framing(sluice_factory, tmp_path):
    """The gRPC frame itself, sent raw over HTTP/2: a prefix announcing more than 1 MiB is
    RESOURCE_EXHAUSTED at once; two messages, or a short one, INVALID_ARGUMENT; and an
    HTTP/1.1 request on the rls listener is never served."""
    from h2_support import H2Conn
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    good = framed(rate_limit_request("some-domain", [[("foo", "bar")]]))
    cases = [(b"\x00\x00\x20\x00\x00", "8"), (good + good, "3"), (good[:-1], "3"), (b"", "3")]
    for body, status in cases:
        with H2Conn(s.rls_port) as h:
            st = h.request("POST", "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
                           [("content-type", "application/grpc"), ("te", "trailers")], body)
            h.response(st)
            fields = dict(st.headers or [])
            fields.update(dict(st.trailers or []))
            assert st.status == 200, st
            assert fields.get("grpc-status") == status, (body[:8], st, st.trailers)
    with socket.create_connection(("127.0.0.1", s.rls_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""
    assert c.call("some-domain", [[("hello", "world")]]).overall == OK
    c.close()


QUOTA = """\
    domain: quota-domain
    descriptors:
      - key: regular
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: quota
        quota_mode: true
        rate_limit: {unit: minute, requests_per_unit: 3}
      - key: quota2
        quota_mode: true
        rate_limit: {unit: minute, requests_per_unit: 3}
"""


def test_quota_modes(sluice_factory, tmp_path):
    """TestServicePerDescriptorQuotaMode, TestServiceMixedPerDescriptorModes,
    TestServiceMixedPerDescriptorModesUnderLimit, TestServiceQuotaModeOnlyAllOverTheLimit and
    TestServiceQuotaModeOnlySomeOverTheLimit, test/service/ratelimit_test.go: a quota-mode
    descriptor over its limit makes the call OVER_LIMIT only when every quota-mode descriptor
    is; a regular one over its limit always does."""
    s, c = start_rls(sluice_factory, tmp_path, {"quota.yaml": QUOTA})

    def call(*descriptors):
        return c.call("quota-domain", [[d] for d in descriptors])

    # Both under their limits.
    r = call(("regular", "a"), ("quota", "a"))
    assert r.overall == OK and [st.code for st in r.statuses] == [OK, OK]
    # The regular one over, the quota one under: OVER_LIMIT.
    for _ in range(5):
        call(("regular", "b"))
    r = call(("regular", "b"), ("quota", "b"))
    assert r.overall == OVER_LIMIT and [st.code for st in r.statuses] == [OVER_LIMIT, OK]
    # The quota one over (the only quota-mode one), the regular one under: OVER_LIMIT.
    for _ in range(3):
        call(("quota", "c"))
    r = call(("regular", "c"), ("quota", "c"))
    assert r.overall == OVER_LIMIT and [st.code for st in r.statuses] == [OK, OVER_LIMIT]
    # Two quota-mode descriptors, one over: OK; both over: OVER_LIMIT.
    for _ in range(3):
        call(("quota", "d"))
    r = call(("quota", "d"), ("quota2", "d"))
    assert r.overall == OK and [st.code for st in r.statuses] == [OVER_LIMIT, OK]
    for _ in range(3):
        call(("quota2", "d"))
    r = call(("quota", "d"), ("quota2", "d"))
    assert r.overall == OVER_LIMIT and [st.code for st in r.statuses] == [OVER_LIMIT, OVER_LIMIT]
    c.close()


def test_connection_holds_bounded_request_bytes(sluice_factory, tmp_path):
    """Calls collecting large messages on one connection hold at most two whole messages
    between them: the stream that would pass that is refused RESOURCE_EXHAUSTED at once;
    once the others are reset, what they held is let go and a call on the same connection
    is answered."""
    from h2_support import H2Conn
    s, c = start_rls(sluice_factory, tmp_path, {"service.yaml": SERVICE})
    path = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    headers = [("content-type", "application/grpc"), ("te", "trailers")]
    big = b"\x00" + (1000000).to_bytes(4, "big") + b"\x0a" * 900000  # announced, not all sent
    with H2Conn(s.rls_port) as h:
        open_streams = []
        for i in range(2):
            st = h.request("POST", path, headers, end_stream=False)
            assert h.send_body(st, big, end=False) == len(big)
            open_streams.append(st)
        st = h.request("POST", path, headers, end_stream=False)
        h.send_body(st, big, end=False, stall_ok=True, timeout=2)
        h.response(st)
        assert dict(st.headers or []).get("grpc-status") == "8", st
        assert not any(o.done for o in open_streams)
        for o in open_streams:
            h.rst(o)
        good = framed(rate_limit_request("some-domain", [[("foo", "bar")]]))
        st = h.request("POST", path, headers, good)
        h.response(st)
        assert dict(st.trailers or []).get("grpc-status") == "0", (st, st.trailers)
    assert s.alive()
    c.close()
