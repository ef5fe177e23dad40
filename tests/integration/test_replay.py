"""`sluice replay` (SPEC.md section 1): an access log run through the configuration's routes
and limits on the log's own clock. The expected counts are computed independently, by the
model in replay_model.py, for every algorithm (leaky bucket delays included), shadow limits,
absent and unrecorded key sources, unusable lines and the keys denied most; and a log
written by sluice itself with access_log_key_fields is replayed."""
import datetime
import json
import os
import pty
import random
import re
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import wait_until
from limits_support import config, send
from replay_model import ALGORITHMS

# (route, path prefix, [(limit, algorithm, N, P seconds, burst, key, extra YAML)])
ROUTES = [
    ("fw", "/fw", [("l", "fixed_window", 2, 1, None, "client_ip", "")]),
    ("sw", "/sw", [("l", "sliding_window", 2, 2, None, "client_ip", "")]),
    ("swc", "/swc", [("l", "sliding_window_counter", 3, 1, None, "client_ip", "")]),
    ("tb", "/tb", [("l", "token_bucket", 2, 1, 2, "client_ip", "")]),
    ("lb", "/lb", [("l", "leaky_bucket", 1, 1, 2, "client_ip", ""),
                   ("cap", "fixed_window", 5, 2, None, "client_ip", "")]),
    ("lbn", "/lbn", [("l", "leaky_bucket", 1, 1, 1, "client_ip", ", delay: false")]),
    ("sh", "/sh", [("enforced", "fixed_window", 100, 1, None, "client_ip", ""),
                   ("candidate", "sliding_window", 1, 1, None, "client_ip", ", shadow: true")]),
    ("hk", "/hk", [("l", "token_bucket", 1, 1, 1, '"header:X-Api-Key"', "")]),
    ("ck", "/ck", [("l", "fixed_window", 1, 1, None, '"cookie:sid"', "")]),
]
CLIENTS = ["192.0.2.1", "2001:db8::1", "203.0.113.9"]
START = int(datetime.datetime(2026, 11, 30, 10, tzinfo=datetime.timezone.utc).timestamp())


def yaml_routes():
    out = []
    for name, prefix, limits in ROUTES:
        out.append(f"  - name: {name}\n    match: {{path_prefix: {prefix}}}\n    limits:")
        for lname, alg, n, p, burst, key, extra in limits:
            b = f", burst: {burst}" if burst is not None else ""
            out.append(f"      - {{name: {lname}, algorithm: {alg}, rate: {n}/{p}s{b}, "
                       f"key: {key}{extra}}}")
    return "\n".join(out) + "\n"


