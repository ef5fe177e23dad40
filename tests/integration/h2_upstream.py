"""An HTTP/2 application with prior knowledge (h2c), as gRPC servers, Envoy or nghttpd are
when sluice's upstream.url is h2c:// (python3-h2).

    python3 h2_upstream.py --listen 127.0.0.1:PORT     prints "ready" once it accepts

Every stream is answered by its path:
  /anything          200, a JSON body {"method", "path", "headers", "body_length"} with
                     content-length
  /nolength          the same without content-length
  /trailers          200, body "data", then trailers x-checksum: abc, grpc-status: 0
  /trailers-only     200 with END_STREAM on the head: grpc-status: 7 in the head
  /big?n=N           N bytes of "x", sent as the client's window allows
  /slow?ms=N         the default answer after N ms
  /rst               RST_STREAM INTERNAL_ERROR after the request
  /rst-mid           head and 1000 bytes, then RST_STREAM INTERNAL_ERROR
  /refuse-once       RST_STREAM REFUSED_STREAM the first time a path is asked, else 200
  /goaway-once       GOAWAY naming the stream before it, the first time: it is not answered
  /die-mid           head and 1000 bytes, then the connection closes
  /echo              200, the request body back, streamed as it arrives
HTTP/1.1 (a connection not opening with the preface) serves GET /__log, the list of the
streams that arrived, POST /__log/clear, GET /count, and /__conns, the connections made.
"""
import argparse
import json
import select
import socket
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LOG = []
CONNS = [0]
SEEN = set()
LOCK = threading.Lock()


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_inbound_headers=True))
        self.streams = {}   # id -> {"headers", "body", "path"}
        self.pending = {}   # id -> [bytes left to send, end with trailers?]
        self.timers = []    # (due, stream id)
        self.echo = set()
        self.closed = False

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_body(self, sid, data, trailers=None, end=True):
        self.pending[sid] = [data, trailers, end]
        self.pump()

    def pump(self):
        for sid in list(self.pending):
            data, trailers, end = self.pending[sid]
            while data:
                try:
                    room = min(self.h2.local_flow_control_window(sid),
                               self.h2.max_outbound_frame_size)
                except h2.exceptions.StreamClosedError:
                    data = b""
                    break
                if room <= 0:
                    break
                self.h2.send_data(sid, data[:room])
                data = data[room:]
            if data:
                self.pending[sid][0] = data
                continue
            del self.pending[sid]
            try:
                if trailers:
                    self.h2.send_headers(sid, trailers, end_stream=True)
                elif end:
                    self.h2.end_stream(sid)
            except h2.exceptions.StreamClosedError:
                pass
        self.flush()

    def respond(self, sid):
        st = self.streams[sid]
        hdrs = dict(st["headers"])
        url = urlsplit(hdrs.get(":path", "/"))
        q = parse_qs(url.query)
        path = url.path
        entry = {"method": hdrs.get(":method"), "path": hdrs.get(":path"),
                 "headers": [[k, v] for k, v in st["headers"]],
                 "body_length": len(st["body"])}
        with LOCK:
            LOG.append(entry)
            first = path not in SEEN
            SEEN.add(path)
        body = json.dumps(entry).encode()
        if path == "/slow" and "due" not in st:
            st["due"] = True
            self.timers.append((time.monotonic() + int(q.get("ms", ["100"])[0]) / 1000, sid))
            return
        if path == "/rst":
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/refuse-once" and first:
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path == "/goaway-once" and first:
            self.h2.close_connection(last_stream_id=max(0, sid - 2))
        elif path == "/trailers-only":
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                       ("grpc-status", "7"), ("grpc-message", "denied")],
                                 end_stream=True)
        elif path == "/trailers":
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            self.send_body(sid, b"data", trailers=[("x-checksum", "abc"), ("grpc-status", "0")])
        elif path == "/big":
            n = int(q.get("n", ["1000"])[0])
            self.h2.send_headers(sid, [(":status", "200"), ("content-length", str(n))])
            self.send_body(sid, b"x" * n)
        elif path in ("/rst-mid", "/die-mid"):
            self.h2.send_headers(sid, [(":status", "200"), ("content-length", "100000")])
            self.h2.send_data(sid, b"x" * 1000)
            self.flush()
            if path == "/die-mid":
                self.closed = True
                return
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            head = [(":status", "200"), ("content-type", "application/json")]
            if path != "/nolength":
                head.append(("content-length", str(len(body))))
            self.h2.send_headers(sid, head, end_stream=hdrs.get(":method") == "HEAD")
            if hdrs.get(":method") != "HEAD":
                self.send_body(sid, body)
        self.flush()

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.streams[ev.stream_id] = {"headers": ev.headers, "body": b""}
            if dict(ev.headers).get(":path") == "/echo":
                self.echo.add(ev.stream_id)
                self.h2.send_headers(ev.stream_id, [(":status", "200")])
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st["body"] += ev.data
            if ev.stream_id in self.echo and ev.data:
                self.send_body(ev.stream_id, ev.data, end=False)
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.end(ev.stream_id)
        elif isinstance(ev, h2.events.WindowUpdated):
            self.pump()

    def end(self, sid):
        if sid in self.echo:
            self.echo.discard(sid)
            self.send_body(sid, b"", trailers=[("x-echoed", str(len(self.streams[sid]["body"])))])
            with LOCK:
                LOG.append({"method": "POST", "path": "/echo", "headers": [],
                            "body_length": len(self.streams[sid]["body"])})
        elif sid in self.streams and not self.streams[sid].get("answered"):
            self.streams[sid]["answered"] = True
            self.respond(sid)

    def run(self, first):
        self.h2.initiate_connection()
        self.flush()
        data = first
        while not self.closed:
            if data:
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self.flush()
                    return
                for ev in events:
                    self.event(ev)
                    if self.closed:
                        return
                self.flush()
            now = time.monotonic()
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
            for _, sid in due:
                self.respond(sid)
            wait = min([t[0] for t in self.timers], default=now + 1) - now
            r, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            data = self.sock.recv(65536) if r else b""
            if r and not data:
                return


def serve_h1(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk
    line = buf.split(b"\r\n", 1)[0].decode()
    method, target, _ = line.split(" ", 2)
    with LOCK:
        if target == "/__log/clear":
            LOG.clear()
            body = b"{}"
        elif target == "/count":
            body = json.dumps({"count": len(LOG)}).encode()
        elif target == "/__conns":
            body = json.dumps({"connections": CONNS[0]}).encode()
        else:
            body = json.dumps(LOG).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                 b"connection: close\r\n\r\n%s" % (len(body), body))


def handle(sock):
    try:
        buf = b""
        while len(buf) < len(PREFACE) and PREFACE.startswith(buf):
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        if buf.startswith(PREFACE):
            with LOCK:
                CONNS[0] += 1
            Conn(sock).run(buf)
        else:
            serve_h1(sock, buf)
    except (OSError, h2.exceptions.H2Error):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(128)
    print("ready", flush=True)
    while True:
        s, _ = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
