#!/usr/bin/python3
"""HTTP/2 clients for bench/h2.sh, on python3-h2 (prior knowledge, cleartext).

  h2_clients.py download HOST PORT PATH SIZE RATE WINDOW
      GETs PATH on one connection whose stream and connection windows are WINDOW bytes,
      and reads the body no faster than RATE bytes/s: each DATA frame is acknowledged
      (WINDOW_UPDATE) only once the bytes read so far are due at that rate, so the
      window, not the reader's memory, holds the sender back. Prints
      "status bytes seconds" and exits 0 if the status is 200 and the body SIZE bytes.

  h2_clients.py idle HOST PORT N
      Opens N connections; each sends the preface, SETTINGS and one GET / and reads the
      response. Prints "ready OK" (OK: connections whose response was 200), then keeps
      them open and idle, acknowledging whatever the server sends, until its standard
      input closes.
"""
import selectors
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def new_conn(window=None):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    if window is not None:
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.initiate_connection()
    return conn


def request_headers(host, port, path):
    return [(":method", "GET"), (":scheme", "http"), (":authority", f"{host}:{port}"),
            (":path", path), ("user-agent", "sluice-bench")]


def download(host, port, path, size, rate, window):
    conn = new_conn(window)
    # The connection window starts at 65 535 (RFC 9113 6.9.2); bring it to WINDOW too.
    if window > 65535:
        conn.increment_flow_control_window(window - 65535)
    conn.send_headers(1, request_headers(host, port, path), end_stream=True)
    sock = socket.create_connection((host, port))
    sock.sendall(conn.data_to_send())
    status, got, ended = None, 0, False
    start = time.monotonic()
    # A stalled transfer ends the download rather than the benchmark.
    sock.settimeout(30)
    while not ended:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionError):
            break
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers).get(b":status", b"").decode()
            elif isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
                ahead = start + got / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                 h2.events.ConnectionTerminated)):
                ended = True
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    secs = time.monotonic() - start
    sock.close()
    print(status, got, f"{secs:.2f}", flush=True)
    return 0 if status == "200" and got == size else 1


def idle(host, port, n):
    sel = selectors.DefaultSelector()
    template = new_conn()
    template.send_headers(1, request_headers(host, port, "/"), end_stream=True)
    hello = template.data_to_send()
    pending, ok = 0, 0
    for _ in range(n):
        # Every connection sends the same bytes: each starts with an empty HPACK table.
        conn = new_conn()
        conn.send_headers(1, request_headers(host, port, "/"), end_stream=True)
        conn.data_to_send()
        sock = socket.create_connection((host, port))
        sock.sendall(hello)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, [conn, None, False])
        pending += 1
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            state = key.data
            try:
                data = key.fileobj.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                if not state[2]:
                    pending -= 1
                continue
            for ev in state[0].receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    state[1] = dict(ev.headers).get(b":status")
                elif isinstance(ev, h2.events.DataReceived):
                    state[0].acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    if not state[2]:
                        state[2] = True
                        pending -= 1
                        ok += state[1] == b"200"
            out = state[0].data_to_send()
            if out:
                key.fileobj.sendall(out)
    print("ready", ok, flush=True)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                if not sys.stdin.readline():
                    return 0
                continue
            try:
                data = key.fileobj.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                continue
            key.data[0].receive_data(data)
            out = key.data[0].data_to_send()
            if out:
                key.fileobj.sendall(out)


def main(argv):
    if len(argv) == 8 and argv[1] == "download":
        return download(argv[2], int(argv[3]), argv[4], int(argv[5]), float(argv[6]), int(argv[7]))
    if len(argv) == 5 and argv[1] == "idle":
        return idle(argv[2], int(argv[3]), int(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
