"""`sluice explain` (SPEC.md section 1): what sluice would do with one request, and why,
from the same code the proxy runs, with no store touched. Every branch: no route, each
reason a route is passed over, X-Forwarded-For from a trusted and an untrusted peer, an
absent key source, composite keys, the digest of a long key, Redis keys with their prefix
and algorithm tag, and the usage and configuration errors."""
import hashlib
import json
import subprocess

import pytest

CONFIG = """\
listen: "127.0.0.1:1"
upstream: {url: "http://127.0.0.1:2"}
trusted_proxies: ["10.0.0.0/8"]
exempt: ["192.0.2.99/32"]
redis: {url: "redis://127.0.0.1:1/0", key_prefix: "edge:"}
routes:
  - name: health
    match: {path: /healthz}
  - name: login
    match: {path_prefix: /api/login, methods: [POST]}
    limits:
      - {name: per_ip, algorithm: sliding_window, rate: 5/1m, key: client_ip}
  - name: tenant
    match: {path_prefix: /api, host: api.example.com}
  - name: v2
    match:
      path_prefix: /api
      headers: {X-Api-Version: "2"}
    limits:
      - {name: per_key, algorithm: token_bucket, rate: 100/s, burst: 150,
         key: ["header:X-Api-Key", method], store: memory}
      - {name: by_query, algorithm: leaky_bucket, rate: 1/s, key: "query:q", shadow: true}
      - {name: by_path, algorithm: fixed_window, rate: 10/s, key: path}
"""


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "sluice.yaml"
    p.write_text(CONFIG)
    return str(p)


def explain(binary, conf, *args, json_out=True, rc=0):
    argv = [binary, "explain", "-c", conf] + (["--json"] if json_out else []) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if json_out and rc == 0 else r


def test_no_route_lists_why_each_route_was_passed_over(sluice_binary, conf):
    x = explain(sluice_binary, conf, "GET", "/api//./orders?id=3",
                "-H", "Host: API.example.com:8443", "-H", "X-Api-Version: 1")
    # Normalised as the engine does: path folded, host lower-cased without its port.
    assert x["path"] == "/api/orders" and x["host"] == "api.example.com"
    assert x["route"] == "tenant" and x["limits"] == []
    assert [(r["name"], r["matched"], r["failed"]) for r in x["routes"]] == [
        ("health", False, "path"), ("login", False, "path"), ("tenant", True, None)]
    x = explain(sluice_binary, conf, "POST", "/api/login", "-H", "Host: other.example",
                "-H", "X-Api-Version: 1")
    assert [(r["name"], r["failed"]) for r in x["routes"]] == [
        ("health", "path"), ("login", None)]
    x = explain(sluice_binary, conf, "GET", "/api/login", "-H", "Host: other.example",
                "-H", "X-Api-Version: 1")
    assert x["route"] is None
    assert [(r["name"], r["failed"]) for r in x["routes"]] == [
        ("health", "path"), ("login", "method"), ("tenant", "host"), ("v2", "header")]
    reasons = [r["reason"] for r in x["routes"]]
    assert reasons[0] == 'path "/api/login" is not path "/healthz"'
    assert reasons[1] == 'method "GET" is not one of POST'
    assert reasons[2] == 'host "other.example" is not "api.example.com"'
    assert reasons[3] == 'no header X-Api-Version with exactly the value "2"'

    text = explain(sluice_binary, conf, "GET", "/nowhere", json_out=False).stdout
    assert 'path:    "/nowhere"' in text
    assert "no route matches: forwarded with no limit" in text


def test_untrusted_peer_forwarded_for_is_ignored(sluice_binary, conf):
    x = explain(sluice_binary, conf, "--peer", "198.51.100.5", "-H",
                "X-Forwarded-For: 203.0.113.1", "POST", "/api/login")
    c = x["client"]
    assert (c["address"], c["source"], c["hop"], c["why"]) == (
        "198.51.100.5", "peer", None, "untrusted_peer")
    assert "not in trusted_proxies" in c["reason"]
    assert x["route"] == "login"
    assert x["limits"][0]["key"] == "edge:login:per_ip:sw:198.51.100.5"


def test_trusted_peer_forwarded_for_hop(sluice_binary, conf):
    x = explain(sluice_binary, conf, "--peer", "10.0.0.1",
                "-H", "X-Forwarded-For: 198.51.100.9, 203.0.113.7, 10.2.2.2",
                "-H", "X-Forwarded-For: 10.3.3.3", "POST", "/api/login")
    c = x["client"]
    # From the right: 10.3.3.3 (1), 10.2.2.2 (2) are trusted; 203.0.113.7 (3) is the client.
    assert (c["address"], c["source"], c["hop"], c["why"]) == (
        "203.0.113.7", "x-forwarded-for", 3, "first_untrusted_hop")
    assert x["limits"][0]["key"] == "edge:login:per_ip:sw:203.0.113.7"
    text = explain(sluice_binary, conf, "--peer", "10.0.0.1", "-H",
                   "X-Forwarded-For: 203.0.113.7", "POST", "/api/login", json_out=False).stdout
    assert "client:  203.0.113.7, X-Forwarded-For entry 1 from the right" in text

    x = explain(sluice_binary, conf, "--peer", "10.0.0.1", "-H", "X-Forwarded-For: 10.1.1.1",
                "POST", "/api/login")
    assert (x["client"]["address"], x["client"]["why"]) == ("10.1.1.1", "all_hops_trusted")
    x = explain(sluice_binary, conf, "--peer", "10.0.0.1", "-H", "X-Forwarded-For: nonsense",
                "POST", "/api/login")
    assert (x["client"]["address"], x["client"]["why"], x["client"]["hop"]) == (
        "10.0.0.1", "malformed_hop", 1)
    x = explain(sluice_binary, conf, "--peer", "192.0.2.99", "POST", "/api/login")
    assert x["client"]["exempt"] is True


