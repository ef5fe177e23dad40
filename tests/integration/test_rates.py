"""Per-consumer rates (SPEC.md section 3, `rates:`): inline values and a VALUE<TAB>RATE file,
`unlimited` and `0/P` touching no store, an unlisted value and an absent source getting the
limit's rate, the same decisions on both stores, a consumer moved to another plan by a reload
keeping its state (on Redis too when its period grows and it is only denied after), SIGHUP
and reload.watch re-reading the file, a bad file kept out, the headers, /config and
`sluice explain`."""
import json
import os
import subprocess
import time

import pytest

from conftest import http, request, wait_until
from kube_volume import AtomicVolume
from limits_support import config, send
from redis_support import redis_config, wait_connected

LIMIT = """\
  - name: api
    match: {path_prefix: /}
    limits:
      - name: per_key
        algorithm: fixed_window
        rate: 2/1h
        key: "header:X-Key"
        store: %(store)s
        rates:
          by: "%(by)s"
%(rates)s
"""


def routes(store="memory", by="header:X-Plan", values="{pro: 4/1h, vip: unlimited, off: 0/1h}",
           file=None):
    rates = f"          values: {values}\n" if values else ""
    if file:
        rates += f"          file: {file}\n"
    return LIMIT % dict(store=store, by=by, rates=rates.rstrip("\n"))


def standalone(text):
    """A configuration for the subcommands, which start no listener."""
    return (text.replace("{listen}", "127.0.0.1:1").replace("{admin}", "127.0.0.1:2")
            .replace("{upstream}", "http://127.0.0.1:3").replace("{access_log}", "off"))


def ask(s, key, plan=None, n=1):
    headers = [("X-Key", key)] + ([("X-Plan", plan)] if plan is not None else [])
    return [send(s.port, "/a", headers) for _ in range(n)]


def codes(resps):
    return [r.status for r in resps]


def reloads(s, result):
    return s.metrics().value("sluice_config_reloads_total", result=result)


def wait_reloads(s, success, failure=0):
    wait_until(lambda: (reloads(s, "success"), reloads(s, "failure")) == (success, failure),
               what=f"{success} successful and {failure} failed reload(s)")


def test_inline_values_unlisted_and_absent_get_their_rates(sluice_factory, upstream):
    s = sluice_factory(config(routes()), upstream=upstream)
    assert codes(ask(s, "a", "pro", 5)) == [200] * 4 + [429]
    # Not listed, and no plan at all: the limit's own 2/1h.
    assert codes(ask(s, "b", "gold", 3)) == [200, 200, 429]
    assert codes(ask(s, "c", None, 3)) == [200, 200, 429]
    assert codes(ask(s, "d", "vip", 10)) == [200] * 10


def test_headers_show_the_rate_that_applied(sluice_factory, upstream):
    s = sluice_factory(config(routes()), upstream=upstream)
    r = ask(s, "a", "pro")[0]
    assert r.header("RateLimit-Policy") == '"per_key";q=4;w=3600'
    assert r.header("RateLimit").startswith('"per_key";r=3;t=')
    assert r.header("X-RateLimit-Limit") == "4"
    r = ask(s, "b")[0]
    assert r.header("RateLimit-Policy") == '"per_key";q=2;w=3600'
    # unlimited has no quota to describe: the limit is left out.
    r = ask(s, "c", "vip")[0]
    assert r.status == 200 and r.header("RateLimit-Policy") is None
    assert r.header("X-RateLimit-Limit") is None


def test_zero_rate_always_denies_with_the_period_as_retry_after(sluice_factory, upstream):
    s = sluice_factory(config(routes()), upstream=upstream)
    for r in ask(s, "a", "off", 3):
        assert r.status == 429
        assert r.header("Retry-After") == "3600"
        assert r.header("RateLimit-Policy") == '"per_key";q=0;w=3600'
        assert r.json()["limit"] == "per_key"
    assert upstream.count() == 0


