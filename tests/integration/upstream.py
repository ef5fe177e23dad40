#!/usr/bin/env python3
"""A small HTTP/1.1 application server for sluice's integration tests and README demo.

    python3 upstream.py --listen 127.0.0.1:3000     (or --unix /path/to.sock)

prints "ready" once listening. Standard library only. Every request is answered with a
JSON echo of what arrived (method, raw target, version, headers in order, body length
and sha256), except on these paths:

    /status/NNN        reply with status NNN (the echo as body, none for 1xx/204/304)
    /sleep/MS          wait MS milliseconds before sending the head
    /stream/BYTES      a body of BYTES bytes of a fixed pattern (see pattern_chunks),
                       chunked; ?cl=1 sends Content-Length instead. X-Body-Sha256 and
                       X-Body-Length headers give what the client should receive.
    /upload            the echo (the body is hashed while it streams in, never held)
    /ws                Upgrade: websocket -> 101, then echoes raw bytes until EOF
    /close             reply, then close the connection
    /stall             read nothing more and never answer: a request body stays in the
                       socket buffers, as with an application that stopped reading
    /reset             close the connection with RST without replying;
                       ?partial=1 first sends half a response head
    /raw               reply with the bytes base64-encoded in the X-Raw-Response request
                       header, exactly (several responses, broken framing, anything);
                       ?early=1 replies before reading the body, then reads and
                       discards the rest until the client closes
    /usage/N           an LLM-style answer reporting N tokens used: ?as=header (default)
                       sets X-Tokens-Used: N; ?as=json answers an OpenAI-style JSON body
                       with usage.total_tokens N; ?as=sse streams server-sent events,
                       chunked, the last carrying the usage, then [DONE]; N "bad" puts
                       a malformed number there
    /count             {"count": N}: requests seen since start (or the last reset)
    /count/reset       sets the count to 0
    GET  /__log        every request seen, as a JSON list (see Server.record)
    POST /__log/clear  forgets them

/count*, /__log* are not recorded and not counted, so tests can query them freely.
Bodies of any size stream through in large pieces with constant memory.
"""
import argparse
import asyncio
import base64
import functools
import hashlib
import http
import json
import socket
import struct
import sys
import time

PIECE = 1 << 20  # read and write size for bodies
HEAD_LIMIT = 1 << 20  # longest request head accepted
PATTERN_PERIOD = 251  # prime, so the pattern never lines up with power-of-two buffers
_BLOCK = bytes(range(PATTERN_PERIOD)) * 4096
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pattern_chunks(n):
    """Yields the n-byte test pattern (byte i is i % 251) in pieces of about 1 MiB."""
    view = memoryview(_BLOCK)
    off = 0
    while off < n:
        take = min(len(_BLOCK), n - off)
        yield view[:take]
        off += take


@functools.lru_cache(maxsize=32)
def pattern_sha256(n):
    """The hex sha256 of the n-byte test pattern."""
    h = hashlib.sha256()
    for piece in pattern_chunks(n):
        h.update(piece)
    return h.hexdigest()


class BadRequest(Exception):
    pass


