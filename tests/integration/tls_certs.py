"""A throwaway certificate authority made with the openssl command at test time, and the
certificates the TLS tests need: servers (with SANs), a client, an expired one, a key that
belongs to another certificate. Everything is ECDSA P-256."""
import os
import subprocess

import pytest


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


class CertAuthority:
    """Files under `root`: ca.pem, and NAME.pem / NAME.key for each certificate issued."""

    def __init__(self, root):
        self.root = root
        self.serial = 1
        self.ca = os.path.join(root, "ca.pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
                 "-subj", "/CN=sluice test CA", cwd=root)

    def path(self, name, ext):
        return os.path.join(self.root, f"{name}.{ext}")

    def issue(self, name, cn, sans=(), client=False, start=None, end=None, usage=None):
        """Issues NAME.pem and NAME.key for subject CN=cn with DNS/IP `sans`; `start` and
        `end` (YYYYMMDDHHMMSSZ) set the validity, else from now for two days; `usage` the
        extendedKeyUsage, else clientAuth for a `client` and serverAuth for the others."""
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                 cwd=self.root)
        ext = [f"extendedKeyUsage={usage or ('clientAuth' if client else 'serverAuth')}"]
        if sans:
            ext.append("subjectAltName=" + ",".join(
                (f"IP:{s}" if s[0].isdigit() else f"DNS:{s}") for s in sans))
        with open(os.path.join(self.root, f"{name}.ext"), "w") as f:
            f.write("\n".join(ext) + "\n")
        self.serial += 1
        if start or end:
            # `openssl ca` is the command that takes explicit dates.
            self._ca_sign(name, start, end)
        else:
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-set_serial", str(self.serial), "-days", "2", "-out", f"{name}.pem",
                     "-extfile", f"{name}.ext", cwd=self.root)
        return self.path(name, "pem"), self.path(name, "key")

    def self_signed(self, name, cn):
        """NAME.pem and NAME.key, a certificate no CA here signed."""
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                 "-subj", f"/CN={cn}", cwd=self.root)
        return self.path(name, "pem"), self.path(name, "key")

    def _ca_sign(self, name, start, end):
        db = os.path.join(self.root, "index.txt")
        open(db, "a").close()
        conf = os.path.join(self.root, f"{name}.cnf")
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = d
[d]
database = {db}
new_certs_dir = {self.root}
certificate = {self.ca}
private_key = {os.path.join(self.root, 'ca.key')}
serial = {os.path.join(self.root, f'{name}.serial')}
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
        with open(os.path.join(self.root, f"{name}.serial"), "w") as f:
            f.write(f"{self.serial:04X}\n")
        _openssl("ca", "-batch", "-config", conf, "-in", f"{name}.csr", "-out", f"{name}.pem",
                 "-startdate", start, "-enddate", end, "-extfile", f"{name}.ext",
                 "-notext", cwd=self.root)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """The CA and: server (localhost, 127.0.0.1), other (other.test), wild (*.wild.test),
    client and client2 (client certificates), expired, stranger, and rogue (self-signed)."""
    ca = CertAuthority(str(tmp_path_factory.mktemp("tls")))
    ca.issue("server", "localhost", ("localhost", "127.0.0.1"))
    ca.issue("other", "other.test", ("other.test",))
    ca.issue("wild", "wild.test", ("*.wild.test",))
    ca.issue("client", "client one", client=True)
    ca.issue("client2", "client two", client=True)
    ca.issue("expired", "localhost", ("localhost",), start="20200101000000Z",
             end="20200102000000Z")
    ca.issue("stranger", "stranger", ("stranger.test",))
    ca.self_signed("rogue", "rogue client")
    return ca