def test_a_file_long_values_and_by_key(sluice_factory, upstream, tmp_path):
    long_key = "k" * 300
    (tmp_path / "consumers.tsv").write_text(
        "# plan per API key\n\nacme\t3/1h\n%s\t1/1h\nfree-rider\t0/1h\n" % long_key)
    s = sluice_factory(config(routes(by="key", values=None,
                                     file=str(tmp_path / "consumers.tsv"))), upstream=upstream)
    assert codes(ask(s, "acme", n=4)) == [200, 200, 200, 429]
    assert codes(ask(s, long_key, n=2)) == [200, 429]
    assert codes(ask(s, "k" * 299 + "j", n=3)) == [200, 200, 429]  # same length, not listed
    assert codes(ask(s, "free-rider")) == [429]
    cfg = http(s.admin_port, request("GET", "/config")).json()
    rates = cfg["routes"][0]["limits"][0]["rates"]
    assert rates["by"] == "key" and rates["values"] == 0
    assert rates["file"] == str(tmp_path / "consumers.tsv") and rates["file_lines"] == 3


def evalsha_calls(redis):
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_unlimited_and_zero_touch_no_redis_key(sluice_factory, upstream, redis_server):
    s = sluice_factory(redis_config(redis_server.url, routes(store="redis")), upstream=upstream)
    wait_connected(s)
    assert codes(ask(s, "v", "vip", 5)) == [200] * 5
    assert codes(ask(s, "o", "off", 2)) == [429] * 2
    assert redis_server.command("DBSIZE") == 0
    assert evalsha_calls(redis_server) == 0
    assert codes(ask(s, "p", "pro", 5)) == [200] * 4 + [429]
    assert evalsha_calls(redis_server) == 5
    assert redis_server.command("KEYS", "*") == ["sluice:api:per_key:fw:p"]


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_both_stores_decide_alike_and_a_plan_change_keeps_state(sluice_factory, upstream,
                                                                 redis_server, algorithm):
    two = routes(store="memory").replace("name: api", "name: m").replace(
        "path_prefix: /", "path_prefix: /m")
    two += routes(store="redis").replace("name: api", "name: r").replace(
        "path_prefix: /", "path_prefix: /r")
    two = two.replace("algorithm: fixed_window", "algorithm: " + algorithm)
    s = sluice_factory(redis_config(redis_server.url, two), upstream=upstream)
    wait_connected(s)
    for prefix in ("/m", "/r"):
        got = [send(s.port, prefix, [("X-Key", "a"), ("X-Plan", "pro")]).status for _ in range(3)]
        assert got == [200, 200, 200], prefix
        # The plan header says free (not listed: 2/1h) now: three taken already, so denied.
        got = [send(s.port, prefix, [("X-Key", "a"), ("X-Plan", "x")]).status for _ in range(1)]
        assert got == [429], prefix
        # Back on pro: one left of four.
        got = [send(s.port, prefix, [("X-Key", "a"), ("X-Plan", "pro")]).status for _ in range(2)]
        assert got == [200, 429], prefix


def test_sighup_rereads_the_file_and_moves_a_consumer(sluice_factory, upstream, redis_server,
                                                      tmp_path):
    f = tmp_path / "c.tsv"
    f.write_text("acme\t2/1h\n")
    text = routes(store="redis", by="key", values=None, file=str(f))
    text += routes(store="memory", by="key", values=None, file=str(f)).replace(
        "name: api", "name: mem").replace("path_prefix: /", "path_prefix: /mem")
    text = text.replace("- name: api\n    match: {path_prefix: /}",
                        "- name: api\n    match: {path_prefix: /a}")
    s = sluice_factory(redis_config(redis_server.url, text), upstream=upstream)
    wait_connected(s)
    for path in ("/a", "/mem"):
        assert [send(s.port, path, [("X-Key", "acme")]).status for _ in range(2)] == [200, 200]
    f.write_text("acme\t5/1h\n")
    s.reload()
    wait_reloads(s, 1)
    # Moved to 5/1h with two taken: three more on either store.
    for path in ("/a", "/mem"):
        got = [send(s.port, path, [("X-Key", "acme")]).status for _ in range(4)]
        assert got == [200, 200, 200, 429], path


