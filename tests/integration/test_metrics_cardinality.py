"""Metric cardinality with a large route table (SPEC.md section 8): a route's series appear
once the route has been used, and admin.route_histograms: false keeps one request-duration
histogram for the whole instance."""

import re
import shutil
import subprocess

import pytest

from conftest import get
from limits_support import send

NROUTES = 1000


def big_table(route_histograms):
    routes = "".join(f"""\
  - name: r{i}
    match:
      path_prefix: "/r{i}/"
    limits:
      - {{name: per_ip, algorithm: token_bucket, rate: 1000000/s, key: client_ip}}
""" for i in range(NROUTES))
    return f"""\
listen: "{{listen}}"
workers: 2
admin:
  listen: "{{admin}}"
  route_histograms: {"true" if route_histograms else "false"}
upstream:
  url: "{{upstream}}"
access_log: off
routes:
{routes}"""


def scrape(s):
    resp = get(s.admin_port, "/metrics")
    assert resp.status == 200
    return resp.body.decode()


def samples(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def until_counted(s, route, n):
    """The exposition once `n` admitted requests of `route` are counted in full: as each
    ends, its decision, its response and its duration. A scrape made while the last one
    ends may show some of its series and not others, so all three are waited for."""
    for _ in range(500):
        text = scrape(s)
        if (f'sluice_responses_total{{route="{route}",code="200"}} {n}' in text
                and f'sluice_requests_total{{route="{route}",decision="allowed"}} {n}' in text
                and re.search(rf'^sluice_request_duration_seconds_count(\{{route="{route}"\}})? '
                              rf'{n}$', text, re.M)):
            return text
    raise AssertionError(f"{n} requests of {route} never counted")


@pytest.mark.parametrize("per_route", [True, False])
def test_untouched_routes_export_no_series(sluice_factory, upstream, per_route):
    s = sluice_factory(big_table(per_route), upstream=upstream)
    idle = samples(scrape(s))
    assert not [x for x in idle if x.startswith(("sluice_requests_total{",
                                                 "sluice_limit_checks_total{"))]

    assert send(s.port, f"/r{NROUTES - 1}/x").status == 200
    text = until_counted(s, f"r{NROUTES - 1}", 1)
    used = samples(text)
    mine = [x for x in used if f'route="r{NROUTES - 1}"' in x]
    others = [x for x in used if 'route="r' in x and f'route="r{NROUTES - 1}"' not in x]
    assert others == []
    # 6 decisions, 3 check results, 1 code, and the histogram's 17 buckets + sum + count.
    assert len(mine) == 6 + 4 + 1 + (19 if per_route else 0)
    hist = [x for x in used if x.startswith("sluice_request_duration_seconds_count")]
    if per_route:
        assert hist == [f'sluice_request_duration_seconds_count{{route="r{NROUTES - 1}"}} 1']
    else:
        assert hist == ["sluice_request_duration_seconds_count 1"]
    assert len(used) < 150, f"{len(used)} series for one used route of {NROUTES}"

    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
