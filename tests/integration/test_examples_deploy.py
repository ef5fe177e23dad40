"""The deployment examples: examples/docker-compose.yml and examples/kubernetes/. No
container engine runs here, so the files are parsed and checked against sluice itself:
each sluice container's configuration (the file compose mounts, the ConfigMap) is run
with the container's environment (the Dockerfile's ENV and the example's own), its listen
ports moved to free ones and the app and Redis replaced by a real upstream and a real
redis-server on loopback. sluice's /config then says what the container would bind and
reach, and the containers' ports, probes and Services are compared with it. The admin
token is followed from where the deployment keeps it (the host's environment for compose, a
Secret for Kubernetes) to sluice and to Prometheus's scrape configuration: /top, /config
and /metrics refuse a request without it, the probes answer without it, and the
credentials Prometheus would send are accepted."""
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import time

import pytest
import yaml

from conftest import Client, get, request, wait_until
from examples_support import (EXAMPLES, ExampleSluice, check_config, config_path_of, image,
                              make_tls_files,
                              listens_on_any_address, only_addr, only_port, prepare, promtool)
from harness_procs import STOP_TIMEOUT

ANY_ADDRESS = ("0.0.0.0", "[::]", "::")
SLUICE_DRAIN_S = 10  # sluice finishes in-flight requests for up to 10 s after the delay


@pytest.fixture
def example_sluice(request, sluice_binary, tmp_path):
    """start(config_text, env) -> ExampleSluice; each is stopped at teardown and must
    exit 0 with no sanitizer report."""
    started = []
    request.node._sluices = started

    def start(config_text, env):
        s = ExampleSluice(sluice_binary, str(tmp_path), 100 + len(started), config_text, env)
        started.append(s)
        return s.start()
    yield start
    problems = []
    for s in started:
        rc = s.stop()
        if rc != 0:
            problems.append(f"{s.name} exited with {rc}")
        problems += s.sanitizer_lines()[:20]
    assert problems == [], "\n".join(problems)


def effective(s):
    """GET /config of a running sluice (with s.admin_token, when set)."""
    resp = get(s.admin_port, "/config", s.admin_headers())
    assert resp.status == 200, resp
    return resp.json()


def check_admin_token(s, token, scrape_credentials):
    """/top, /config and /metrics answer 401 without the token or with another; with it,
    200 (the token redacted in /config); the probes' paths answer without it; and the
    credentials Prometheus reads from its file are the token sluice expects (Prometheus
    strips the file's surrounding whitespace)."""
    bearer = [("Authorization", f"Bearer {token}")]
    for path in ("/top", "/config", "/metrics"):
        assert get(s.admin_port, path).status == 401, path
        assert get(s.admin_port, path, [("Authorization", f"Bearer {token}x")]).status == 401
    assert get(s.admin_port, "/top", bearer).status == 200
    assert effective(s)["admin"]["token"] == "***"
    assert effective(s)["admin"]["metrics_auth"] is True
    for path in ("/healthz", "/readyz"):
        assert get(s.admin_port, path).status == 200, path
    scrape = [("Authorization", f"Bearer {scrape_credentials.strip()}")]
    resp = get(s.admin_port, "/metrics", scrape)
    assert resp.status == 200 and b"sluice_requests_total" in resp.body, resp


