"""Helpers shared by test_dashboard.py and test_dashboard_browser.py: a configuration with
limited routes and an admin token, a known burst, and the dashboard's JSON."""
import json

from conftest import get, request, Client, wait_until

TOKEN = "d4shb0ard-T0ken_x"
BEARER = [("Authorization", f"Bearer {TOKEN}")]
BURST = 5  # what the api route admits per client per minute


def config(routes=None, token=True):
    """A configuration: by default `api` (BURST in any minute per client address, in memory) and
    `web` (no limit); `routes` replaces them (YAML text of the routes list)."""
    routes = routes or f"""\
  - name: api
    match:
      path_prefix: /api
    limits:
      - name: per_ip
        algorithm: sliding_window
        rate: {BURST}/1m
        key: client_ip
  - name: web
    match:
      path_prefix: /web
    limits: []
"""
    admin_token = '  token: "${SLUICE_TEST_ADMIN_TOKEN}"\n' if token else ""
    return f"""\
listen: "{{listen}}"
workers: 2
admin:
  listen: "{{admin}}"
{admin_token}upstream:
  url: "{{upstream}}"
  connect_timeout: 1s
  timeout: 5s
access_log: "{{access_log}}"
log_level: info
routes:
{routes}"""


def start(sluice_factory, upstream, routes=None, token=True):
    s = sluice_factory(config(routes, token), upstream=upstream,
                       env={"SLUICE_TEST_ADMIN_TOKEN": TOKEN})
    if token:
        s.admin_token = TOKEN
    return s


def burst(port, paths):
    """One request per path, pipelined on one connection; returns the statuses."""
    with Client(port) as c:
        c.send(b"".join(request("GET", p) for p in paths))
        return [r.status for r in c.read_responses(len(paths))]


def dashboard(s, headers=None):
    """GET /dashboard.json (with the token when the test set one): (response, JSON)."""
    resp = get(s.admin_port, "/dashboard.json", s.admin_headers() if headers is None else headers)
    return resp, (json.loads(resp.body) if resp.status == 200 else None)


def route(d, name):
    return next((r for r in d["routes"] if r["name"] == name), None)


def wait_sampled(s, name, allowed, limited):
    """Polls until the route's charts hold `allowed` and `limited` (a sample was taken
    after the requests); returns the JSON."""
    def sampled():
        _, d = dashboard(s)
        r = route(d, name)
        return d if r and r["window"] == [allowed, limited] else None
    return wait_until(sampled, 10, 0.2, f"a sample of {name} with {allowed}/{limited}")