def parse_head(head):
    """Splits a request head into (method, target, version, [[name, value], ...]).
    Bytes are decoded as latin-1 so that every byte survives the round trip to JSON."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name:
            raise BadRequest("header line")
        headers.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
    return method, target, version, headers


def header_values(headers, name):
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


def tokens(headers, name):
    return [t.strip().lower() for v in header_values(headers, name) for t in v.split(",") if t.strip()]


class Server:
    def __init__(self):
        self.log = []
        self.count = 0
        self.next_conn = 0

    def record(self, conn_id, peer_port, conn_seq, method, target, version, headers):
        entry = {
            "method": method,
            "target": target,
            "version": version,
            "headers": headers,
            "body_length": 0,
            "body_complete": False,
            "conn_id": conn_id,
            "peer_port": peer_port,
            "conn_seq": conn_seq,
            "time": time.time(),
        }
        path = target.split("?", 1)[0]
        if not (path.startswith("/__log") or path.startswith("/count")):
            self.log.append(entry)
            self.count += 1
        return entry

    async def handle(self, reader, writer):
        self.next_conn += 1
        conn_id = self.next_conn
        peer = writer.get_extra_info("peername")
        peer_port = peer[1] if isinstance(peer, tuple) else 0
        writer.transport.set_write_buffer_limits(high=4 * PIECE)
        seq = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    await self.simple(writer, 431, {"error": "head too large"}, close=True)
                    break
                try:
                    method, target, version, headers = parse_head(head)
                except BadRequest as e:
                    await self.simple(writer, 400, {"error": str(e)}, close=True)
                    break
                seq += 1
                entry = self.record(conn_id, peer_port, seq, method, target, version, headers)
                keep = self.keep_alive(version, headers)
                if not await self.serve(reader, writer, entry, keep):
                    break
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def keep_alive(version, headers):
        conn = tokens(headers, "connection")
        if "close" in conn:
            return False
        return version == "HTTP/1.1" or "keep-alive" in conn

    async def read_body(self, reader, writer, entry):
        """Reads the request body in pieces; returns its sha256. Raises on bad framing."""
        headers = entry["headers"]
        te = tokens(headers, "transfer-encoding")
        cl = header_values(headers, "content-length")
        chunked = bool(te) and te[-1] == "chunked"
        length = None if chunked else (int(cl[0]) if cl else 0)
        if length is not None and length < 0:
            raise BadRequest("content-length")
        if "100-continue" in tokens(headers, "expect") and (chunked or length):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        digest = hashlib.sha256()

        async def take(n):
            while n:
                data = await reader.read(min(n, PIECE))
                if not data:
                    raise asyncio.IncompleteReadError(b"", n)
                digest.update(data)
                entry["body_length"] += len(data)
                n -= len(data)

        if chunked:
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                await take(size)
                if await reader.readexactly(2) != b"\r\n":
                    raise BadRequest("chunk end")
        else:
            await take(length)
        entry["body_complete"] = True
        return digest.hexdigest()

    async def serve(self, reader, writer, entry, keep):
        """Answers one request. Returns False when the connection must not be reused."""
        target = entry["target"]
        path, _, query = target.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        method = entry["method"]

        if path == "/ws" and "websocket" in tokens(entry["headers"], "upgrade"):
            await self.websocket(reader, writer, entry)
            return False
        if path == "/reset":
            if params.get("partial") == "1":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
                await writer.drain()
            self.reset(writer)
            return False

        if path == "/raw":
            return await self.raw(reader, writer, entry, params.get("early") == "1", keep)
        if path == "/stall":
            await asyncio.sleep(3600)
            return False

        sha = await self.read_body(reader, writer, entry)
        echo = {k: entry[k] for k in ("method", "target", "version", "headers", "body_length",
                                       "conn_id", "peer_port", "conn_seq")}
        echo["body_sha256"] = sha
        status = 200
        if path.startswith("/sleep/"):
            await asyncio.sleep(int(path[7:]) / 1000)
        elif path.startswith("/status/"):
            status = int(path[8:])
        elif path.startswith("/stream/"):
            await self.stream(writer, int(path[8:]), params.get("cl") == "1" or
                              entry["version"] != "HTTP/1.1", method == "HEAD", keep)
            return keep
        elif path.startswith("/usage/"):
            await self.usage(writer, path[7:], params.get("as", "header"), keep)
            return keep
        elif path == "/count":
            echo = {"count": self.count}
        elif path == "/count/reset":
            self.count = 0
            echo = {"count": 0}
        elif path == "/__log":
            echo = self.log
        elif path == "/__log/clear":
            self.log = []
            echo = {"cleared": True}
        elif path == "/close":
            keep = False
        await self.simple(writer, status, echo, close=not keep, head=method == "HEAD",
                          keep_alive_10=keep and entry["version"] == "HTTP/1.0")
        return keep

    async def raw(self, reader, writer, entry, early, keep):
        data = base64.b64decode(header_values(entry["headers"], "x-raw-response")[0])
        if early:
            writer.write(data)
            await writer.drain()
            while await reader.read(PIECE):
                pass
            return False
        await self.read_body(reader, writer, entry)
        writer.write(data)
        await writer.drain()
        return keep

    @staticmethod
    async def simple(writer, status, obj, close=False, head=False, keep_alive_10=False):
        body = json.dumps(obj).encode()
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
        bodyless = status < 200 or status in (204, 304)
        if not bodyless:
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        elif keep_alive_10:
            lines.append("Connection: keep-alive")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if not bodyless and not head:
            writer.write(body)
        await writer.drain()

    @staticmethod
    async def usage(writer, n, kind, keep):
        number = '"lots"' if n == "bad" else str(int(n))
        lines = ["HTTP/1.1 200 OK"]
        if not keep:
            lines.append("Connection: close")
        if kind == "sse":
            lines += ["Content-Type: text/event-stream", "Transfer-Encoding: chunked"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            events = [b'data: {"choices":[{"delta":{"content":"Hel"}}],"usage":null}\n\n',
                      b'data: {"choices":[{"delta":{"content":"lo"}}],"usage":null}\n\n',
                      b'data: {"choices":[],"usage":{"prompt_tokens":3,"total_tokens":'
                      + number.encode() + b'}}\n\n',
                      b"data: [DONE]\n\n"]
            for e in events:  # one chunk each, flushed apart: the body arrives in pieces
                writer.write(b"%x\r\n%s\r\n" % (len(e), e))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        if kind == "json":
            body = ('{"id":"cmpl-1","object":"chat.completion","choices":[{"message":'
                    '{"role":"assistant","content":"Hello"}}],"usage":{"prompt_tokens":3,'
                    f'"completion_tokens":2,"total_tokens":{number}}}}}').encode()
            lines.append("Content-Type: application/json")
        else:
            body = b'{"ok":true}'
            lines += ["Content-Type: application/json", f"X-Tokens-Used: {n if n != 'bad' else 'lots'}"]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    @staticmethod
    async def stream(writer, n, use_cl, head, keep):
        lines = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream",
                 f"X-Body-Length: {n}", f"X-Body-Sha256: {pattern_sha256(n)}"]
        lines.append(f"Content-Length: {n}" if use_cl else "Transfer-Encoding: chunked")
        if not keep:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if head:
            await writer.drain()
            return
        for piece in pattern_chunks(n):
            if use_cl:
                writer.write(piece)
            else:
                writer.write(b"%x\r\n" % len(piece))
                writer.write(piece)
                writer.write(b"\r\n")
            await writer.drain()
        if not use_cl:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def reset(writer):
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    @staticmethod
    async def websocket(reader, writer, entry):
        key = header_values(entry["headers"], "sec-websocket-key")
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
        if key:
            accept = base64.b64encode(hashlib.sha1(key[0].encode("latin-1") + WS_GUID).digest())
            lines.append("Sec-WebSocket-Accept: " + accept.decode())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        while True:
            data = await reader.read(PIECE)
            if not data:
                break
            writer.write(data)
            await writer.drain()


async def main_async(args):
    server = Server()
    if args.unix:
        srv = await asyncio.start_unix_server(server.handle, path=args.unix, limit=HEAD_LIMIT)
    else:
        host, _, port = args.listen.rpartition(":")
        srv = await asyncio.start_server(server.handle, host.strip("[]"), int(port),
                                         limit=HEAD_LIMIT, reuse_address=True, backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--listen", metavar="HOST:PORT")
    g.add_argument("--unix", metavar="PATH")
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
