"""A large route table (SPEC.md section 2): 1 000 generated routes of every path kind, many
of them path_regex and overlapping, some with method and header conditions. sluice routes
each request as a first-match walk over the table would, before and after a reload that
reorders the table. The RateLimit-Policy field names the limit, and so the route."""
import random
import re

from conftest import wait_until
from limits_support import config, send

NROUTES = 1000
BUCKETS = 40  # distinct path values, so that routes overlap


def table(seed):
    """The routes, as dicts: kind, value, methods, header."""
    rng = random.Random(seed)
    routes = []
    for i in range(NROUTES):
        k = rng.randrange(BUCKETS)
        kind = rng.choice(["path", "path_prefix", "path_regex", "path_regex"])
        if kind == "path":
            value = rng.choice([f"/p/{k}/x", f"/p/{k}"])
        elif kind == "path_prefix":
            value = rng.choice([f"/p/{k}", f"/q/{k}/"])
        else:
            value = rng.choice([f"^/p/{k}/[0-9]+$", f"^/(p|q)/{k}/x$", f"^/q/{k}/[a-z]{{2}}",
                                f"^/p/{k}(/[0-9]{{2,}})?$", f"^/q/{k}/(x|[0-9]+)$"])
        routes.append({"name": f"r{i}", "kind": kind, "value": value,
                       "methods": ["POST"] if rng.random() < 0.2 else None,
                       "header": rng.random() < 0.15})
    return routes


def yaml_routes(routes):
    out = []
    for r in routes:
        out.append(f"  - name: {r['name']}\n    match:\n      {r['kind']}: \"{r['value']}\"\n")
        if r["methods"]:
            out.append(f"      methods: [{', '.join(r['methods'])}]\n")
        if r["header"]:
            out.append("      headers: {X-T: \"1\"}\n")
        out.append(f"    limits:\n      - {{name: l{r['name'][1:]}, algorithm: token_bucket, "
                   "rate: 1000000/s, key: route}\n")
    return "".join(out)


def walk(routes, method, path, headers):
    """The first route, in file order, whose every condition holds (the naive walk)."""
    for r in routes:
        v = r["value"]
        if r["kind"] == "path":
            ok = path == v
        elif r["kind"] == "path_prefix":
            ok = path.startswith(v) and (len(path) == len(v) or v.endswith("/")
                                         or path[len(v)] == "/")
        else:
            ok = re.search(v, path) is not None  # these patterns mean the same in POSIX ERE
        if ok and r["methods"] and method not in r["methods"]:
            ok = False
        if ok and r["header"] and ("X-T", "1") not in headers:
            ok = False
        if ok:
            return r["name"]
    return None


def requests(seed, n):
    rng = random.Random(seed)
    for _ in range(n):
        k = rng.randrange(BUCKETS + 2)
        path = rng.choice([f"/p/{k}/x", f"/p/{k}/123", f"/q/{k}/x", f"/p/{k}", f"/q/{k}/ab",
                           f"/q/{k}/42", f"/p/{k}/7/", "/none"])
        method = rng.choice(["GET", "GET", "POST"])
        headers = [("X-T", "1")] if rng.random() < 0.3 else []
        yield method, path, headers


def check_routing(s, routes, seed):
    matched = 0
    for method, path, headers in requests(seed, 150):
        r = send(s.port, path, headers=headers, method=method)
        assert r.status == 200, (method, path)
        p = r.header("RateLimit-Policy")
        got = f"r{p.split(';')[0].strip(chr(34))[1:]}" if p else None
        want = walk(routes, method, path, headers)
        assert got == want, (method, path, headers)
        matched += want is not None
    assert matched > 75  # the requests reach routes, not only the fallthrough


def test_a_large_table_routes_as_the_walk_before_and_after_a_reload(sluice_factory, upstream):
    routes = table(1)
    assert sum(r["kind"] == "path_regex" for r in routes) > 400
    # Compiling the patterns takes seconds under the sanitizers on a loaded machine.
    s = sluice_factory(config(yaml_routes(routes)), upstream=upstream, wait=False)
    s.wait_ready(timeout=120)
    check_routing(s, routes, 11)

    # The same routes in another order: another route now comes first for many paths.
    shuffled = routes[:]
    random.Random(2).shuffle(shuffled)
    s.reload(config(yaml_routes(shuffled)))
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               timeout=120, what="the reload")
    check_routing(s, shuffled, 12)
