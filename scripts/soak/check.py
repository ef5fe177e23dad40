#!/usr/bin/env python3
"""The verdict of a soak run (scripts/soak.sh): summarises the sampled series and fails
when one of them grows without bound, when a request got an unexpected status, or when the
sanitizers reported anything.

The flatness rule: fit a least-squares line through the second half of a series (samples
taken at or after half the run's length). Its rise across that half (slope x span) must
not exceed the larger of the series' absolute floor (FLOORS), 2 % of the half's mean, and
twice the residual standard deviation about the line (the series' own noise: for
independent noise the fitted rise has a standard error of about 0.37 sigma with 90
samples, so 2 sigma is far outside chance). A leak is a steady rise, which leaves small
residuals, so it fails as soon as it outgrows the floor.

    check.py --csv SERIES.csv [--wrk WRK.txt] [--clients CLIENTS.json] [--stderr LOG]
             [--exit-code N] [--metrics METRICS.txt --reloads OK,BROKEN] [--max-keys N]
"""
import argparse
import json
import math
import re
import sys

SERIES = ["rss_kb", "fds", "connections_active", "memory_keys"]
# Smallest rise that counts as growth, whatever the noise: allocator slack and the
# connections open at the instant of a sample move these by about this much.
FLOORS = {"rss_kb": 1024, "fds": 8, "connections_active": 8, "memory_keys": 50}
REL_TOLERANCE = 0.02
NOISE_SIGMAS = 2.0
# Statuses wrk may see: the configuration's routes answer these and nothing else.
EXPECTED_STATUSES = {200, 204, 304, 429}
SANITIZER_PATTERNS = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error:|SUMMARY: \w+Sanitizer")


def linear_fit(ts, ys):
    """(intercept, slope, residual standard deviation) of the least-squares line."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    stt = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / stt if stt else 0.0
    intercept = my - slope * mt
    res = [y - (intercept + slope * t) for t, y in zip(ts, ys)]
    sd = math.sqrt(sum(r * r for r in res) / (n - 2)) if n > 2 else 0.0
    return intercept, slope, sd


def flatness(ts, ys, floor):
    """Judges the second half of one series: a dict with slope (per second), rise over the
    half, the allowance and ok. Fewer than 3 samples in the half cannot be judged: ok."""
    half = ts[0] + (ts[-1] - ts[0]) / 2
    pts = [(t, y) for t, y in zip(ts, ys) if t >= half]
    if len(pts) < 3:
        return {"slope": 0.0, "rise": 0.0, "allowed": floor, "ok": True, "samples": len(pts)}
    hts, hys = [p[0] for p in pts], [p[1] for p in pts]
    _, slope, sd = linear_fit(hts, hys)
    rise = slope * (hts[-1] - hts[0])
    mean = sum(hys) / len(hys)
    allowed = max(floor, REL_TOLERANCE * abs(mean), NOISE_SIGMAS * sd)
    return {"slope": slope, "rise": rise, "allowed": allowed, "ok": rise <= allowed,
            "samples": len(pts), "noise_sd": sd}


def read_csv(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = [dict(zip(header, map(float, line.strip().split(",")))) for line in f if line.strip()]
    return rows


def read_wrk(path):
    """Counts by status, and the other "soak:" lines wrk's script printed."""
    statuses, extra = {}, {}
    with open(path) as f:
        for line in f:
            if not line.startswith("soak: "):
                continue
            words = line.split()
            if words[1] == "status":
                statuses[int(words[2])] = int(words[3])
            else:
                extra[words[1]] = " ".join(words[2:])
    return statuses, extra


