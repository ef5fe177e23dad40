"""Operating the rate limit service (SPEC sections 1, 8 and 12): sluice_rls_requests_total by
domain and code with a bounded set of domains, /top showing the service's keys, `sluice
explain --rls` saying which limit a descriptor matches and why, and `sluice -t` naming a bad
ratelimit file by file, line and column."""
import json
import os
import subprocess

from conftest import get, wait_until
from rls_support import OK, OVER_LIMIT, rls_config, start_rls, write_files

FILES = {
    "edge.yaml": """\
        domain: edge
        descriptors:
          - key: remote_address
            rate_limit: {unit: minute, requests_per_unit: 2}
          - key: path
            value: /api/*
            share_threshold: true
            rate_limit: {unit: hour, requests_per_unit: 100, algorithm: token_bucket}
          - key: tenant
            descriptors:
              - key: plan
                value: free
                rate_limit: {unit: day, requests_per_unit: 1000, name: free}
""",
}


def test_metrics_by_domain_and_code(sluice_factory, tmp_path):
    s, c = start_rls(sluice_factory, tmp_path, FILES)
    for _ in range(3):
        c.call("edge", [[("remote_address", "10.0.0.1")]])
    for i in range(5):
        c.call(f"made-up-{i}", [[("remote_address", "10.0.0.1")]])
    m = s.metrics()
    assert m.value("sluice_rls_requests_total", domain="edge", code="ok") == 2
    assert m.value("sluice_rls_requests_total", domain="edge", code="over_limit") == 1
    assert m.value("sluice_rls_requests_total", domain="edge", code="error") == 0
    # Domains no file names share one series: a client cannot add any.
    assert m.value("sluice_rls_requests_total", domain="", code="ok") == 5
    domains = {labels["domain"] for _, labels, _ in m.select("sluice_rls_requests_total")}
    assert domains == {"edge", ""}
    assert m.value("sluice_store_duration_seconds_count", store="memory") >= 3
    # The service counts no proxied request.
    assert m.value("sluice_requests_total") == 0
    # /config shows the block and the domains its files hold.
    rls = json.loads(get(s.admin_port, "/config").body)["rls"]
    assert rls["listen"] == f"127.0.0.1:{s.rls_port}" and rls["domains"] == ["edge"], rls
    assert rls["config"] == s.config_dir and rls["response_headers"] is False
    c.close()


def test_top_shows_the_service_keys(sluice_factory, tmp_path):
    s, c = start_rls(sluice_factory, tmp_path, FILES)
    for _ in range(4):
        c.call("edge", [[("remote_address", "10.0.0.7")]])
    c.call("edge", [[("remote_address", "10.0.0.8")]])
    for p in ("/api/a", "/api/b", "/api/c"):
        c.call("edge", [[("path", p)]])
    resp = get(s.admin_port, "/top?limit=rls:edge/edge.remote_address&n=5")
    assert resp.status == 200, resp.body
    body = json.loads(resp.body)
    [lim] = body["limits"]
    assert (lim["route"], lim["limit"]) == ("rls:edge", "edge.remote_address")
    top = {t["key"]: t["count"] for t in lim["requests"]["top"]}
    assert top == {"remote_address_10.0.0.7": 4, "remote_address_10.0.0.8": 1}
    denied = {t["key"]: t["count"] for t in lim["denials"]["top"]}
    assert denied == {"remote_address_10.0.0.7": 2}
    # Every value of the shared wildcard is one key.
    body = json.loads(get(s.admin_port, "/top").body)
    shared = [l for l in body["limits"] if l["limit"] == "edge.path_/api/*"]
    assert [(t["key"], t["count"]) for t in shared[0]["requests"]["top"]] == [("path_/api/*", 3)]
    assert get(s.admin_port, "/top?limit=rls:edge/nope").status == 404
    c.close()


