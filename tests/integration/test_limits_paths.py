"""The paths section (SPEC.md section 2): spellings the application folds together count
against one limit when the operator says so, and are left apart when not; the upstream
always receives the request target exactly as the client sent it."""
import pytest

from limits_support import config, send, targets

LOGIN = """\
  - name: login
    match:
      path: "/api/login"
    limits:
      - {name: per_route, algorithm: sliding_window, rate: 1/1h, key: route}
"""

# Per rule, spellings that an application with that rule routes to /api/login.
SPELLINGS = {
    "strip_path_parameters": ["/api/login;x=1", "/api;v=2/login;jsessionid=A1", "/api/..;/api/login"],
    "case_insensitive": ["/API/login", "/Api/LOGIN", "/%41PI/login"],
    "decode_slash": ["/api%2flogin", "/api%2F%2Flogin", "/x%2f..%2fapi/login"],
    "ignore_trailing_slash": ["/api/./login/.", "/api/login/", "/api/login//?q=1"],
}


def paths_block(**rules):
    return "paths:\n" + "".join(f"  {k}: {'true' if v else 'false'}\n" for k, v in rules.items())


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("rule", sorted(SPELLINGS))
def test_each_rule_folds_its_spellings_into_the_spent_limit(sluice_factory, upstream, rule, on):
    s = sluice_factory(config(LOGIN, extra=paths_block(**{rule: on})), upstream=upstream)
    assert send(s.port, "/api/login", method="POST").status == 200
    assert send(s.port, "/api/login", method="POST").status == 429
    for target in SPELLINGS[rule]:
        r = send(s.port, target, method="POST")
        if on:
            assert r.status == 429, target
            assert r.json()["route"] == "login"
        else:
            # Another path to sluice: no route, forwarded unlimited.
            assert r.status == 200, target
            assert r.header("RateLimit") is None, target
    expected = ["/api/login"] + ([] if on else SPELLINGS[rule])
    assert targets(upstream.log()) == expected


ALL_ON = paths_block(case_insensitive=True, strip_path_parameters=True, decode_slash=True,
                     ignore_trailing_slash=True)


def test_rules_together_fold_traversals_and_reach_the_upstream_as_sent(sluice_factory, upstream):
    s = sluice_factory(config("""\
  - name: admin
    match:
      path_prefix: "/Admin/"
    limits:
      - {name: per_route, algorithm: sliding_window, rate: 1/1h, key: route}
  - name: users
    match:
      path_regex: "^/users/[0-9]+$"
    limits:
      - {name: per_path, algorithm: sliding_window, rate: 1/1h, key: path}
""", extra=ALL_ON), upstream=upstream)
    # The route's "/Admin/" is held as "/admin": it covers "/admin" itself and below.
    assert send(s.port, "/admin").status == 200
    for target in ["/admin/x", "/api/..;/admin", "/api%2f..%2fadmin", "/api/x;%2F/../../ADMIN/",
                   "/ADMIN;jsessionid=1/"]:
        r = send(s.port, target)
        assert r.status == 429, target
        assert r.json()["route"] == "admin"
    # The regex sees the folded path, and the path key is the folded path: one budget.
    assert send(s.port, "/users/42").status == 200
    for target in ["/USERS/42", "/users/42/", "/users;a=b/42", "/users%2F42"]:
        assert send(s.port, target).status == 429, target
    assert send(s.port, "/users/43").status == 200
    # "/" keeps its slash: the root is not folded into anything else.
    r = send(s.port, "/")
    assert r.status == 200 and r.header("RateLimit") is None
    assert targets(upstream.log()) == ["/admin", "/users/42", "/users/43", "/"]


def test_absolute_form_and_merged_slashes_fold_with_the_rules(sluice_factory, upstream):
    s = sluice_factory(config(LOGIN, extra=ALL_ON), upstream=upstream)
    assert send(s.port, "http://localhost/API/LOGIN/", method="POST").status == 200
    for target in ["//api/login;x", "http://localhost//Api%2FLogin/", "/api/login"]:
        assert send(s.port, target, method="POST").status == 429, target
    assert targets(upstream.log()) == ["http://localhost/API/LOGIN/"]
