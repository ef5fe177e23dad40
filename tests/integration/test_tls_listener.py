"""TLS listeners (SPEC section 11): a `listen` list with a TLS entry beside a cleartext one,
certificates chosen by SNI, ALPN into HTTP/2, resumption, mTLS, X-Forwarded-Proto, the
version floor, bad certificate files refused naming the file, and certificates rotated by
a reload while open connections keep their sessions. Clients: curl, nghttp, openssl
s_client and Python's ssl module, against a CA made at test time (tls_certs.py)."""
import json
import os
import shutil
import socket
import ssl
import subprocess

import pytest

from conftest import get as plain_get
from conftest import pick_port, wait_until
from kube_volume import AtomicVolume
from tls_certs import certs  # noqa: F401 (a fixture)

CONFIG = """\
listen:
  - address: "{listen}"
  - address: "127.0.0.1:%(tls_port)d"
    tls:
      certificates:
%(certificates)s
      min_version: "%(min_version)s"
%(client_ca)s
workers: 2
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
access_log: "{access_log}"
routes:
  - name: all
    match:
      path_prefix: "/"
    limits:
      - name: per_client
        algorithm: fixed_window
        rate: 5/1h
        key: "%(key)s"
"""


def tls_config(certs, tls_port, names=("server",), min_version="1.2", client_ca=False,
               key="client_ip", pairs=None):
    """`pairs`: (cert, key) paths, else the certificates `names` of the test CA."""
    pairs = pairs or [(certs.path(n, "pem"), certs.path(n, "key")) for n in names]
    lines = "\n".join(f"        - {{cert: {c}, key: {k}}}" for c, k in pairs)
    ca = f"      client_ca: {certs.ca}" if client_ca else ""
    return CONFIG % dict(tls_port=tls_port, certificates=lines, min_version=min_version,
                         client_ca=ca, key=key)


@pytest.fixture
def tls_proxy(sluice_factory, upstream, certs):
    def start(**kw):
        port = pick_port()
        s = sluice_factory(tls_config(certs, port, **kw), upstream=upstream)
        s.tls_port = port
        wait_until(lambda: _can_connect(port), 10, 0.02, "the TLS listener")
        return s
    return start


