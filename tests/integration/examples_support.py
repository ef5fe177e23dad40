"""Helpers for the tests of examples/: what the container image sets (read from the
Dockerfile), the metrics sluice exports, the metric names a PromQL expression uses, and
a sluice run on a deployment example's own configuration with its addresses remapped to
this machine's loopback."""
import json
import os
import re
import shlex
import subprocess

import yaml

from harness_http import pick_port
from harness_procs import ROOT, Sluice

EXAMPLES = os.path.join(ROOT, "examples")

# Metrics of SPEC.md section 8 with their types and labels. Label names and the values
# enumerated there are checked in the examples' expressions; the types of a real scrape
# are checked against this table too.
SPEC_METRICS = {
    "sluice_requests_total": ("counter", {"route", "decision"}),
    "sluice_limit_checks_total": ("counter", {"route", "limit", "result"}),
    "sluice_responses_total": ("counter", {"route", "code"}),
    "sluice_request_duration_seconds": ("histogram", {"route"}),
    "sluice_store_duration_seconds": ("histogram", {"store"}),
    "sluice_store_errors_total": ("counter", {"store", "kind"}),
    "sluice_redis_connected": ("gauge", set()),
    "sluice_upstream_errors_total": ("counter", {"kind"}),
    "sluice_connections_active": ("gauge", set()),
    "sluice_connections_accepted_total": ("counter", set()),
    "sluice_memory_keys": ("gauge", set()),
    "sluice_memory_evictions_total": ("counter", set()),
    "sluice_config_reloads_total": ("counter", {"result"}),
    "sluice_build_info": ("gauge", {"version"}),
    "sluice_deny_cache_hits_total": ("counter", set()),
    "sluice_redis_redirections_total": ("counter", {"kind"}),
    "sluice_redis_topology_refreshes_total": ("counter", set()),
    "sluice_limit_units_total": ("counter", {"route", "limit", "kind"}),
    "sluice_charge_errors_total": ("counter", {"route", "limit"}),
    "sluice_http2_streams_total": ("counter", set()),
    "sluice_http2_goaways_total": ("counter", {"reason"}),
    "sluice_tls_handshakes_total": ("counter", {"result"}),
}
LABEL_VALUES = {
    "decision": {"allowed", "limited", "shadow_limited", "exempt", "unmatched", "store_error"},
    "result": {"allow", "deny", "error", "shadow_deny", "success", "failure", "ok", "resumed",
               "failed"},
    "store": {"memory", "redis"},
    "reason": {"shutdown", "idle", "stalled", "enhance_your_calm", "protocol_error"},
}
# Labels Prometheus adds at scrape time.
TARGET_LABELS = {"job", "instance"}


# ---------------------------------------------------------------- the container image

def image():
    """The final stage of the Dockerfile: {"env": {...}, "entrypoint": [...], "cmd": [...],
    "expose": {port, ...}}."""
    out = {"env": {}, "entrypoint": [], "cmd": [], "expose": set()}
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            out = {"env": {}, "entrypoint": [], "cmd": [], "expose": set()}
        elif word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                out["env"][name] = value
        elif word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
        elif word == "EXPOSE":
            out["expose"] |= {int(p.split("/")[0]) for p in rest.split()}
    return out


