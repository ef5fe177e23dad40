"""An application that accepts "Upgrade: h2c", as Go's h2c handler, Tomcat, Jetty or Node's
http2 servers do, and then speaks HTTP/2 on the same connection (python3-h2).

    python3 h2c_upstream.py --listen 127.0.0.1:PORT     prints "ready" once it accepts

It upgrades any HTTP/1.1 request whose Upgrade names h2c in any case, with or without
HTTP2-Settings or a body: the most willing kind of application, so that nothing in front
of it can count on the application refusing. /force-h2c answers 101 to h2c whatever was
asked. Every other HTTP/1.1 request is answered 200 "http/1.1" with keep-alive; every
HTTP/2 stream 200 "h2". GET /__log (HTTP/1.1) lists what arrived, one entry a request:
{"proto": "1.1" or "2", "method", "path", "headers": [[name, value], ...], "body_length"}.
"""
import argparse
import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

LOG = []
LOCK = threading.Lock()


def record(proto, method, path, headers, body_length):
    with LOCK:
        LOG.append({"proto": proto, "method": method, "path": path,
                    "headers": headers, "body_length": body_length})


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = [[k.strip(), v.strip()] for k, v in (line.split(":", 1) for line in lines[1:])]
    return (method, path, headers), rest


def header(headers, name):
    return ", ".join(v for k, v in headers if k.lower() == name)


def speak_h2(sock, settings, rest, first):
    """HTTP/2 after the 101: stream 1 is the upgraded request, later streams are new."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_upgrade_connection(settings.encode() if settings else None)
    answer(conn, 1)
    record("2", first[0], first[1], first[2], 0)
    sock.sendall(conn.data_to_send())
    data = rest
    streams = {}
    while True:
        if data:
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = dict((k.decode(), v.decode()) for k, v in ev.headers)
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                    h = streams.pop(ev.stream_id)
                    record("2", h.get(":method"), h.get(":path"), [list(i) for i in h.items()], 0)
                    answer(conn, ev.stream_id)
            sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            return


def answer(conn, stream_id):
    conn.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
    conn.send_data(stream_id, b"h2", end_stream=True)


def serve(sock):
    buf = b""
    while True:
        parsed, buf = read_head(sock, buf)
        if parsed is None:
            return
        method, path, headers = parsed
        length = int(header(headers, "content-length") or 0)
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        buf = buf[length:]
        if path == "/__log":
            with LOCK:
                body = json.dumps(LOG).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            continue
        upgrade = [t.strip().lower() for t in header(headers, "upgrade").split(",")]
        if "h2c" in upgrade or path == "/force-h2c":
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: h2c\r\n\r\n")
            speak_h2(sock, header(headers, "http2-settings"), buf, (method, path, headers))
            return
        record("1.1", method, path, headers, length)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nhttp/1.1")


def run(sock):
    try:
        with sock:
            serve(sock)
    except (OSError, ValueError, h2.exceptions.ProtocolError):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    host, port = ap.parse_args().listen.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        sock, _ = srv.accept()
        threading.Thread(target=run, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
