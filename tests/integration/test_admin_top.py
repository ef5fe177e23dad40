"""GET /top (SPEC.md section 8): a Zipf-distributed key flood through two workers; the
admin endpoint finds the true top 10 keys by requests and by denials, with counts inside
the error it states, in memory within the stated bound, over a window no longer than the
process has run. admin.top: false removes the
endpoint; a reload keeps a limit's keys while its key sources stay, and forgets them when
they change."""
import collections
import itertools
import json
import random
import threading
import time

from conftest import Client, get, request, wait_until
from limits_support import config

K = 64                    # SL_TOP_K: counters per summary
SKETCH_BYTES = 150 * 1024  # SL_TOP_SKETCH_BYTES: the bound per limit per worker
CHUNK_BYTES = 512          # one block of 64 sketch pointers per worker
BURST = 5

ROUTES = f"""\
  - name: flood
    limits:
      - name: per_key
        algorithm: token_bucket
        rate: {BURST}/1d
        key: "header:X-Key"
"""


def top(s, query="limit=flood/per_key&n=10"):
    resp = get(s.admin_port, f"/top?{query}")
    return resp.status, (json.loads(resp.body) if resp.status in (200, 400, 404) and
                         resp.header("Content-Type") == "application/json" else None)


def zipf_keys(n, universe, s, seed):
    rng = random.Random(seed)
    weights = list(itertools.accumulate((i + 1) ** -s for i in range(universe)))
    return [f"user-{i}" for i in rng.choices(range(universe), cum_weights=weights, k=n)]


def flood(port, keys, conns=4, batch=100):
    """Sends one request per key, pipelined in batches over `conns` connections; returns
    the statuses per key."""
    statuses = collections.defaultdict(collections.Counter)
    lock = threading.Lock()
    errors = []

    def run(part):
        try:
            with Client(port) as c:
                for i in range(0, len(part), batch):
                    chunk = part[i:i + batch]
                    c.send(b"".join(request("GET", f"/f/{j}", [("X-Key", k)])
                                    for j, k in enumerate(chunk)))
                    resps = c.read_responses(len(chunk))
                    with lock:
                        for k, r in zip(chunk, resps):
                            statuses[k][r.status] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(keys[i::conns],)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return statuses


def check_list(listed, truth, total):
    """`listed` (the answer's list) holds exactly the true top 10 of `truth`, each with a
    count whose stated error covers the true one."""
    ranked = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))
    # The data are chosen so that "the top 10" is one set.
    assert ranked[9][1] > ranked[10][1], ranked[:12]
    assert listed["total"] == total
    assert listed["error_bound"] <= total // K
    got = {item["key"]: item for item in listed["top"]}
    assert set(got) == {k for k, _ in ranked[:10]}, (listed["top"], ranked[:12])
    for key, item in got.items():
        assert item["count"] - item["error"] <= truth[key] <= item["count"], (key, item)
        assert item["error"] <= listed["error_bound"]
    counts = [item["count"] for item in listed["top"]]
    assert counts == sorted(counts, reverse=True)


def check_window(window_s, spawned, ready, asked, answered):
    """The answer covers what the process has seen: its age (started between `spawned` and
    `ready`, asked between `asked` and `answered`, whole seconds) while it is younger than
    the window, whatever the machine's uptime (the monotonic clock starts at boot)."""
    youngest, oldest = asked - ready, answered - spawned
    assert int(youngest) <= window_s <= oldest, (window_s, youngest, oldest)
    if oldest < 240:
        assert window_s < 240  # the full window (240 to 300 s) only for an older process