def config_path_of(argv):
    """The file after -c in a sluice command line, else sluice's default."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-c":
            return argv[i + 1]
    return "/etc/sluice/sluice.yaml"


def check_config(binary, path, env):
    """`sluice -t -c path` with the container's environment: (exit code, output)."""
    full = dict(os.environ)
    full.update(env)
    full.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    p = subprocess.run([binary, "-t", "-c", path], env=full, capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout + p.stderr


# ---------------------------------------------------------------- metrics and PromQL

def exported_metrics(metrics_text):
    """{name: type} of the # TYPE lines of one scrape."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out[name] = kind
    return out


def series_names(families):
    """The series names a query may select: histograms as _bucket, _sum and _count."""
    names = {}
    for name, kind in families.items():
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[name + suffix] = name
        else:
            names[name] = name
    return names


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool", "inf", "nan", "sum", "min", "max", "avg", "group",
            "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
_STRING = r'"(?:[^"\\]|\\.)*"'
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*(' + _STRING + r')\s*,?')


def selectors(expr):
    """[(metric name, [(label, op, value)])] of every series selector in a PromQL
    expression (one already known to parse): the names standing where a series can."""
    out = []
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations

    def take(m):
        matchers = []
        body = m.group(2)
        pos = 0
        while pos < len(body):
            mm = _MATCHER.match(body, pos)
            assert mm, f"unreadable matchers {{{body}}} in {expr!r}"
            matchers.append((mm.group(1), mm.group(2), json.loads(mm.group(3))))
            pos = mm.end()
        out.append((m.group(1), matchers))
        return " "
    expr = re.sub(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", take, expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    expr = re.sub(_STRING, '""', expr)
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr):
        if m.group(1).lower() not in KEYWORDS:
            out.append((m.group(1), []))
    return out


def check_selectors(expr, families, defined=()):
    """Problems with the metrics an expression selects: names sluice does not export
    (families: {name: type}), label names and enumerated values SPEC does not have.
    `defined` are names that recording rules define."""
    names = series_names(families)
    problems = []
    found = selectors(expr)
    if not found:
        problems.append(f"no metric in {expr!r}")
    for name, matchers in found:
        if name in defined:
            continue
        family = names.get(name)
        if family is None:
            problems.append(f"{name} is not a metric sluice exports (in {expr!r})")
            continue
        labels = SPEC_METRICS.get(family, (None, set()))[1] | TARGET_LABELS
        if name.endswith("_bucket") and families.get(family) == "histogram":
            labels = labels | {"le"}
        for label, op, value in matchers:
            if label not in labels:
                problems.append(f"{name} has no label {label} (in {expr!r})")
            elif op == "=" and label in LABEL_VALUES and value not in LABEL_VALUES[label]:
                problems.append(f'{name}{{{label}="{value}"}} is not a value SPEC names')
    return problems


def promtool_check_exprs(tmp_dir, exprs):
    """Writes each expression as a recording rule and runs `promtool check rules`:
    (exit code, output)."""
    rules = {"groups": [{"name": "exprs", "rules": [
        {"record": f"example:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = os.path.join(tmp_dir, "exprs.rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(rules, f)
    return promtool("check", "rules", path)


def promtool(*args, cwd=None):
    p = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    return p.returncode, p.stdout + p.stderr


# ---------------------------------------------------------------- a deployment's sluice

_ADDR = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<port>\d+)(?![\d.])")


def remap_value(raw, env, fn):
    """Applies fn(host, port) -> "host:port" to every address in a configuration value
    as written and in the environment variables it names (${VAR} or ${VAR:-default}),
    so that sluice itself still does the expansion. Returns the new value; env is
    changed in place. Addresses inside ${...:-default} are rewritten too."""
    def sub(text):
        return _ADDR.sub(lambda m: fn(m.group("host"), int(m.group("port"))), text)
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw):
        if name in env:
            env[name] = sub(env[name])
    return sub(raw)


def make_tls_files(directory):
    """tls.crt and tls.key as a kubernetes.io/tls Secret holds them: a self-signed
    certificate for localhost and 127.0.0.1 (ca.crt is the same certificate)."""
    os.makedirs(directory, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key", "-out", "tls.crt",
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=directory, check=True, capture_output=True)


class ExampleSluice(Sluice):
    """A sluice on an example's configuration, with the container's environment.
    {listen_port} and {admin_port} in the configuration and in the environment are this
    run's free ports (picked again if another socket takes them first)."""

    def __init__(self, binary, tmp_dir, index, yaml_text, env):
        self.raw_env = dict(env)
        self.tls_port = pick_port()
        self.tls_dir = os.path.join(tmp_dir, f"tls-{index}")
        if "{tls_dir}" in yaml_text:
            make_tls_files(self.tls_dir)
        super().__init__(binary, tmp_dir, index, yaml_text, None, True, {})

    def render(self, text):
        return (super().render(text).replace("{listen_port}", str(self.port))
                .replace("{admin_port}", str(self.admin_port))
                .replace("{tls_port}", str(self.tls_port)).replace("{tls_dir}", self.tls_dir))

    def _spawn(self):
        self.env = {k: self.render(v) for k, v in self.raw_env.items()}
        super()._spawn()


def prepare(config_text, env, upstream_port, redis_port):
    """An example's configuration made runnable here: the ports of listen and admin.listen
    become {listen_port} and {admin_port} (hosts kept, so 0.0.0.0 stays 0.0.0.0), and the
    upstream's and Redis's addresses become 127.0.0.1 with the given ports.

    A `listen` list's TLS entry gets {tls_port} (its address recorded under "tls"), and its
    certificate files under /etc/sluice/tls/ (a Secret's mount) are looked for in
    {tls_dir} instead.

    Returns (yaml text, env, seen) where seen maps "listen", "tls", "admin", "upstream" and
    "redis" to the addresses written for them, as {(host, port)}."""
    cfg = yaml.safe_load(config_text)
    env = dict(env)
    seen = {k: set() for k in ("listen", "tls", "admin", "upstream", "redis")}

    def to(key, host, port):
        def fn(h, p):
            seen[key].add((h, p))
            return f"{host or h}:{port}"
        return fn
    if isinstance(cfg["listen"], list):
        for entry in cfg["listen"]:
            tls = entry.get("tls")
            key, port = ("tls", "{tls_port}") if tls else ("listen", "{listen_port}")
            entry["address"] = remap_value(entry["address"], env, to(key, None, port))
            for c in (tls or {}).get("certificates", []):
                for k in ("cert", "key"):
                    c[k] = c[k].replace("/etc/sluice/tls/", "{tls_dir}/")
    else:
        cfg["listen"] = remap_value(cfg["listen"], env, to("listen", None, "{listen_port}"))
    cfg["admin"]["listen"] = remap_value(cfg["admin"]["listen"], env,
                                         to("admin", None, "{admin_port}"))
    cfg["upstream"]["url"] = remap_value(cfg["upstream"]["url"], env,
                                         to("upstream", "127.0.0.1", upstream_port))
    if "redis" in cfg:
        cfg["redis"]["url"] = remap_value(cfg["redis"]["url"], env,
                                          to("redis", "127.0.0.1", redis_port))
    return yaml.safe_dump(cfg, sort_keys=False), env, seen


def only_port(seen, key):
    """The one port written for a key (hosts may differ between a default and the
    environment: /config says which one applies)."""
    ports = {p for _, p in seen[key]}
    assert len(ports) == 1, f"{key} names the ports {sorted(ports)}; an example names one"
    return ports.pop()


def only_addr(seen, key):
    assert len(seen[key]) == 1, f"{key} names {sorted(seen[key])}; an example names one"
    return next(iter(seen[key]))


def listens_on_any_address(pid, port):
    """True when the process pid has a TCP socket listening on 0.0.0.0:port or [::]:port
    (read from /proc/net: the kernel's view, not the configuration's)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table, any_addr in (("tcp", "00000000"), ("tcp6", "0" * 32)):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            addr, hexport = cols[1].split(":")
            if cols[3] == "0A" and int(hexport, 16) == port and cols[9] in inodes:
                if addr == any_addr:
                    return True
    return False
