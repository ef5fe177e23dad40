"""The Redis TLS tests' certificates, from tls_certs.py's throwaway authority once per test
run: the CA, a server certificate for 127.0.0.1 and localhost (subjectAltName), and a
client certificate, each with its key. tls_files() makes them on first use (the Redis harness
calls it from anywhere); the `tls_files` fixture hands the same set to a test."""
import functools
import os
import tempfile
from types import SimpleNamespace

import pytest

from tls_certs import CertAuthority


@functools.lru_cache(maxsize=None)
def tls_files():
    """The paths: ca, server_cert, server_key, client_cert, client_key, other_ca (a second CA
    that signed nothing here), and dir."""
    d = tempfile.mkdtemp(prefix="sluice-tls-")
    os.mkdir(os.path.join(d, "other"))
    ca, other = CertAuthority(d), CertAuthority(os.path.join(d, "other"))
    # Redis presents its server certificate as a client too (replication, the cluster bus).
    server_cert, server_key = ca.issue("server", "localhost", ("127.0.0.1", "localhost"),
                                       usage="serverAuth,clientAuth")
    client_cert, client_key = ca.issue("client", "sluice test client", client=True)
    return SimpleNamespace(dir=d, ca=ca.ca, other_ca=other.ca, server_cert=server_cert,
                           server_key=server_key, client_cert=client_cert,
                           client_key=client_key)


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
