#!/usr/bin/env python3
"""Writes a synthetic access log in sluice's own format (SPEC.md section 9), one JSON object
per line, for `sluice replay` benchmarks and tests.

  bench/gen_access_log.py --lines 5000000 --out /tmp/access.log

Requests arrive every --step-us microseconds of log time from --clients client addresses
(round robin), on paths under /api/ and a few elsewhere, each with an X-Api-Key recorded
under key_fields (as access_log_key_fields: true writes it) when --key-fields is given."""
import argparse
import datetime
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--step-us", type=int, default=1000)
    ap.add_argument("--key-fields", action="store_true")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()

    out = sys.stdout if a.out == "-" else open(a.out, "w", buffering=1 << 20)
    start = datetime.datetime(2026, 11, 30, 10, 0, 0, tzinfo=datetime.timezone.utc)
    start_us = int(start.timestamp()) * 1_000_000
    clients = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(a.clients)]
    paths = ["/api/orders?page=2", "/api/login", "/api/users/42", "/static/app.js"]
    # The ts prefix changes once a second of log time: format it only then.
    prefix_sec, prefix = -1, ""
    chunk = []
    for i in range(a.lines):
        us = start_us + i * a.step_us
        sec = us // 1_000_000
        if sec != prefix_sec:
            prefix_sec = sec
            prefix = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S")
        client = clients[i % a.clients]
        fields = (f',"key_fields":{{"host":"api.example.com","header:X-Api-Key":"k{i % 97}"}}'
                  if a.key_fields else "")
        chunk.append(
            f'{{"ts":"{prefix}.{us // 1000 % 1000:03d}Z","client":"{client}","method":"GET",'
            f'"path":"{paths[i & 3]}","status":200,"route":"api","decision":"allowed"{fields},'
            f'"bytes_in":0,"bytes_out":512,"duration_ms":0.412,"upstream_ms":0.301}}\n')
        if len(chunk) == 10000:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk))
    out.close()


if __name__ == "__main__":
    main()