def test_zipf_flood_top10_by_requests_and_denials(sluice_factory, upstream):
    spawned = time.monotonic()
    s = sluice_factory(config(ROUTES, workers=2), upstream=upstream)
    ready = time.monotonic()
    keys = zipf_keys(12000, universe=1000, s=1.1, seed=7)
    statuses = flood(s.port, keys)
    seen = {k: sum(c.values()) for k, c in statuses.items()}
    denied = {k: c[429] for k, c in statuses.items()}
    # The token bucket admits exactly its burst per key over the test: denials are known.
    assert all(c[200] == min(seen[k], BURST) for k, c in statuses.items())

    asked = time.monotonic()
    status, body = top(s)
    answered = time.monotonic()
    assert status == 200, body
    check_window(body["window_seconds"], spawned, ready, asked, answered)
    [lim] = body["limits"]
    assert (lim["route"], lim["limit"]) == ("flood", "per_key")
    check_list(lim["requests"], seen, len(keys))
    check_list(lim["denials"], denied, sum(denied.values()))
    # Two workers, one limit: at most one sketch each, whatever the 1000 keys.
    assert 0 < body["memory_bytes"] <= 2 * (SKETCH_BYTES + CHUNK_BYTES)

    # n bounds the lists; without `limit` every limit is listed.
    status, body = top(s, "n=3")
    assert status == 200
    assert [len(l["requests"]["top"]) for l in body["limits"]] == [3]
    assert s.sanitizer_lines() == []


def test_query_errors(sluice_factory, upstream):
    s = sluice_factory(config(ROUTES, workers=1), upstream=upstream)
    status, body = top(s, "limit=flood/nope")
    assert status == 404 and body["error"] == "unknown_limit"
    status, body = top(s, "limit=flood/per_key&n=0")
    assert status == 400 and "n: expected an integer from 1 to 64" in body["message"]
    status, body = top(s, "limit=flood/per_key&n=65")
    assert status == 400
    # Nothing recorded yet: empty lists, not an error.
    status, body = top(s)
    assert status == 200
    assert body["limits"][0]["requests"] == {"total": 0, "error_bound": 0, "top": []}


def top_off(text):
    return text.replace('admin:\n  listen: "{admin}"\n',
                        'admin:\n  listen: "{admin}"\n  top: false\n')


def test_top_off_is_not_found(sluice_factory, upstream):
    s = sluice_factory(top_off(config(ROUTES, workers=1)), upstream=upstream)
    flood(s.port, ["a"] * 20, conns=1)
    resp = get(s.admin_port, "/top?limit=flood/per_key")
    assert resp.status == 404
    assert b"user" not in resp.body and b'"a"' not in resp.body
    cfg = json.loads(get(s.admin_port, "/config").body)
    assert cfg["admin"]["top"] is False


def reload(s, text, n):
    s.reload(text)
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == n,
               what=f"reload {n}")


def test_reload_keeps_keys_unless_the_key_changes(sluice_factory, upstream):
    text = config(ROUTES, workers=1)
    s = sluice_factory(text, upstream=upstream)
    before = flood(s.port, ["alice"] * 7 + ["bob"] * 2, conns=1)

    # Same route, limit and key source (a new rate): the keys stay.
    reload(s, text.replace(f"rate: {BURST}/1d", "rate: 50/1d"), 1)
    after = flood(s.port, ["alice"], conns=1)
    status, body = top(s)
    got = {i["key"]: i["count"] for i in body["limits"][0]["requests"]["top"]}
    assert got == {"alice": 8, "bob": 2}
    denied = before["alice"][429] + after["alice"][429]
    assert denied >= 2
    assert {i["key"]: i["count"] for i in body["limits"][0]["denials"]["top"]} == {"alice": denied}

    # admin.top off by reload: the endpoint goes; back on, the keys are still there.
    reload(s, top_off(text), 2)
    assert get(s.admin_port, "/top").status == 404
    reload(s, text, 3)
    status, body = top(s)
    assert status == 200 and body["limits"][0]["requests"]["total"] == 10

    # Another key source: the old keys meant something else and are gone.
    reload(s, text.replace('key: "header:X-Key"', 'key: "header:X-Other"'), 4)
    status, body = top(s)
    assert body["limits"][0]["requests"] == {"total": 0, "error_bound": 0, "top": []}
    with Client(s.port) as c:
        c.send(request("GET", "/x", [("X-Other", "carol")]))
        assert c.read_response().status == 200
    status, body = top(s)
    assert [i["key"] for i in body["limits"][0]["requests"]["top"]] == ["carol"]