def test_limits_keys_absent_composite_and_redis_tags(sluice_binary, conf):
    x = explain(sluice_binary, conf, "-H", "X-Api-Version: 2", "GET", "/api/a/../b?q=x%20y")
    assert x["route"] == "v2"
    per_key, by_query, by_path = x["limits"]
    assert (per_key["applies"], per_key["skipped"], per_key["absent"]) == (
        False, "source absent", "header:X-Api-Key")
    assert (per_key["store"], per_key["algorithm"], per_key["rate"], per_key["burst"],
            per_key["shadow"]) == ("memory", "token_bucket", "100/s", 150, False)
    # query values are percent-decoded; Redis keys carry the prefix and the algorithm tag.
    assert by_query["key"] == "edge:v2:by_query:lb:x y" and by_query["shadow"] is True
    assert by_path["key"] == "edge:v2:by_path:fw:/api/b"

    x = explain(sluice_binary, conf, "-H", "X-Api-Version: 2", "-H", "x-api-key: k,1",
                "GET", "/api/b")
    per_key, by_query, _ = x["limits"]
    # A composite key: each value with its length, so ("k,1","GET") cannot meet another tuple.
    assert per_key["applies"] and per_key["key"] == "3:k,1,3:GET" and per_key["digest"] is False
    assert by_query["absent"] == "query:q"
    text = explain(sluice_binary, conf, "-H", "X-Api-Version: 2", "GET", "/api/b",
                   json_out=False).stdout
    assert "per_key: skipped: source absent (header:X-Api-Key)" in text
    assert 'by_path: key "edge:v2:by_path:fw:/api/b"' in text
    assert "store memory, algorithm token_bucket, rate 100/s, burst 150, shadow no" in text


def test_long_key_value_is_held_under_its_digest(sluice_binary, conf):
    long_path = "/api/" + "x" * 300
    x = explain(sluice_binary, conf, "-H", "X-Api-Version: 2", "GET", long_path)
    by_path = x["limits"][2]
    assert by_path["digest"] is True and by_path["value"] == long_path
    assert by_path["key"] == "edge:v2:by_path:fw:" + hashlib.sha256(long_path.encode()).hexdigest()
    # 200 bytes exactly is still held as is.
    edge = "/api/" + "y" * 195
    assert explain(sluice_binary, conf, "-H", "X-Api-Version: 2", "GET", edge)[
        "limits"][2]["key"] == "edge:v2:by_path:fw:" + edge


def test_usage_and_configuration_errors(sluice_binary, conf, tmp_path):
    for args in (["GET"], ["--peer", "not-an-ip", "GET", "/"], ["-H", "no colon", "GET", "/"],
                 ["--bogus", "GET", "/"], ["G E T", "/"], ["GET", "/", "extra"]):
        r = explain(sluice_binary, conf, *args, json_out=False, rc=2)
        assert r.stderr.startswith("sluice explain: ") and "usage: sluice explain" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("rate: 5/1m", "rate: fast"))
    r = explain(sluice_binary, str(bad), "GET", "/", json_out=False, rc=1)
    assert 'routes[1].limits[0].rate: expected "N/unit"' in r.stderr
    assert r.stderr.startswith(f"sluice: {bad}:")
    r = subprocess.run([sluice_binary, "explain", "-h"], capture_output=True, text=True)
    assert r.returncode == 0 and "--peer ADDR" in r.stdout
    r = subprocess.run([sluice_binary, "-h"], capture_output=True, text=True)
    assert "sluice explain [-c FILE]" in r.stdout


def test_explained_redis_keys_are_the_keys_redis_holds(sluice_factory, upstream, redis_server):
    """The key explain prints is the one the Redis store writes, tag and digest included."""
    from conftest import Client, request
    from redis_support import redis_config, route, wait_connected

    routes = route("keys", [
        dict(name="per_ip", algorithm="sliding_window", rate="100/1m", key="client_ip"),
        # A token returns after 30 min: the key outlives the test (its TTL is the refill).
        dict(name="per_user", algorithm="token_bucket", rate="2/1h",
             key='["header:X-User", method]'),
        dict(name="per_path", algorithm="fixed_window", rate="100/1m", key="path")])
    s = sluice_factory(redis_config(redis_server.url, routes, key_prefix="x:"), upstream=upstream)
    wait_connected(s)
    long_user = "u" * 300
    explained = set()
    with Client(s.port) as c:
        for user in ("alice", long_user):
            assert c.exchange(request("GET", "/keys//a/../b", [("X-User", user)])).status == 200
            x = explain(s.binary, s.config_path, "-H", f"X-User: {user}", "GET", "/keys//a/../b")
            explained |= {lim["key"] for lim in x["limits"]}
            assert all(lim["store"] == "redis" for lim in x["limits"])
    assert sorted(redis_server.command("KEYS", "*")) == sorted(explained)
    assert f"x:keys:per_user:tb:{hashlib.sha256(f'300:{long_user},3:GET'.encode()).hexdigest()}" \
        in explained
