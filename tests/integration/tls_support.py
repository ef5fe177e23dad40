"""A throwaway certificate authority for the TLS tests, made with the openssl command once per
test run: the CA, a server certificate for 127.0.0.1 and localhost (subjectAltName), and a
client certificate, each with its key. tls_files() makes them on first use (the Redis harness
calls it from anywhere); the `tls_files` fixture hands the same set to a test."""
import functools
import os
import subprocess
import tempfile
from types import SimpleNamespace

import pytest


def _openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {out.stderr}")


def _issue(d, name, subject, ext):
    """A key and a certificate for `subject`, signed by the CA in `d`, with extensions `ext`."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-subj", subject,
             "-out", f"{name}.csr", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=d)


@functools.lru_cache(maxsize=None)
def tls_files():
    """The paths: ca, server_cert, server_key, client_cert, client_key, other_ca (a second CA
    that signed nothing here), and dir."""
    d = tempfile.mkdtemp(prefix="sluice-tls-")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                 "-subj", f"/CN=sluice test {ca}", "-days", "2", "-sha256",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", f"{ca}.crt", cwd=d)
    _issue(d, "server", "/CN=localhost",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _issue(d, "client", "/CN=sluice test client", "extendedKeyUsage=clientAuth\n")
    j = lambda name: os.path.join(d, name)  # noqa: E731
    return SimpleNamespace(dir=d, ca=j("ca.crt"), other_ca=j("other-ca.crt"),
                           server_cert=j("server.crt"), server_key=j("server.key"),
                           client_cert=j("client.crt"), client_key=j("client.key"))


def redis_tls_args(tls, port, auth_clients="no"):
    """redis-server (or sentinel) options serving TLS only, on `port`."""
    return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", tls.server_cert,
            "--tls-key-file", tls.server_key, "--tls-ca-cert-file", tls.ca,
            "--tls-auth-clients", auth_clients, "--tls-replication", "yes",
            "--tls-cluster", "yes"]


def client_context(tls, cert=True):
    """An ssl context trusting the test CA, presenting the client certificate when `cert`."""
    import ssl
    ctx = ssl.create_default_context(cafile=tls.ca)
    if cert:
        ctx.load_cert_chain(tls.client_cert, tls.client_key)
    return ctx


@pytest.fixture(scope="session", name="tls_files")
def tls_files_fixture():
    return tls_files()