def metric_sum(text, name, labels):
    """The sum of a metric's samples whose labels include all of `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--csv", required=True)
    p.add_argument("--after", help="one sample taken once the load has stopped")
    p.add_argument("--wrk")
    p.add_argument("--clients")
    p.add_argument("--stderr")
    p.add_argument("--exit-code", type=int)
    p.add_argument("--metrics")
    p.add_argument("--reloads")
    p.add_argument("--max-keys", type=int)
    a = p.parse_args(argv)
    failures = []

    rows = read_csv(a.csv)
    if len(rows) < 2:
        failures.append("fewer than 2 samples")
    else:
        ts = [r["t_s"] for r in rows]
        print(f"series ({len(rows)} samples over {ts[-1] - ts[0]:.0f} s):")
        for name in SERIES:
            ys = [r[name] for r in rows]
            f = flatness(ts, ys, FLOORS[name])
            verdict = "flat" if f["ok"] else "GROWS"
            print(f"  {name:20s} first {ys[0]:>10.0f}  max {max(ys):>10.0f}  last {ys[-1]:>10.0f}"
                  f"  second-half slope {f['slope'] * 3600:+.1f}/h, rise {f['rise']:+.1f}"
                  f" (allowed {f['allowed']:.1f}): {verdict}")
            if not f["ok"]:
                failures.append(f"{name} grows: {f['rise']:+.1f} over the second half, "
                                f"allowed {f['allowed']:.1f}")
        if a.after:
            after = read_csv(a.after)[-1]
            print("after the load: " + ", ".join(f"{k} {after[k]:.0f}" for k in SERIES))
            if after["connections_active"] != 0:
                failures.append(f"{after['connections_active']:.0f} connections still active "
                                "after the load stopped")
        if a.max_keys is not None and max(r["memory_keys"] for r in rows) > a.max_keys:
            failures.append(f"memory_keys above max_keys {a.max_keys}")

    if a.wrk:
        statuses, extra = read_wrk(a.wrk)
        total = sum(statuses.values())
        print(f"wrk: {total} responses: " + ", ".join(f"{c}: {n}" for c, n in sorted(statuses.items())))
        for k, v in extra.items():
            print(f"wrk: {k} {v}")
        if total == 0:
            failures.append("wrk got no responses")
        bad = {c: n for c, n in statuses.items() if c not in EXPECTED_STATUSES}
        if bad:
            failures.append(f"unexpected statuses from wrk: {bad}")
        if extra.get("bad429", "0") != "0":
            failures.append(f"429 from a route without limits: {extra['bad429']}")
        errs = dict(re.findall(r"(\w+) (\d+)", extra.get("errors", "")))
        if any(int(v) for v in errs.values()):
            failures.append(f"wrk socket errors or timeouts: {errs}")

    if a.clients:
        with open(a.clients) as f:
            tally = json.load(f)
        for name, t in sorted(tally.items()):
            print(f"clients: {name}: {t['runs']} runs, {t['expected']} as expected"
                  + (f"; unexpected: {t['unexpected']}" if t["unexpected"] else ""))
            if t["runs"] == 0 or t["runs"] != t["expected"]:
                failures.append(f"client scenario {name}: {t['runs'] - t['expected']} unexpected "
                                f"of {t['runs']}")

    if a.metrics and a.reloads:
        with open(a.metrics) as f:
            text = f.read()
        want_ok, want_bad = map(int, a.reloads.split(","))
        got_ok = metric_sum(text, "sluice_config_reloads_total", {"result": "success"})
        got_bad = metric_sum(text, "sluice_config_reloads_total", {"result": "failure"})
        print(f"reloads: {got_ok:.0f} succeeded, {got_bad:.0f} failed "
              f"(sent {want_ok} good, {want_bad} broken)")
        if (got_ok, got_bad) != (want_ok, want_bad):
            failures.append("reload counts differ from the reloads sent")
        evictions = metric_sum(text, "sluice_memory_evictions_total", {})
        print(f"memory store evictions: {evictions:.0f}")
        if evictions == 0:
            failures.append("no key was evicted: the run never filled memory.max_keys")
        codes = {}
        for m in re.finditer(r'^sluice_responses_total\{[^}]*code="(\d+)"[^}]*\} (\S+)$', text, re.M):
            codes[int(m.group(1))] = codes.get(int(m.group(1)), 0) + float(m.group(2))
        print("sluice responses by code: " + ", ".join(f"{c}: {n:.0f}" for c, n in sorted(codes.items())))

    if a.stderr:
        with open(a.stderr, errors="replace") as f:
            hits = [line.rstrip() for line in f if SANITIZER_PATTERNS.search(line)]
        if hits:
            failures.append(f"sanitizer reports ({len(hits)} lines), first: {hits[0]}")
    if a.exit_code is not None and a.exit_code != 0:
        failures.append(f"sluice exited with {a.exit_code}")

    for f in failures:
        print(f"FAIL: {f}")
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
