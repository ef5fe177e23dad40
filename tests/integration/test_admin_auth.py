"""admin.token and admin.metrics_auth (SPEC.md section 8): /top and /config answer 401
without "Authorization: Bearer TOKEN" (wrong token, wrong scheme), /metrics too under
metrics_auth, /healthz and /readyz never; the token comes from the environment, never
appears in /config, and a reload's token applies at once. A non-loopback admin address
without a token is warned about at start-up."""
import subprocess

from conftest import base_config, http, request, wait_until

TOKEN = "Zq8-ex4mple_T0ken~+/="
RIGHT = [("Authorization", f"Bearer {TOKEN}")]
WRONG_TOKENS = [
    [("Authorization", "Bearer Zq8-ex4mple_T0ken~+/")],     # a prefix
    [("Authorization", f"Bearer {TOKEN}x")],                # one byte more
    [("Authorization", f"Bearer {TOKEN.lower()}")],         # case counts in the token
]
WRONG_SCHEMES = [
    [],                                                     # no credentials
    [("Authorization", f"Basic {TOKEN}")],
    [("Authorization", TOKEN)],
    [("X-Admin-Token", TOKEN)],
]
WARNING = "is not a loopback address and admin.token is not set"


def admin_block(extra, listen='"{admin}"'):
    """The base configuration with its admin block replaced."""
    return base_config().replace('admin:\n  listen: "{admin}"\n',
                                 f"admin:\n  listen: {listen}\n{extra}")


TOKEN_FROM_ENV = '  token: "${SLUICE_TEST_ADMIN_TOKEN}"\n'


def start(sluice_factory, upstream, extra=TOKEN_FROM_ENV, **kw):
    return sluice_factory(admin_block(extra, **kw), upstream=upstream,
                          env={"SLUICE_TEST_ADMIN_TOKEN": TOKEN})


def ask(s, path, headers=(), method="GET"):
    return http(s.admin_port, request(method, path, headers), method=method)


def check_refused(resp, wrong_token):
    """401 with RFC 6750's challenge: error="invalid_token" only when a token was sent."""
    assert resp.status == 401, resp
    challenge = resp.header("WWW-Authenticate")
    assert challenge.startswith("Bearer "), challenge
    assert ('error="invalid_token"' in challenge) == wrong_token, challenge
    assert TOKEN.encode() not in resp.body


def test_top_and_config_need_the_token(sluice_factory, upstream):
    s = start(sluice_factory, upstream)
    for path in ("/top", "/config"):
        for headers in WRONG_SCHEMES:
            check_refused(ask(s, path, headers), wrong_token=False)
        for headers in WRONG_TOKENS:
            check_refused(ask(s, path, headers), wrong_token=True)
        check_refused(ask(s, path, method="HEAD"), wrong_token=False)
        assert ask(s, path, RIGHT).status == 200
        assert ask(s, path, RIGHT, method="HEAD").status == 200
    assert ask(s, "/top", [("Authorization", f"bearer   {TOKEN}")]).status == 200
    assert "window_seconds" in ask(s, "/top", RIGHT).json()

    # Probes never ask; /metrics does not without metrics_auth.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert ask(s, path).status == 200, path
        assert ask(s, path, WRONG_TOKENS[0]).status == 200, path


def test_config_redacts_the_token(sluice_factory, upstream):
    s = start(sluice_factory, upstream, TOKEN_FROM_ENV + "  metrics_auth: true\n")
    resp = ask(s, "/config", RIGHT)
    assert resp.status == 200
    assert TOKEN.encode() not in resp.body
    admin = resp.json()["admin"]
    assert (admin["token"], admin["metrics_auth"]) == ("***", True)

    s = start(sluice_factory, upstream, extra="")
    admin = ask(s, "/config").json()["admin"]
    assert (admin["token"], admin["metrics_auth"]) == (None, False)