def explain(binary, conf, *args, rc=0):
    r = subprocess.run([binary, "explain", "-c", conf] + list(args), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    return r.stdout + r.stderr


def test_explain_rls(sluice_binary, tmp_path):
    config_dir = write_files(str(tmp_path / "ratelimit"), FILES)
    conf = tmp_path / "sluice.yaml"
    conf.write_text(rls_config(config_dir, 1).replace("{listen}", "127.0.0.1:2")
                    .replace("{admin}", "off").replace("{upstream}", "http://127.0.0.1:3")
                    + 'redis: {url: "redis://127.0.0.1:4/0", key_prefix: "edge:"}\n')
    out = explain(sluice_binary, str(conf), "--rls", "edge", "tenant=acme,plan=free")
    assert "entry 1: tenant=acme: matched by the key alone" in out
    assert "entry 2: plan=free: matched by key and value" in out
    assert "limit: edge.tenant.plan_free" in out
    assert f"written at {config_dir}/edge.yaml:13:" in out
    assert "rate: 1000 a day, fixed_window" in out
    assert "name: free" in out
    assert "store: redis, key edge:rls:edge:edge.tenant.plan_free:rfw:tenant_acme_plan_free" in out

    out = explain(sluice_binary, str(conf), "--rls", "edge", "path=/api/x")
    assert "matched by a wildcard value, sharing one counter (share_threshold)" in out
    assert "key edge:rls:edge:edge.path_/api/*:tb:path_/api/*" in out

    out = explain(sluice_binary, str(conf), "--rls", "edge", "tenant=acme")
    assert "the entry matched has no rate_limit" in out
    out = explain(sluice_binary, str(conf), "--rls", "edge", "remote_address=1.2.3.4,x=y")
    assert "entry 2: x=y: no entry at this depth" in out
    assert "answered OK with no limit" in out
    out = explain(sluice_binary, str(conf), "--rls", "other", "a=b")
    assert "not in" in out and "answered OK with no limit" in out
    explain(sluice_binary, str(conf), "--rls", "edge", "novalue", rc=2)
    explain(sluice_binary, str(conf), "--rls", "edge", rc=2)


def test_check_names_the_bad_file(sluice_binary, tmp_path):
    config_dir = write_files(str(tmp_path / "ratelimit"), {
        "edge.yaml": "domain: edge\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, "
                     "requests_per_unit: 1}\n",
        "two.yaml": "domain: edge\ndescriptors: []\n"})
    conf = tmp_path / "sluice.yaml"
    conf.write_text(rls_config(config_dir, 1).replace("{listen}", "127.0.0.1:2")
                    .replace("{admin}", "off").replace("{upstream}", "http://127.0.0.1:3"))
    r = subprocess.run([sluice_binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{config_dir}/edge.yaml:4:24: descriptors[0].rate_limit.unit: invalid rate limit unit" \
        in r.stderr, r.stderr
    assert f"{config_dir}/two.yaml:" in r.stderr and "duplicate domain" in r.stderr, r.stderr
    os.remove(os.path.join(config_dir, "two.yaml"))
    conf.write_text(conf.read_text().replace(config_dir, str(tmp_path / "absent")))
    r = subprocess.run([sluice_binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "absent" in r.stderr, r.stderr


def test_reload_watch_sees_a_changed_file(sluice_factory, tmp_path):
    """With reload.watch, rewriting a ratelimit file reloads it, as SIGHUP does."""
    s, c = start_rls(sluice_factory, tmp_path, FILES,
                     extra="reload:\n  watch: true\n  debounce: 100ms\n")
    r = c.call("edge", [[("remote_address", "10.9.9.9")]])
    assert r.statuses[0].limit[0] == 2
    path = os.path.join(s.config_dir, "edge.yaml")
    with open(path) as f:
        text = f.read()
    with open(path + ".new", "w") as f:
        f.write(text.replace("requests_per_unit: 2}", "requests_per_unit: 7}"))
    os.replace(path + ".new", path)
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               10, 0.05, "the reload")
    r = c.call("edge", [[("remote_address", "10.9.9.9")]])
    assert r.statuses[0].limit[0] == 7
    c.close()
