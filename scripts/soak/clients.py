#!/usr/bin/env python3
"""Slow and malformed clients for scripts/soak.sh, beside wrk's steady load.

    clients.py HOST:PORT SECONDS SUMMARY.json

Runs each scenario below in its own loop for SECONDS, then writes, per scenario, how many
times it ran, how many ended as expected, and the first few unexpected outcomes. The
configuration soak.sh writes sets header_timeout 2s, max_header_bytes 8k and
max_body_bytes 64k, which the expected statuses below assume."""
import asyncio
import json
import random
import sys
import time

HEADER_TIMEOUT = 2.0


async def skip_fields(reader, timeout):
    """Reads the rest of a head after its status line: up to the empty line."""
    while (await asyncio.wait_for(reader.readline(), timeout)).strip():
        pass


async def status_of(reader, timeout):
    """The status code of the next final response head (1xx skipped), or a description."""
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            return "timeout"
        except ConnectionError as e:
            return f"error {e.__class__.__name__}"
        if not line:
            return "eof"
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            return f"bad status line {line[:40]!r}"
        code = int(parts[1])
        try:
            await skip_fields(reader, timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return f"{code} with a cut head"
        if code >= 200:
            return code


async def exchange(addr, data, expect, timeout=5.0):
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(data)
        await writer.drain()
        got = await status_of(reader, timeout)
        return got == expect, got
    finally:
        writer.close()


async def slowloris(addr):
    """A head trickled in slower than header_timeout allows: 408."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"GET /api/items HTTP/1.1\r\nHost: soak\r\n")
        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        while time.monotonic() < deadline:
            try:
                got = await asyncio.wait_for(status_of(reader, 0.5), 0.6)
            except asyncio.TimeoutError:
                got = "timeout"
            if got != "timeout":
                return got == 408, got
            try:
                writer.write(b"X-Slow: %d\r\n" % random.randrange(1000))
                await writer.drain()
            except ConnectionError:
                pass
        return False, "no answer"
    finally:
        writer.close()


async def smuggle(addr):
    """Content-Length beside Transfer-Encoding: 400, never forwarded."""
    return await exchange(addr, b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 4\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)


async def garbage(addr):
    """Bytes that are no request at all: 400."""
    return await exchange(addr, b"\x16\x03\x01 not http at all\r\n\r\n", 400)


async def huge_head(addr):
    """A head over max_header_bytes: 431."""
    return await exchange(addr, b"GET /api/items HTTP/1.1\r\nHost: soak\r\nX-Big: " + b"a" * 12000
                          + b"\r\n\r\n", 431)


async def huge_body(addr):
    """A declared body over max_body_bytes: 413."""
    return await exchange(addr, b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 200000\r\n\r\n"
                          + b"x" * 1000, 413)


async def expect_continue(addr):
    """Expect: 100-continue, then the body: 200."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line.startswith(b"HTTP/1.1 100"):
            return False, f"no 100 ({line[:40]!r})"
        await skip_fields(reader, 5)
        writer.write(b"hello")
        got = await status_of(reader, 5)
        return got == 200, got
    finally:
        writer.close()


async def abort_mid_body(addr):
    """A body cut off half-way: nothing to answer, nothing may leak."""
    _, writer = await asyncio.open_connection(*addr)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 10000\r\n\r\n" + b"y" * 100)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    return True, "closed"


async def abort_before_response(addr):
    """A client gone while the upstream is still answering."""
    _, writer = await asyncio.open_connection(*addr)
    writer.write(b"GET /sleep/300 HTTP/1.1\r\nHost: soak\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    return True, "closed"


async def slow_reader(addr):
    """A large chunked download read slowly for a while, then dropped."""
    reader, writer = await asyncio.open_connection(*addr, limit=1 << 16)
    try:
        writer.write(b"GET /stream/8000000 HTTP/1.1\r\nHost: soak\r\n\r\n")
        got = await status_of(reader, 5)
        if got != 200:
            return False, got
        end = time.monotonic() + 2
        while time.monotonic() < end:
            if not await asyncio.wait_for(reader.read(16384), 5):
                return False, "eof"
            await asyncio.sleep(0.05)
        return True, got
    finally:
        writer.close()


# scenario -> (concurrent loops, pause between runs in seconds)
SCENARIOS = {
    slowloris: (3, 0.5),
    smuggle: (1, 2.0),
    garbage: (1, 2.0),
    huge_head: (1, 2.0),
    huge_body: (1, 2.0),
    expect_continue: (1, 1.0),
    abort_mid_body: (1, 1.0),
    abort_before_response: (1, 1.0),
    slow_reader: (1, 1.0),
}


async def loop(fn, addr, pause, end, tally):
    t = tally.setdefault(fn.__name__, {"runs": 0, "expected": 0, "unexpected": []})
    while time.monotonic() < end:
        try:
            ok, got = await fn(addr)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            ok, got = False, f"{e.__class__.__name__}: {e}"
        t["runs"] += 1
        if ok:
            t["expected"] += 1
        elif len(t["unexpected"]) < 5:
            t["unexpected"].append(str(got))
        elif len(t["unexpected"]) == 5:
            t["unexpected"].append("...")
        await asyncio.sleep(pause * random.uniform(0.5, 1.5))


async def main_async(addr, seconds, path):
    tally = {}
    end = time.monotonic() + seconds
    await asyncio.gather(*(loop(fn, addr, pause, end, tally)
                           for fn, (n, pause) in SCENARIOS.items() for _ in range(n)))
    for t in tally.values():
        t["unexpected_count"] = t["runs"] - t["expected"]
    with open(path, "w") as f:
        json.dump(tally, f, indent=1, sort_keys=True)


def main():
    host, _, port = sys.argv[1].rpartition(":")
    asyncio.run(main_async((host, int(port)), float(sys.argv[2]), sys.argv[3]))


if __name__ == "__main__":
    main()