def test_metrics_auth(sluice_factory, upstream):
    s = start(sluice_factory, upstream, TOKEN_FROM_ENV + "  metrics_auth: true\n")
    for headers in WRONG_SCHEMES:
        check_refused(ask(s, "/metrics", headers), wrong_token=False)
    for headers in WRONG_TOKENS:
        check_refused(ask(s, "/metrics", headers), wrong_token=True)
    resp = ask(s, "/metrics", RIGHT)
    assert resp.status == 200
    assert b"# TYPE sluice_requests_total counter" in resp.body
    for path in ("/healthz", "/readyz"):
        assert ask(s, path).status == 200, path


def test_metrics_auth_without_a_token_is_refused(sluice_binary, tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text(admin_block("  metrics_auth: true\n")
                    .replace("{listen}", "127.0.0.1:1").replace("{admin}", "127.0.0.1:2")
                    .replace("{upstream}", "http://127.0.0.1:3")
                    .replace("{access_log}", str(tmp_path / "access.log")))
    # The admin block starts on line 3: metrics_auth is on line 5, its value at column 17.
    message = (f"{path}:5:17: admin.metrics_auth: true needs admin.token, the token /metrics "
               "would ask for; got no token")
    for args in (["-t", "-c", str(path)], ["-c", str(path)]):
        p = subprocess.run([sluice_binary] + args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert message in p.stderr, p.stderr


def test_reload_applies_a_new_token(sluice_factory, upstream):
    s = start(sluice_factory, upstream, TOKEN_FROM_ENV + "  metrics_auth: true\n")
    assert ask(s, "/config", RIGHT).status == 200
    new = [("Authorization", "Bearer n3w-t0ken")]

    s.reload(admin_block('  token: "n3w-t0ken"\n  metrics_auth: true\n'))
    wait_until(lambda: ask(s, "/config", new).status == 200, what="the new token")
    s.admin_token = "n3w-t0ken"
    # The new snapshot can answer before the reload is counted: wait for the count too.
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 1,
               what="the reload counted")
    check_refused(ask(s, "/config", RIGHT), wrong_token=True)
    check_refused(ask(s, "/top", RIGHT), wrong_token=True)
    check_refused(ask(s, "/metrics", RIGHT), wrong_token=True)

    # A file that fails to load keeps the running token.
    s.reload(admin_block("  metrics_auth: true\n"))
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="failure") == 1,
               what="the failed reload")
    check_refused(ask(s, "/config"), wrong_token=False)
    assert ask(s, "/config", new).status == 200

    # No token any more: nothing asks.
    s.reload(admin_block(""))
    wait_until(lambda: ask(s, "/config").status == 200, what="no token")
    s.admin_token = None
    wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="success") == 2,
               what="the second reload counted")
    assert ask(s, "/top").status == 200


def test_warning_for_a_non_loopback_address_without_a_token(sluice_factory, upstream):
    # 0.0.0.0 is every address of the machine, not loopback; probes still reach it on
    # 127.0.0.1.
    s = start(sluice_factory, upstream, extra="", listen='"0.0.0.0:{admin_port}"')
    [line] = [l for l in s.stderr_text().splitlines() if WARNING in l]
    assert line.startswith(f"sluice: warn: admin.listen 0.0.0.0:{s.admin_port} ")
    for exposed in ("/top", "/config", "/metrics"):
        assert exposed in line, line
    assert ask(s, "/config").status == 200

    # With admin.top off, /top is not among what it names.
    s = start(sluice_factory, upstream, extra="  top: false\n", listen='"0.0.0.0:{admin_port}"')
    [line] = [l for l in s.stderr_text().splitlines() if WARNING in l]
    assert "/top" not in line and "/config" in line

    # A token, or a loopback address: nothing to warn about.
    s = start(sluice_factory, upstream, listen='"0.0.0.0:{admin_port}"')
    assert WARNING not in s.stderr_text()
    check_refused(ask(s, "/top"), wrong_token=False)
    s = start(sluice_factory, upstream, extra="")
    assert WARNING not in s.stderr_text()