def test_sliding_window_moved_down_and_back_up_keeps_every_request(sluice_factory, upstream,
                                                                   redis_server, tmp_path):
    """A sliding_window consumer moved by reloads to a smaller N and back within the window
    still has every request it made on record, on either store: exactly N admitted in all."""
    f = tmp_path / "c.tsv"
    f.write_text("acme\t5/1h\n")
    text = ""
    for store, prefix in (("memory", "/mem"), ("redis", "/red")):
        text += routes(store=store, by="key", values=None, file=str(f)).replace(
            "name: api", "name: " + store).replace("path_prefix: /", "path_prefix: " + prefix)
    text = text.replace("algorithm: fixed_window", "algorithm: sliding_window")
    s = sluice_factory(redis_config(redis_server.url, text), upstream=upstream)
    wait_connected(s)
    paths = ("/mem", "/red")
    for path in paths:
        assert [send(s.port, path, [("X-Key", "acme")]).status for _ in range(5)] == [200] * 5
    f.write_text("acme\t2/1h\n")
    s.reload()
    wait_reloads(s, 1)
    for path in paths:
        assert send(s.port, path, [("X-Key", "acme")]).status == 429, path
    f.write_text("acme\t5/1h\n")
    s.reload()
    wait_reloads(s, 2)
    for path in paths:
        got = [send(s.port, path, [("X-Key", "acme")]) for _ in range(3)]
        assert codes(got) == [429] * 3, path
        # A place frees when the first of the five leaves, an hour after it was admitted.
        assert got[-1].header("X-RateLimit-Limit") == "5", path
        assert 3500 <= int(got[-1].header("Retry-After")) <= 3600, path
    # Another consumer is not held by acme's requests.
    for path in paths:
        assert send(s.port, path, [("X-Key", "other")]).status == 200, path


def test_sliding_window_moved_to_a_longer_period_stays_denied(sluice_factory, upstream,
                                                              redis_server, tmp_path):
    """A sliding_window consumer moved by a reload to a longer period, and only denied from
    then on, still has its requests on record once the period they were admitted under has
    passed, on either store: Redis keeps the key alive until they leave the new window
    instead of letting it expire with the old one. No over-limit cache, so that every
    denial asks Redis, as it does on an instance or a worker that has not seen the key."""
    f = tmp_path / "c.tsv"
    f.write_text("acme\t3/2s\n")
    text = ""
    for store, prefix in (("memory", "/mem"), ("redis", "/red")):
        text += routes(store=store, by="key", values=None, file=str(f)).replace(
            "name: api", "name: " + store).replace("path_prefix: /", "path_prefix: " + prefix)
    text = text.replace("algorithm: fixed_window", "algorithm: sliding_window")
    conf = redis_config(redis_server.url, text).replace(
        '  key_prefix: "sluice:"\n', '  key_prefix: "sluice:"\n  deny_cache: 0\n')
    s = sluice_factory(conf, upstream=upstream)
    wait_connected(s)
    paths = ("/mem", "/red")
    start = time.monotonic()
    for path in paths:
        assert [send(s.port, path, [("X-Key", "acme")]).status for _ in range(3)] == [200] * 3
    f.write_text("acme\t3/4s\n")
    s.reload()
    wait_reloads(s, 1)
    for path in paths:
        assert send(s.port, path, [("X-Key", "acme")]).status == 429, path
    # The move came within the old period: its state was still there to carry.
    assert time.monotonic() - start < 2, "the reload took longer than the old period"
    time.sleep(max(0.0, start + 2.5 - time.monotonic()))
    for path in paths:
        got = send(s.port, path, [("X-Key", "acme")])
        assert got.status == 429, path
        assert 1 <= int(got.header("Retry-After")) <= 2, path
    assert 0 < redis_server.command("PTTL", "sluice:redis:per_key:sw:acme") <= 4000
    # Once the three have left the 4 s window, both let acme in again.
    time.sleep(max(0.0, start + 4.3 - time.monotonic()))
    for path in paths:
        assert send(s.port, path, [("X-Key", "acme")]).status == 200, path


def test_a_bad_line_keeps_the_old_file_and_counts_a_failed_reload(sluice_factory, upstream,
                                                                  tmp_path):
    f = tmp_path / "c.tsv"
    f.write_text("acme\t3/1h\n")
    s = sluice_factory(config(routes(by="key", values=None, file=str(f))), upstream=upstream)
    f.write_text("acme\t5/1h\nbeta\tfast\ngamma 7/1h\n")
    s.reload()
    wait_reloads(s, 0, 1)
    err = s.stderr_text()
    assert f"{f}:2:6: routes[0].limits[0].rates.file: expected a rate" in err
    assert f"{f}:3:1: routes[0].limits[0].rates.file: expected VALUE<TAB>RATE" in err
    assert codes(ask(s, "acme", n=4)) == [200, 200, 200, 429]