def _can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def curl(certs, url, *args):
    r = subprocess.run(["curl", "-sS", "--cacert", certs.ca, "-o", "/dev/null", "-w",
                        "%{http_code} %{http_version}", *args, url],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip(), r.returncode, r.stderr


def client_context(certs, client=None, version=None):
    ctx = ssl.create_default_context(cafile=certs.ca)
    if client:
        ctx.load_cert_chain(certs.path(client, "pem"), certs.path(client, "key"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def handshake(port, ctx, name="localhost", alpn=None):
    """(subject CN of the certificate served, the ALPN chosen, TLS version)."""
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            cn = dict(x[0] for x in cert["subject"])["commonName"]
            return cn, tls.selected_alpn_protocol(), tls.version()


def get(port, ctx, target="/", name="localhost", headers=""):
    with socket.create_connection(("127.0.0.1", port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}"
                        "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return int(data.split(b" ", 2)[1])


def test_https_and_h2_over_alpn_share_the_limits_with_cleartext(tls_proxy, certs):
    s = tls_proxy()
    base = f"https://localhost:{s.tls_port}/a"
    assert curl(certs, base, "--http1.1")[0] == "200 1.1"
    assert curl(certs, base, "--http2")[0] == "200 2"
    out = subprocess.run(["nghttp", "-v", base.replace("localhost", "127.0.0.1")],
                         capture_output=True, text=True, timeout=20).stdout
    assert ":status: 200" in out and "h2" in out
    assert plain_get(s.port, "/a").status == 200
    assert curl(certs, base, "--http2")[0] == "200 2"
    # One limit across both listeners and both protocols: that fifth request was the
    # last admitted.
    assert curl(certs, base, "--http2")[0] == "429 2"
    assert curl(certs, base, "--http1.1")[0] == "429 1.1"
    assert plain_get(s.port, "/a").status == 429
    m = s.metrics()
    assert m.value("sluice_tls_handshakes_total", result="ok") >= 4
    assert m.value("sluice_http2_streams_total") >= 2


def test_forwarded_proto_says_https_only_for_tls(tls_proxy, certs, upstream):
    s = tls_proxy()
    assert curl(certs, f"https://localhost:{s.tls_port}/p", "--http1.1")[0] == "200 1.1"
    assert curl(certs, f"https://localhost:{s.tls_port}/p", "--http2")[0] == "200 2"
    assert plain_get(s.port, "/p").status == 200
    protos = [v for e in upstream.log() for n, v in e["headers"]
              if n.lower() == "x-forwarded-proto"]
    assert protos == ["https", "https", "http"]


def test_certificate_chosen_by_sni_exact_then_wildcard_then_first(tls_proxy, certs):
    s = tls_proxy(names=("server", "other", "wild"))
    ctx = client_context(certs)
    ctx.check_hostname = False  # the default certificate is asked for by other names
    assert handshake(s.tls_port, ctx, "other.test")[0] == "other.test"
    assert handshake(s.tls_port, ctx, "api.wild.test")[0] == "wild.test"
    assert handshake(s.tls_port, ctx, "OTHER.test")[0] == "other.test"
    assert handshake(s.tls_port, ctx, "a.b.wild.test")[0] == "localhost"
    assert handshake(s.tls_port, ctx, "unknown.test")[0] == "localhost"
    assert handshake(s.tls_port, ctx, "localhost")[0] == "localhost"


def test_alpn_prefers_h2_and_old_versions_are_refused(tls_proxy, certs):
    s = tls_proxy()
    assert handshake(s.tls_port, client_context(certs), alpn=["http/1.1", "h2"])[1] == "h2"
    assert handshake(s.tls_port, client_context(certs), alpn=["http/1.1"])[1] == "http/1.1"
    assert handshake(s.tls_port, client_context(certs))[1] is None
    assert handshake(s.tls_port, client_context(certs, version=ssl.TLSVersion.TLSv1_2))[2] \
        == "TLSv1.2"
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{s.tls_port}",
                        "-tls1_1"], input="", capture_output=True, text=True, timeout=20)
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0
    wait_until(lambda: s.metrics().value("sluice_tls_handshakes_total", result="failed") >= 1,
               10, 0.05, "the failed handshake counted")


def test_min_version_13_refuses_12(tls_proxy, certs):
    s = tls_proxy(min_version="1.3")
    assert handshake(s.tls_port, client_context(certs))[2] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(s.tls_port, client_context(certs, version=ssl.TLSVersion.TLSv1_2))


def test_sessions_resume_with_tickets(tls_proxy, certs):
    s = tls_proxy()
    ctx = client_context(certs)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx.maximum_version = version
        session = None
        for attempt in range(2):
            with socket.create_connection(("127.0.0.1", s.tls_port), 5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as t:
                    # A TLS 1.3 ticket arrives after the handshake: read a response first.
                    t.sendall(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert t.recv(100).startswith(b"HTTP/1.1 200")
                    assert t.session_reused == (attempt == 1), (version, attempt)
                    session = t.session
    wait_until(lambda: s.metrics().value("sluice_tls_handshakes_total", result="resumed") == 2,
               10, 0.05, "the resumed handshakes counted")


def test_mtls_asks_for_a_client_certificate(tls_proxy, certs):
    s = tls_proxy(client_ca=True)
    assert get(s.tls_port, client_context(certs, client="client")) == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(s.tls_port, client_context(certs))
    # A certificate the CA did not sign is refused too.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(s.tls_port, client_context(certs, client="rogue"))
    assert s.metrics().value("sluice_tls_handshakes_total", result="failed") >= 1


def test_the_client_certificate_subject_is_a_key(tls_proxy, certs):
    s = tls_proxy(client_ca=True, key="tls_client_subject")
    one, two = client_context(certs, client="client"), client_context(certs, client="client2")
    assert [get(s.tls_port, one) for _ in range(6)] == [200] * 5 + [429]
    assert get(s.tls_port, two) == 200
    base = f"https://localhost:{s.tls_port}/h2"
    r = curl(certs, base, "--http2", "--cert", certs.path("client2", "pem"), "--key",
             certs.path("client2", "key"))
    assert r[0] == "200 2", r
    top = s.metrics()
    assert top.value("sluice_limit_checks_total", route="all", limit="per_client",
                     result="deny") == 1


def test_cleartext_bytes_on_the_tls_port_fail_the_handshake_only(tls_proxy, certs):
    s = tls_proxy()
    with socket.create_connection(("127.0.0.1", s.tls_port), 5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.settimeout(5)
        try:
            data = c.recv(100)  # a TLS alert, or nothing
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/")
    assert get(s.tls_port, client_context(certs)) == 200


def check_config(sluice_binary, tmp_path, text):
    path = tmp_path / "check.yaml"
    path.write_text(text)
    return subprocess.run([sluice_binary, "-t", "-c", str(path)], capture_output=True,
                          text=True, timeout=20)


def minimal(certificates, port=18443):
    return CONFIG.replace("{listen}", "127.0.0.1:18080").replace("{admin}", "off") \
        .replace("{upstream}", "http://127.0.0.1:9").replace("{access_log}", "off") % dict(
            tls_port=port, certificates=certificates, min_version="1.2", client_ca="",
            key="client_ip")


def test_bad_certificate_files_are_refused_naming_the_file(sluice_binary, tmp_path, certs):
    def entry(cert, key):
        return f"        - {{cert: {cert}, key: {key}}}"
    cases = [
        (entry(certs.path("expired", "pem"), certs.path("expired", "key")),
         certs.path("expired", "pem"), "expired"),
        (entry(certs.path("server", "pem"), certs.path("other", "key")),
         certs.path("other", "key"), "does not match"),
        (entry(str(tmp_path / "missing.pem"), certs.path("server", "key")),
         str(tmp_path / "missing.pem"), "cannot read"),
        (entry(certs.ca, str(tmp_path / "nokey.key")), str(tmp_path / "nokey.key"),
         "cannot read"),
    ]
    for certificates, file, words in cases:
        r = check_config(sluice_binary, tmp_path, minimal(certificates))
        assert r.returncode != 0, certificates
        assert file in r.stderr and words in r.stderr, r.stderr
        assert "listen[1].tls" in r.stderr and ":7:" in r.stderr.split("\n")[0], r.stderr
    r = check_config(sluice_binary, tmp_path, minimal("        []"))
    assert r.returncode != 0 and "listen[1].tls.certificates" in r.stderr, r.stderr
    r = check_config(sluice_binary, tmp_path,
                     minimal(entry(certs.path("server", "pem"), certs.path("server", "key"))))
    assert r.returncode == 0, r.stderr
    # A relative path is the configuration file's directory's, wherever sluice runs (check_config
    # runs it from the test's working directory, not tmp_path).
    (tmp_path / "tls").mkdir()
    shutil.copy(certs.path("server", "pem"), tmp_path / "tls" / "s.pem")
    shutil.copy(certs.path("server", "key"), tmp_path / "tls" / "s.key")
    r = check_config(sluice_binary, tmp_path, minimal(entry("tls/s.pem", "tls/s.key")))
    assert r.returncode == 0, r.stderr


def test_reload_rotates_certificates_and_open_sessions_go_on(tls_proxy, certs, tmp_path):
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs.path("server", "pem"), live_cert)
    shutil.copy(certs.path("server", "key"), live_key)
    s = tls_proxy(pairs=[(live_cert, live_key)])
    ctx = client_context(certs)
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", s.tls_port), 5)
    held = ctx.wrap_socket(raw, server_hostname="localhost")
    assert dict(x[0] for x in held.getpeercert()["subject"])["commonName"] == "localhost"

    # The file is rotated (cert-manager writes both); SIGHUP picks it up.
    shutil.copy(certs.path("other", "pem"), live_cert)
    shutil.copy(certs.path("other", "key"), live_key)
    s.reload()
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               10, 0.05, "the rotation")
    assert handshake(s.tls_port, ctx, "localhost")[0] == "other.test"
    # The connection opened before keeps its session and is served.
    held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 200")
    held.close()

    # A broken file keeps the running certificates and counts a failed reload.
    live_key.write_text("not a key\n")
    s.reload()
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="failure") == 1,
               10, 0.05, "the failed reload")
    assert handshake(s.tls_port, ctx, "localhost")[0] == "other.test"
    assert str(live_key) in s.stderr_text()


def test_reload_watch_follows_a_secret_rotated_by_symlink_swap(sluice_factory, upstream, certs,
                                                                tmp_path):
    """cert-manager renews a certificate into a Secret; the kubelet swaps the volume's
    `..data` link. With reload.watch no SIGHUP is needed."""
    vol = AtomicVolume(str(tmp_path / "tls"), "tls.crt")

    def secret(name):
        with open(certs.path(name, "pem")) as c, open(certs.path(name, "key")) as k:
            return {"tls.crt": c.read(), "tls.key": k.read()}
    vol.write_files(secret("server"))
    port = pick_port()
    text = tls_config(certs, port, pairs=[(vol.path, os.path.join(vol.root, "tls.key"))])
    s = sluice_factory(text + "reload:\n  watch: true\n  debounce: 100ms\n", upstream=upstream)
    wait_until(lambda: _can_connect(port), 10, 0.02, "the TLS listener")
    ctx = client_context(certs)
    ctx.check_hostname = False
    assert handshake(port, ctx)[0] == "localhost"
    vol.write_files(secret("other"))
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               10, 0.05, "the reload the swap caused")
    assert handshake(port, ctx)[0] == "other.test"


def test_testssl_finds_nothing_medium_or_above_in_the_defaults(tls_proxy, certs, tmp_path):
    """testssl.sh against the listener with the defaults (only certificates given): the
    protocols, cipher lists, forward secrecy, server preferences and defaults, and the known
    vulnerabilities. Findings about the certificate itself (the test CA's: its trust,
    lifetime, revocation URIs) and the application's HTTP headers are the operator's, not
    the listener's, and are left out."""
    if shutil.which("testssl") is None:
        pytest.skip("testssl.sh is not installed")
    s = tls_proxy()
    out = tmp_path / "testssl.json"
    subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--fast",
                    "-p", "-s", "-f", "-P", "-S", "-U", "--add-ca", certs.ca,
                    "--ip", "127.0.0.1", "--jsonfile", str(out),
                    f"https://localhost:{s.tls_port}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    findings = json.loads(out.read_text())
    assert any(f["id"] == "TLS1_3" and f["finding"] == "offered with final" for f in findings)
    assert any(f["id"] == "TLS1_1" and f["finding"] == "not offered" for f in findings)
    bad = [f for f in findings if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")
           and not f["id"].startswith("cert")]
    assert bad == [], bad