def ts_text(us):
    t = datetime.datetime.fromtimestamp(us // 1_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us // 1000 % 1000:03d}Z"


PROTOS = ["2", "1.1", None]


def log_line(us, client, path, decision="allowed", key_fields=None):
    e = {"ts": ts_text(us), "client": client, "method": "GET", "path": path, "status": 200,
         "route": "x", "decision": decision}
    if key_fields is not None:
        e["key_fields"] = key_fields
    e.update({"bytes_in": 0, "bytes_out": 10, "duration_ms": 0.5, "upstream_ms": None})
    # HTTP/2 and HTTP/1.1 requests, and lines of a log written before "proto" was.
    proto = PROTOS[us // 1000 % len(PROTOS)]
    if proto is not None:
        e["proto"] = proto
    return json.dumps(e, separators=(",", ":"))


def generate(rng, n):
    """`n` requests (with the time, client, path and key_fields of each) in time order."""
    us = START * 1_000_000
    out = []
    for _ in range(n):
        us += rng.choice([0, 0, 1, 2, 5, 20, 60]) * 1000
        name, prefix, _ = rng.choice(ROUTES + [("-", "/none", [])])
        fields = None
        if name == "hk":
            # Recorded with the key, recorded as absent, or not recorded at all.
            fields = rng.choice([{"host": "h", "header:X-Api-Key": rng.choice(["a", "b"])},
                                 {"host": "h", "header:X-Api-Key": None}, None])
        elif name == "ck":
            fields = {"host": "h"}
        out.append((us, rng.choice(CLIENTS), f"{prefix}/{rng.randrange(3)}?q=1", fields))
    return out


def expected(requests):
    """Per route and limit, what the specification says sluice decides."""
    models = {(r, l): ALGORITHMS[alg](n=n, p=p * 1_000_000, burst=burst or 0,
                                      delay="delay: false" not in extra)
              for r, _, limits in ROUTES for l, alg, n, p, burst, _, extra in limits}
    zero = dict(requests=0, admitted=0, delayed=0, denied=0, absent=0, not_recorded=0)
    lim = {k: dict(zero, top=Counter()) for k in models}
    routes = {r: dict(requests=0, admitted=0, delayed=0, denied=0, shadow_limited=0)
              for r, _, _ in ROUTES}
    unmatched = 0
    for us, client, path, fields in requests:
        route = next((r for r in ROUTES if path.startswith(r[1] + "/")), None)
        if route is None:
            unmatched += 1
            continue
        rs = routes[route[0]]
        rs["requests"] += 1
        denied = shadow_denied = delayed = False
        for lname, _, _, _, _, key, extra in route[2]:
            st = lim[(route[0], lname)]
            if key == "client_ip":
                value = client
            elif key == '"header:X-Api-Key"':
                if fields is None or "header:X-Api-Key" not in fields:
                    st["not_recorded"] += 1
                    continue
                value = fields["header:X-Api-Key"]
            else:  # the cookie is never recorded
                st["not_recorded"] += 1
                continue
            if value is None:
                st["absent"] += 1
                continue
            ok, delay = models[(route[0], lname)].decide(value, us)
            st["requests"] += 1
            if not ok:
                st["denied"] += 1
                st["top"][value] += 1
                if "shadow" in extra:
                    shadow_denied = True
                else:
                    denied = True
            elif delay:
                st["delayed"] += 1
                delayed |= "shadow" not in extra
            else:
                st["admitted"] += 1
        if denied:
            rs["denied"] += 1
        elif shadow_denied:
            rs["shadow_limited"] += 1
        elif delayed:
            rs["delayed"] += 1
        else:
            rs["admitted"] += 1
    return routes, lim, unmatched


def replay(binary, conf, log, *args, rc=0):
    r = subprocess.run([binary, "replay", "-c", conf, *args, log], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    return r


BAD_LINES = [
    "not json at all",
    '{"ts":"2026-11-30T10:00:00.000Z","client":"192.0.2.1","method":"GET"',  # cut short
    '{"ts":"2026-13-30T10:00:00.000Z","client":"192.0.2.1","method":"GET","path":"/fw/1"}',
    '{"ts":"yesterday","client":"192.0.2.1","method":"GET","path":"/fw/1"}',
    '{"ts":"2026-11-30T10:00:00.000Z","method":"GET","path":"/fw/1"}',  # no client
    '["ts","client"]',
    '{"ts":"2026-11-30T10:00:00.000Z","client":"192.0.2.1","method":"GET","path":1}',
    '{"ts":"2026-11-30T10:00:00.000Z","client":"192.0.2.1","method":"GET","path":"/a"}{}',
]


def test_replay_counts_match_an_independent_model(sluice_binary, tmp_path):
    conf = tmp_path / "sluice.yaml"
    conf.write_text(config(yaml_routes()).replace("{listen}", "127.0.0.1:1").replace(
        "{admin}", "127.0.0.1:2").replace("{upstream}", "http://127.0.0.1:3").replace(
        "{access_log}", "off"))
    rng = random.Random(7)
    requests = generate(rng, 6000)
    lines = [log_line(*r[:3], key_fields=r[3]) for r in requests]
    # Lines sluice answered before routing, and lines that are not usable, in between.
    for i, bad in enumerate(BAD_LINES):
        lines.insert(500 * i + 3, bad)
    for i in range(5):
        lines.insert(700 * i + 11, log_line(requests[0][0], "192.0.2.1", "/fw/x", decision=""))
    for proto in ('"proto":"2"}', '"proto":"1.1"}', '"upstream_ms":null}'):
        assert sum(line.endswith(proto) for line in lines) > 1000, proto
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n\n")

    out = json.loads(replay(sluice_binary, str(conf), str(log), "--json").stdout)
    routes, limits, unmatched = expected(requests)
    assert (out["lines"], out["replayed"], out["unusable"], out["undecided"]) == (
        len(requests) + len(BAD_LINES) + 5, len(requests), len(BAD_LINES), 5)
    assert out["unmatched"] == unmatched
    assert out["first_ts"] == ts_text(requests[0][0])
    assert out["last_ts"] == ts_text(requests[-1][0])
    for r in out["routes"]:
        want = routes[r["name"]]
        assert {k: r[k] for k in want} == want, r["name"]
        for lim in r["limits"]:
            w = limits[(r["name"], lim["name"])]
            got = {k: lim[k] for k in w if k != "top"}
            assert got == {k: v for k, v in w.items() if k != "top"}, (r["name"], lim["name"])
            top = sorted(w["top"].items(), key=lambda kv: (-kv[1], kv[0].encode()))[:10]
            assert [(d["key"], d["denied"]) for d in lim["denied_most"]] == top
    by_name = {r["name"]: r for r in out["routes"]}
    # Every algorithm had something to do, so the comparison above means something.
    for name in ("fw", "sw", "swc", "tb", "lb", "lbn", "sh", "hk"):
        assert by_name[name]["limits"][-1]["denied"] > 0 or name == "lbn", name
    assert by_name["lb"]["limits"][0]["delayed"] > 0 and by_name["lb"]["delayed"] > 0
    assert by_name["lbn"]["limits"][0]["delayed"] == 0
    assert by_name["sh"]["shadow_limited"] > 0 and by_name["sh"]["denied"] == 0
    hk = by_name["hk"]["limits"][0]
    assert hk["evaluable"] and hk["absent"] > 0 and hk["not_recorded"] > 0
    ck = by_name["ck"]["limits"][0]
    assert not ck["evaluable"] and ck["unrecorded_sources"] == ["cookie:sid"]

    text = replay(sluice_binary, str(conf), str(log)).stdout
    assert f"{len(BAD_LINES)} unusable" in text
    assert "limit l (fixed_window 1/1s): not evaluable: the log does not record cookie:sid" in text
    assert "limit candidate (sliding_window 1/1s, shadow): " in text


def test_replay_usage_and_file_errors(sluice_binary, tmp_path):
    conf = tmp_path / "sluice.yaml"
    conf.write_text('upstream: {url: "http://127.0.0.1:3"}\nroutes: []\n')
    r = replay(sluice_binary, str(conf), str(tmp_path / "missing.log"), rc=1)
    assert "missing.log" in r.stderr
    for args in (["--speed", "2"], ["--bogus"]):
        r = replay(sluice_binary, str(conf), "x.log", *args, rc=2)
        assert "usage: sluice replay" in r.stderr
    r = subprocess.run([sluice_binary, "replay", "-c", str(conf)], capture_output=True,
                       text=True)
    assert r.returncode == 2
    empty = tmp_path / "empty.log"
    empty.write_text("")
    out = json.loads(replay(sluice_binary, str(conf), str(empty), "--json").stdout)
    assert (out["lines"], out["replayed"], out["first_ts"]) == (0, 0, None)


KEYED = """\
  - name: api
    match:
      path_prefix: /api
      headers: {X-Api-Version: "2"}
    limits:
      - {name: per_key, algorithm: fixed_window, rate: 2/1h, key: "header:X-Api-Key"}
      - {name: per_session, algorithm: fixed_window, rate: 1/1h, key: ["cookie:sid", method]}
"""


@pytest.mark.parametrize("key_fields", [False, True])
def test_replay_of_a_log_sluice_wrote(sluice_factory, upstream, sluice_binary, key_fields):
    extra = "access_log_key_fields: true" if key_fields else ""
    # One worker: its log is in the order sluice decided (two workers' buffers interleave).
    s = sluice_factory(config(KEYED, extra=extra, workers=1), upstream=upstream)
    v2 = [("X-Api-Version", "2")]
    sent = [
        send(s.port, "/api/a", v2 + [("X-Api-Key", "k1"), ("Cookie", "a=1; sid=s1")]),
        send(s.port, "/api/b", v2 + [("X-Api-Key", "k1"), ("Cookie", "sid=s1")]),
        send(s.port, "/api/c", v2 + [("X-Api-Key", "k1")]),
        send(s.port, "/api/d", v2),
        send(s.port, "/api/e", [("X-Api-Key", "k1")]),  # no route: the header condition fails
    ]
    assert [r.status for r in sent] == [200, 429, 429, 200, 200]
    entries = [json.loads(line) for line in s.wait_access_log(5)]
    if not key_fields:
        assert all("key_fields" not in e for e in entries)
    else:
        assert entries[0]["key_fields"] == {
            "host": "localhost", "header:X-Api-Version": "2", "header:X-Api-Key": "k1",
            "cookie:sid": "s1"}
        assert entries[3]["key_fields"]["header:X-Api-Key"] is None
        assert entries[3]["key_fields"]["cookie:sid"] is None
        # Before the sizes: replay reads no further than it needs.
        assert list(entries[0]).index("key_fields") < list(entries[0]).index("bytes_in")

    out = json.loads(replay(sluice_binary, s.config_path, s.access_log_path, "--json").stdout)
    (api,) = out["routes"]
    per_key, per_session = api["limits"]
    if not key_fields:
        # Without the header the route's condition cannot be met: nothing matches.
        assert out["unmatched"] == 5 and api["requests"] == 0
        assert api["untestable"] == 5 and per_key["requests"] == 0
        return
    assert api["untestable"] == 0
    assert out["unmatched"] == 1
    assert (api["requests"], api["admitted"], api["denied"]) == (4, 2, 2)
    assert (per_key["requests"], per_key["admitted"], per_key["denied"],
            per_key["absent"]) == (3, 2, 1, 1)
    assert per_key["denied_most"] == [{"key": "k1", "denied": 1}]
    assert (per_session["requests"], per_session["admitted"], per_session["denied"],
            per_session["absent"]) == (2, 1, 1, 2)
    assert per_session["denied_most"] == [{"key": "2:s1,3:GET", "denied": 1}]


def replay_slowly(binary, conf, lines, stderr):
    """Replays `lines` from standard input in two halves 0.8 s apart, so that the replay
    lasts longer than the progress line's period whatever the build. Returns (process,
    stdout)."""
    p = subprocess.Popen([binary, "replay", "-c", conf, "-"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=stderr)
    half = len(lines) // 2
    p.stdin.write(("\n".join(lines[:half]) + "\n").encode())
    p.stdin.flush()
    time.sleep(0.8)
    p.stdin.write(("\n".join(lines[half:]) + "\n").encode())
    p.stdin.close()
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0
    return out


def test_replay_progress_only_on_a_terminal(sluice_binary, tmp_path):
    conf = tmp_path / "sluice.yaml"
    conf.write_text(config(yaml_routes()).replace("{listen}", "127.0.0.1:1").replace(
        "{admin}", "127.0.0.1:2").replace("{upstream}", "http://127.0.0.1:3").replace(
        "{access_log}", "off"))
    requests = generate(random.Random(11), 20000)
    lines = [log_line(*r[:3], key_fields=r[3]) for r in requests]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    want = replay(sluice_binary, str(conf), str(log)).stdout.replace(str(log), "-")

    # Not a terminal: the report alone, and nothing on stderr.
    with open(tmp_path / "stderr", "wb") as err:
        out = replay_slowly(sluice_binary, str(conf), lines, err)
    assert out.decode() == want
    assert (tmp_path / "stderr").read_bytes() == b""

    # A terminal: progress lines overwritten in place, erased before the same report.
    master, slave = pty.openpty()
    seen = []
    reader = threading.Thread(target=lambda: seen.append(read_all(master)))
    reader.start()
    try:
        out = replay_slowly(sluice_binary, str(conf), lines, slave)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    assert out.decode() == want
    tty = seen[0].decode()
    assert re.search(r"\rreplay: \d+ lines, \d+ lines/s, unknown left", tty), repr(tty)
    assert "\n" not in tty
    assert re.fullmatch(r"(\rreplay: [^\r]*)+\r +\r", tty), repr(tty)


def read_all(fd):
    """What a pseudo-terminal's master reads until the last slave is closed."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: no slave left
            return data
        if not chunk:
            return data
        data += chunk


def test_replay_applies_per_consumer_rates_and_reports_per_rate(sluice_binary, tmp_path):
    conf = tmp_path / "rates.yaml"
    conf.write_text(config("""\
  - name: api
    match: {path_prefix: /api}
    limits:
      - name: per_client
        algorithm: fixed_window
        rate: 1/60s
        key: client_ip
        rates:
          by: "query:plan"
          values: {pro: 3/60s, vip: unlimited, off: 0/1h}
""").replace("{listen}", "127.0.0.1:1").replace("{admin}", "127.0.0.1:2")
        .replace("{upstream}", "http://127.0.0.1:3").replace("{access_log}", "off"))
    us = START * 1_000_000
    lines = []
    for client, query, n in [("192.0.2.1", "?plan=pro", 5), ("192.0.2.2", "?plan=vip", 4),
                             ("192.0.2.3", "?plan=off", 2), ("192.0.2.4", "", 3)]:
        for _ in range(n):
            us += 1000
            lines.append(log_line(us, client, "/api/x" + query))
    log = tmp_path / "rates.log"
    log.write_text("\n".join(lines) + "\n")
    text = replay(sluice_binary, str(conf), str(log)).stdout
    assert "14 requests: 8 admitted, 0 delayed, 6 denied" in text, text
    assert "    by rate (rates by query:plan):\n" in text
    assert "      default 1/60s: 3 requests: 1 admitted, 0 delayed, 2 denied\n" in text
    assert "      3/m: 5 requests: 3 admitted, 0 delayed, 2 denied\n" in text
    assert "      unlimited: 4 requests: 4 admitted, 0 delayed, 0 denied\n" in text
    assert "      0/h: 2 requests: 0 admitted, 0 delayed, 2 denied\n" in text
    out = json.loads(replay(sluice_binary, str(conf), str(log), "--json").stdout)
    lim = out["routes"][0]["limits"][0]
    assert (lim["requests"], lim["admitted"], lim["denied"]) == (14, 8, 6)
    by_rate = {r["rate"]: (r["default"], r["requests"], r["admitted"], r["denied"])
               for r in lim["rates"]["by_rate"]}
    assert by_rate == {"1/60s": (True, 3, 1, 2), "3/m": (False, 5, 3, 2),
                       "unlimited": (False, 4, 4, 0), "0/h": (False, 2, 0, 2)}