def test_reload_watch_rereads_the_file(sluice_factory, upstream, tmp_path):
    f = tmp_path / "c.tsv"
    f.write_text("acme\t1/1h\n")
    s = sluice_factory(config(routes(by="key", values=None, file=str(f)),
                              extra="reload:\n  watch: true\n  debounce: 100ms\n"),
                       upstream=upstream)
    assert codes(ask(s, "acme", n=2)) == [200, 429]
    tmp = tmp_path / "c.tsv.new"
    tmp.write_text("acme\t3/1h\n")
    os.rename(tmp, f)
    wait_reloads(s, 1)
    assert codes(ask(s, "acme", n=3)) == [200, 200, 429]


def test_reload_watch_follows_a_configmap_symlink_swap_of_the_file(sluice_factory, upstream,
                                                                    tmp_path):
    vol = AtomicVolume(str(tmp_path / "consumers"), "consumers.tsv")
    root = vol.root
    vol.write("acme\t1/1h\n")
    s = sluice_factory(config(routes(by="key", values=None,
                                     file=os.path.join(root, "consumers.tsv")),
                              extra="reload:\n  watch: true\n  debounce: 100ms\n"),
                       upstream=upstream)
    assert codes(ask(s, "acme", n=2)) == [200, 429]
    vol.write("acme\t3/1h\n")
    wait_reloads(s, 1)
    assert codes(ask(s, "acme", n=3)) == [200, 200, 429]
    # A broken file keeps the running rates, and counts a failed reload.
    vol.write("acme\tsoon\n")
    wait_reloads(s, 1, 1)
    assert codes(ask(s, "acme")) == [429]


def test_validation_errors_name_the_file_and_line(sluice_binary, tmp_path):
    f = tmp_path / "c.tsv"
    f.write_text("a\t1/s\nb\t2/s\na\t3/s\n\tx\n")
    conf = tmp_path / "s.yaml"
    conf.write_text(standalone(config(routes(by="key", values="{b: 1/m, c: soon}",
                                             file="c.tsv"))))
    r = subprocess.run([sluice_binary, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "routes[0].limits[0].rates.values.\"c\": expected a rate" in r.stderr
    assert f"{f}:2:1: routes[0].limits[0].rates.file: value listed twice; values has it" in r.stderr
    assert f"{f}:3:1: routes[0].limits[0].rates.file: value listed twice; line 1 has it" in r.stderr
    assert f"{f}:4:1: routes[0].limits[0].rates.file: expected a value before the tab" in r.stderr


def test_check_prints_what_each_table_holds(sluice_binary, tmp_path):
    (tmp_path / "c.tsv").write_text("a\t1/s\nb\t2/s\n")
    conf = tmp_path / "s.yaml"
    conf.write_text(standalone(config(routes(by="key", file="c.tsv"))))
    r = subprocess.run([sluice_binary, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"rates: api.per_key by key: 3 inline values, 2 from {tmp_path}/c.tsv; table " in r.stdout


def test_explain_names_the_rate_and_why(sluice_binary, tmp_path):
    (tmp_path / "c.tsv").write_text("# header\nacme\t3/1h\n")
    conf = tmp_path / "s.yaml"
    conf.write_text(standalone(config(routes(by="header:X-Plan", file="c.tsv"))))

    def explain(*headers):
        argv = [sluice_binary, "explain", "-c", str(conf), "-H", "X-Key: k"]
        for h in headers:
            argv += ["-H", h]
        r = subprocess.run(argv + ["GET", "/a"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [l for l in r.stdout.splitlines() if "rate applied" in l][0].strip()

    assert explain("X-Plan: acme") == \
        f'rate applied: 3/h, for header:X-Plan "acme": {tmp_path}/c.tsv line 2'
    assert explain("X-Plan: pro") == 'rate applied: 4/h, for header:X-Plan "pro": inline value'
    assert explain("X-Plan: vip").startswith("rate applied: unlimited, for header:X-Plan \"vip\"")
    assert explain("X-Plan: zz") == 'rate applied: 2/1h, default rate: header:X-Plan "zz" not listed'
    assert explain() == "rate applied: 2/1h, default rate: header:X-Plan absent"
    r = subprocess.run([sluice_binary, "explain", "--json", "-c", str(conf), "-H", "X-Key: k",
                        "-H", "X-Plan: acme", "GET", "/a"], capture_output=True, text=True)
    rates = json.loads(r.stdout)["limits"][0]["rates"]
    assert rates == {"by": "header:X-Plan", "value": "acme", "applied": "3/h", "from": "file",
                     "file": f"{tmp_path}/c.tsv", "line": 2}