def prometheus_job(path):
    """The one scrape job of a Prometheus configuration under examples/prometheus/."""
    with open(os.path.join(EXAMPLES, "prometheus", path)) as f:
        config = yaml.safe_load(f)
    [job] = config["scrape_configs"]
    auth = job["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    return config, job


def promtool_check_config(tmp_path, path, credentials):
    """`promtool check config` on a copy of examples/prometheus/`path` beside the rules,
    its credentials file moved to one holding `credentials` (promtool checks it exists).
    promtool builds without Kubernetes discovery (Debian's) do not know
    kubernetes_sd_configs: the job is then checked with static_configs in its place."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (scripts/install-deps.sh --test)")
    config, job = prometheus_job(path)
    secret = tmp_path / "credentials"
    secret.write_text(credentials)
    job["authorization"]["credentials_file"] = str(secret)
    for rules in config.get("rule_files", []):
        shutil.copy(os.path.join(EXAMPLES, "prometheus", rules), tmp_path / rules)
    copy = tmp_path / path
    copy.write_text(yaml.safe_dump(config))
    rc, out = promtool("check", "config", str(copy))
    if rc != 0 and "field kubernetes_sd_configs not found" in out:
        job["static_configs"] = [{"targets": ["10.0.0.1:9901"]}]
        del job["kubernetes_sd_configs"]
        copy.write_text(yaml.safe_dump(config))
        rc, out = promtool("check", "config", str(copy))
    assert rc == 0, out


def host_port(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def check_listeners(s, cfg, seen):
    """listen (each entry of a list) and admin.listen bind every address of the container,
    on the port the example wrote; returns the container's (listen port, admin port), and
    with a TLS entry also its port."""
    ports = []
    listen = cfg["listen"] if isinstance(cfg["listen"], list) else [{"address": cfg["listen"]}]
    checks = [("tls", e["address"], s.tls_port) if e.get("tls") else
              ("listen", e["address"], s.port) for e in listen]
    for key, value, port in checks + [("admin", cfg["admin"]["listen"], s.admin_port)]:
        host, bound = host_port(value)
        assert host in ANY_ADDRESS, f"{key} binds {host}: unreachable from outside the container"
        assert bound == port
        assert listens_on_any_address(s.pid, port), f"{key}: no socket on *:{port}"
        ports.append(only_port(seen, key))
    return tuple(ports)


def check_serves(s, upstream):
    """The probes' paths answer, and a request goes through to the app."""
    assert get(s.admin_port, "/healthz").status == 200
    wait_until(lambda: get(s.admin_port, "/readyz").status == 200, what="/readyz 200")
    upstream.clear_log()
    resp = get(s.port, "/api/hello")
    assert resp.status == 200, resp
    assert [e["target"] for e in upstream.log()] == ["/api/hello"]


def check_serves_tls(s, upstream, pod, sluice):
    """The TLS listener's files are those of the Secret the pod mounts at their folder, and
    a request over TLS goes through to the app."""
    tls_dirs = {m["mountPath"]: m["name"] for m in sluice["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == tls_dirs["/etc/sluice/tls"])
    assert volume["secret"]["secretName"] == "sluice-tls"
    secrets = [d for d in load_manifests() if d["kind"] == "Secret"
               and d["metadata"]["name"] == "sluice-tls"]
    assert [d["type"] for d in secrets] == ["kubernetes.io/tls"]
    ctx = ssl.create_default_context(cafile=os.path.join(s.tls_dir, "tls.crt"))
    upstream.clear_log()
    with socket.create_connection(("127.0.0.1", s.tls_port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /api/tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
    [seen] = upstream.log()
    assert seen["target"] == "/api/tls"
    assert ("X-Forwarded-Proto", "https") in [tuple(h) for h in seen["headers"]]


def redis_connected(s):
    return wait_until(lambda: s.metrics().value("sluice_redis_connected") == 1,
                      what="sluice_redis_connected 1")


def seconds(value):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(value))
    assert m, f"duration {value!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


# ---------------------------------------------------------------- docker compose

def load_compose():
    with open(os.path.join(EXAMPLES, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


# What the host exports before `docker compose up` (docker-compose.yml's first lines).
HOST_ENV = {"SLUICE_ADMIN_TOKEN": "c0mpose-admin-T0ken"}
_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


def interpolate(value, host_env):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} (an unset or empty variable
    counts as missing), from the host's environment."""
    def sub(m):
        name, op, arg = m.groups()
        found = host_env.get(name, "")
        if not found and op == "?":
            raise ValueError(f"compose refuses to start: {name}: {arg}")
        return found or (arg if op == "-" else "")
    return _COMPOSE_VAR.sub(sub, value)


def compose_env(svc, host_env=HOST_ENV):
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: interpolate(str(v), host_env) for k, v in env.items()}


def compose_scrape(compose):
    """Prometheus's scrape job in compose, and the credentials it reads: the secret file
    compose mounts (from the host variable the secret names)."""
    prom = compose["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"])
    assert mounts.get("./prometheus/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    config, job = prometheus_job("prometheus.yml")
    # Rule files are found beside the configuration file.
    for rules in config.get("rule_files", []):
        assert mounts.get(f"./prometheus/{rules}") == f"/etc/prometheus/{rules}", rules
    path = job["authorization"]["credentials_file"]
    secret = path.removeprefix("/run/secrets/")
    assert path == f"/run/secrets/{secret}" and secret in prom["secrets"], path
    variable = compose["secrets"][secret]["environment"]
    return job, variable, HOST_ENV[variable]


def published(svc):
    """{container port: published spec} of a compose service's ports."""
    out = {}
    for spec in svc.get("ports", []):
        out[int(str(spec).split(":")[-1].split("/")[0])] = str(spec)
    return out


def compose_sluices(compose):
    img = image()
    out = {}
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue
        context = os.path.normpath(os.path.join(EXAMPLES, svc["build"]["context"]))
        assert os.path.isfile(os.path.join(context, "Dockerfile")), name
        argv = svc.get("entrypoint", img["entrypoint"]) + svc.get("command", img["cmd"])
        in_container = config_path_of(argv)
        mounts = [v.split(":") for v in svc.get("volumes", [])]
        files = [os.path.join(EXAMPLES, m[0]) for m in mounts if m[1] == in_container]
        assert len(files) == 1, f"{name}: nothing mounted at {in_container}"
        env = dict(img["env"])
        env.update(compose_env(svc))
        out[name] = (svc, files[0], env)
    return out


def test_compose_file_shape():
    compose = load_compose()
    services = compose["services"]
    sluices = compose_sluices(compose)
    assert len(sluices) == 2, "two sluice replicas"
    assert "ports" not in services["app"], "the app is reachable only through sluice"
    assert "redis" in services
    for name, (svc, path, env) in sluices.items():
        assert set(svc["depends_on"]) >= {"app", "redis"}, name
        assert all(":ro" in v for v in svc["volumes"]), f"{name}: mount the config read-only"
    # Both replicas publish different host ports.
    host_ports = [spec.rsplit(":", 1)[0] for svc, _, _ in sluices.values()
                  for spec in published(svc).values()]
    assert len(host_ports) == len(set(host_ports))


def test_compose_admin_token_from_the_host_to_sluice_and_prometheus(tmp_path):
    compose = load_compose()
    job, variable, token = compose_scrape(compose)
    for name, (svc, path, env) in compose_sluices(compose).items():
        # The replicas get the host variable Prometheus's secret is made of.
        assert env["SLUICE_ADMIN_TOKEN"] == token, name
        with open(path) as f:
            admin = yaml.safe_load(f)["admin"]
        assert (admin["token"], admin["metrics_auth"]) == ("${SLUICE_ADMIN_TOKEN}", True)
        # Without it compose refuses to start, rather than start an open admin port.
        with pytest.raises(ValueError, match=variable):
            compose_env(svc, {})
    promtool_check_config(tmp_path, "prometheus.yml", token)


def test_compose_sluice_config_is_accepted_as_the_container_reads_it(sluice_binary):
    for name, (svc, path, env) in compose_sluices(load_compose()).items():
        rc, out = check_config(sluice_binary, path, env)
        assert rc == 0 and "configuration ok" in out, f"{name}: {out}"


def test_compose_replicas_listen_reach_the_app_and_share_redis(example_sluice, upstream,
                                                               redis_server):
    compose = load_compose()
    services = compose["services"]
    app_ports = {int(p) for p in services["app"].get("expose", [])}
    redis_ports = {int(p) for p in services["redis"].get("expose", [])}
    job, _, scrape_credentials = compose_scrape(compose)
    running = []
    for name, (svc, path, env) in compose_sluices(compose).items():
        text, env, seen = prepare(open(path).read(), env, upstream.port, redis_server.port)
        s = example_sluice(text, env)
        s.admin_token = env["SLUICE_ADMIN_TOKEN"]
        cfg = effective(s)
        listen_port, admin_port = check_listeners(s, cfg, seen)
        ports = published(svc)
        assert listen_port in ports, f"{name} does not publish its listen port {listen_port}"
        assert admin_port in ports, f"{name} does not publish its admin port {admin_port}"
        assert ports[admin_port].startswith("127.0.0.1:"), "admin published on loopback only"
        # The app and Redis by their service names and ports.
        assert only_addr(seen, "upstream")[0] == "app"
        assert only_addr(seen, "upstream")[1] in app_ports
        assert only_addr(seen, "redis") in {("redis", p) for p in redis_ports}
        grace = seconds(svc["stop_grace_period"])
        assert grace > cfg["shutdown"]["drain_delay_ms"] / 1000 + SLUICE_DRAIN_S, name
        check_serves(s, upstream)
        redis_connected(s)
        check_admin_token(s, env["SLUICE_ADMIN_TOKEN"], scrape_credentials)
        # Prometheus scrapes this replica by its service name, on its admin port.
        assert f"{name}:{admin_port}" in job["static_configs"][0]["targets"]
        running.append(s)

    # One limit for both: the login route's first limit admits its N in total.
    login = yaml.safe_load(open(compose_sluices(compose)["sluice1"][1]))["routes"][0]
    n = int(login["limits"][0]["rate"].split("/")[0])
    statuses = [get_status(running[i % 2].port, login["match"]["path_prefix"])
                for i in range(n + 2)]
    assert statuses == [200] * n + [429, 429]


def get_status(port, path):
    with Client(port) as c:
        return c.exchange(request("POST", path, [("Content-Length", "0")])).status


# ---------------------------------------------------------------- Kubernetes

def load_manifests():
    docs = []
    directory = os.path.join(EXAMPLES, "kubernetes")
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml"):
            with open(os.path.join(directory, name)) as f:
                docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def named_port(container, port):
    """A port by number or by the container's name for it."""
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"container {container['name']} has no port named {port}"
    return found[0]


def secret_value(docs, name, key):
    """A key of a Secret of the manifests, as a container or a mounted file sees it."""
    secret = next(d for d in kinds(docs, "Secret") if d["metadata"]["name"] == name)
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    return base64.b64decode(secret["data"][key]).decode()


def container_env(docs, container):
    """A container's environment: values, and secretKeyRef resolved from the Secrets."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secret_value(docs, ref["name"], ref["key"])
    return env


def kubernetes_scrape(docs):
    """Prometheus's scrape job for the pods, and the credentials it reads: the Secret
    mounted at /etc/prometheus/secrets/NAME/ (as the Prometheus Operator mounts it)."""
    _, job = prometheus_job("prometheus-kubernetes.yml")
    path = job["authorization"]["credentials_file"]
    m = re.fullmatch(r"/etc/prometheus/secrets/([^/]+)/([^/]+)", path)
    assert m, path
    return job, m.groups(), secret_value(docs, *m.groups())


def relabel_keeps(job, labels):
    """Whether the job's keep rules keep a target with these discovery labels."""
    for rule in job["relabel_configs"]:
        if rule.get("action") == "keep":
            values = [labels.get(label, "") for label in rule["source_labels"]]
            value = rule.get("separator", ";").join(values)
            if not re.fullmatch(str(rule["regex"]), value):
                return False
    return True


def sluice_pod(docs):
    """(Deployment, pod spec, sluice container, app container, ConfigMap text, env)."""
    deployments = [d for d in kinds(docs, "Deployment")
                   if any(c["name"] == "sluice" for c in d["spec"]["template"]["spec"]["containers"])]
    assert len(deployments) == 1
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    sluice = next(c for c in pod["containers"] if c["name"] == "sluice")
    others = [c for c in pod["containers"] if c["name"] != "sluice"]
    assert len(others) == 1, "one application container beside sluice"
    img = image()
    path = config_path_of(sluice.get("command", img["entrypoint"]) + sluice.get("args", img["cmd"]))
    mount = next(m for m in sluice["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = next(c for c in kinds(docs, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"])
    key = path[len(mount["mountPath"].rstrip("/")) + 1:]
    assert key in cm["data"], f"the ConfigMap has no {key} for {path}"
    env = dict(img["env"])
    env.update(container_env(docs, sluice))
    return dep, pod, sluice, others[0], cm["data"][key], env


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_kubernetes_config_is_accepted_as_the_container_reads_it(sluice_binary, tmp_path):
    _, _, _, _, text, env = sluice_pod(load_manifests())
    # The Secret sluice-tls mounted where the container reads it.
    make_tls_files(str(tmp_path / "tls"))
    path = tmp_path / "sluice.yaml"
    path.write_text(text.replace("/etc/sluice/tls/", f"{tmp_path}/tls/"))
    rc, out = check_config(sluice_binary, str(path), env)
    assert rc == 0 and "configuration ok" in out, out


def test_kubernetes_admin_token_from_the_secret_to_sluice_and_prometheus(tmp_path):
    docs = load_manifests()
    dep, _, sluice, app, text, env = sluice_pod(docs)
    job, (name, key), scrape_credentials = kubernetes_scrape(docs)
    # sluice's token is the key of the Secret Prometheus reads, never a literal value.
    [ref] = [e["valueFrom"]["secretKeyRef"] for e in sluice["env"]
             if e["name"] == "SLUICE_ADMIN_TOKEN"]
    assert (ref["name"], ref["key"]) == (name, key)
    assert env["SLUICE_ADMIN_TOKEN"] == scrape_credentials
    admin = yaml.safe_load(text)["admin"]
    assert (admin["token"], admin["metrics_auth"]) == ("${SLUICE_ADMIN_TOKEN}", True)
    # The kubelet's probes send no credentials: they need none.
    for probe in ("readinessProbe", "livenessProbe"):
        assert "httpHeaders" not in sluice[probe]["httpGet"], probe

    # The job scrapes the sluice container's admin port of the annotated pods, at the path
    # the annotations name, and no other port.
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    meta = {"__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
            for k, v in annotations.items()}
    ports = [(c, p) for c in (sluice, app) for p in c["ports"]]
    kept = [(c["name"], p["containerPort"]) for c, p in ports
            if relabel_keeps(job, dict(meta, __meta_kubernetes_pod_container_port_name=p["name"]))]
    assert kept == [("sluice", named_port(sluice, "admin"))]
    [path_rule] = [r for r in job["relabel_configs"] if r.get("target_label") == "__metrics_path__"]
    assert [meta[l] for l in path_rule["source_labels"]] == ["/metrics"]
    promtool_check_config(tmp_path, "prometheus-kubernetes.yml", scrape_credentials)


def test_kubernetes_sidecar_ports_probes_service_and_drain(example_sluice, upstream,
                                                           redis_server):
    docs = load_manifests()
    dep, pod, sluice, app, text, env = sluice_pod(docs)
    text, env, seen = prepare(text, env, upstream.port, redis_server.port)
    s = example_sluice(text, env)
    s.admin_token = env["SLUICE_ADMIN_TOKEN"]
    cfg = effective(s)
    listen_port, tls_port, admin_port = check_listeners(s, cfg, seen)

    # Container ports and probes are the configured ports; the probes' paths answer.
    assert named_port(sluice, "http") == listen_port
    assert named_port(sluice, "https") == tls_port
    assert named_port(sluice, "admin") == admin_port
    ready, live = sluice["readinessProbe"]["httpGet"], sluice["livenessProbe"]["httpGet"]
    assert (ready["path"], named_port(sluice, ready["port"])) == ("/readyz", admin_port)
    assert (live["path"], named_port(sluice, live["port"])) == ("/healthz", admin_port)
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    assert int(annotations["prometheus.io/port"]) == admin_port
    check_serves(s, upstream)
    check_serves_tls(s, upstream, pod, sluice)
    redis_connected(s)
    check_admin_token(s, env["SLUICE_ADMIN_TOKEN"], kubernetes_scrape(docs)[2])

    # The app in the same pod, on loopback; Redis by a Service of the manifests.
    up_host, up_port = only_addr(seen, "upstream")
    assert up_host in ("127.0.0.1", "localhost")
    assert up_port == app["ports"][0]["containerPort"]
    redis_host, redis_port = only_addr(seen, "redis")
    svc = next(d for d in kinds(docs, "Service") if d["metadata"]["name"] == redis_host)
    target = next(p for p in svc["spec"]["ports"] if p["port"] == redis_port)["targetPort"]
    redis_pods = [d["spec"]["template"] for d in kinds(docs, "Deployment")
                  if selects(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    assert [named_port(t["spec"]["containers"][0], target) for t in redis_pods] == [6379]

    # The Service carries application traffic to sluice's listen port only.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    services = [d for d in kinds(docs, "Service") if selects(d["spec"]["selector"], labels)]
    assert len(services) == 1
    targets = {named_port(sluice, p["targetPort"]) for p in services[0]["spec"]["ports"]}
    assert targets == {listen_port, tls_port}
    for policy in kinds(docs, "NetworkPolicy"):
        if selects(policy["spec"]["podSelector"]["matchLabels"], labels):
            allowed = {named_port(sluice, p["port"]) for r in policy["spec"]["ingress"]
                       for p in r["ports"]}
            assert allowed == {listen_port, tls_port, admin_port}

    # Termination: SIGTERM reaches both containers at once. sluice fails /readyz at once
    # and keeps serving for drain_delay while the app's preStop keeps it up as long; the
    # grace period covers the delay and sluice's drain.
    delay = cfg["shutdown"]["drain_delay_ms"] / 1000
    assert delay == 5
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > delay + SLUICE_DRAIN_S
    assert app["lifecycle"]["preStop"]["sleep"]["seconds"] >= delay
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    wait_until(lambda: get(s.admin_port, "/readyz").status == 503, 1.0, 0.01, "/readyz 503")
    assert get(s.admin_port, "/healthz").status == 200
    resp = get(s.port, "/api/during-drain")
    assert resp.status == 200 and "close" in resp.tokens("connection"), resp
    assert s.stop(timeout=STOP_TIMEOUT) == 0
    elapsed = time.monotonic() - t0
    assert delay - 0.5 <= elapsed < grace, f"exited {elapsed:.1f}s after SIGTERM"
