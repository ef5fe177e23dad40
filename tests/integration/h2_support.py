"""HTTP/2 from the client side for the integration tests (SPEC section 10): a small blocking
client that speaks frames itself (hpack for header blocks, hyperframe to parse), so that a
test can send exactly what it means, well-formed or not, and see every frame that comes
back; and sluice configurations for HTTP/2 tests.

    c = H2Conn(s.port)                        # preface + SETTINGS
    st = c.request("GET", "/x")               # a Stream; END_STREAM unless a body follows
    c.response(st)                            # waits for its end (or reset)
    st.status, st.header("x"), st.body, st.reset

Everything sent goes through `send`, everything read through `pump`; received SETTINGS
and PING are acknowledged and DATA is credited back (WINDOW_UPDATE) unless
`auto_window=False`. A GOAWAY is kept in `goaways` and the connection keeps being read:
under a graceful GOAWAY the streams it covers still finish."""
import json
import socket
import struct
import time

import hpack
import pytest
from hyperframe.frame import Frame

from harness_http import TIMEOUT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# SETTINGS parameters
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)

# Error codes
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
          8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
          12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0, 1, 7, 8, 11

DEFAULT_WINDOW = 65535
MIB = 1 << 20


def frame(ftype, flags, stream_id, payload=b""):
    """One frame's bytes: the 9-byte header and the payload, whatever they say."""
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + \
        struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def settings_frame(settings=(), ack=False):
    payload = b"".join(struct.pack(">HI", k, v) for k, v in dict(settings).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def rst_frame(stream_id, code=CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def ping_frame(data=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def window_update_frame(stream_id, n):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", n))


def request_headers(method="GET", path="/", headers=(), authority="localhost", scheme="http"):
    """The header list of a request: pseudo-headers first, then `headers` (names lowered)."""
    out = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
    return out + [(n.lower(), v) for n, v in headers]


def literal_block(headers):
    """A header block of literals never indexed: it means the same whatever the dynamic
    table holds, so one encoding can be sent any number of times."""
    return hpack.Encoder().encode([(n, v, True) for n, v in headers], huffman=False)


def name(code):
    return ERRORS.get(code, str(code))


class Stream:
    """One request's stream as seen by the client."""

    def __init__(self, sid):
        self.id = sid
        self.headers = None  # [(name, value)] of the final response head
        self.informational = []
        self.trailers = None
        self.body = bytearray()
        self.ended = False  # END_STREAM received
        self.reset = None  # RST_STREAM error code received
        self.t_open = time.monotonic()
        self.t_head = None
        self.t_end = None

    @property
    def status(self):
        v = self.header(":status")
        return int(v) if v is not None else None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name, default=None):
        values = self.header_all(name)
        return values[0] if values else default

    def header_all(self, name):
        return [v for n, v in (self.headers or []) if n == name.lower()]

    def json(self):
        return json.loads(bytes(self.body))

    @property
    def elapsed(self):
        return (self.t_end or time.monotonic()) - self.t_open

    def __repr__(self):
        return (f"<Stream {self.id} status={self.status} reset={self.reset and name(self.reset)}"
                f" ended={self.ended} headers={self.headers!r} body={bytes(self.body[:200])!r}>")


class H2Conn:
    """One client connection speaking HTTP/2 by prior knowledge.

    settings: SETTINGS sent after the preface ({INITIAL_WINDOW_SIZE: 0, ...}).
    auto_window: credit received DATA back at once (False: the client never opens its
    windows beyond what `settings` said).
    preface: False sends nothing at connect (the test writes the preface itself).
    replies: False sends nothing on its own (no SETTINGS or PING ACK, no WINDOW_UPDATE):
    a client that only reads, or one whose socket a Sender is writing."""

    def __init__(self, port, settings=None, timeout=TIMEOUT, auto_window=True, preface=True,
                 replies=True, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.auto_window = auto_window
        self.replies = replies
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.buf = bytearray()
        self.streams = {}
        self.next_id = 1
        self.server_settings = {}  # from the server's first SETTINGS
        self.settings_frames = 0  # non-ACK SETTINGS received
        self.settings_acks = 0
        self.ping_acks = 0
        self.goaways = []  # (error code, last stream id, debug data)
        self.frames_in = {}  # frame type -> count
        self.closed = False  # EOF or reset from the peer
        self.reset_by_peer = False
        self.t_closed = None
        self.send_window = DEFAULT_WINDOW  # the connection's, for DATA we send
        self.stream_windows = {}
        self.initial_window = DEFAULT_WINDOW  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = 16384
        self._block = None  # (stream id, frame type, flags, fragments) of a header block
        if preface:
            self.send(PREFACE + settings_frame(settings or {}))

    # -------------------------------------------------------------- sending

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        """Sends raw bytes; False when the peer has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self._peer_closed(reset=True)
            return False

    def send_frame(self, ftype, flags, stream_id, payload=b""):
        return self.send(frame(ftype, flags, stream_id, payload))

    def new_stream(self, sid=None):
        sid = self.next_id if sid is None else sid
        self.next_id = max(self.next_id, sid + 2)
        st = Stream(sid)
        self.streams[sid] = st
        self.stream_windows[sid] = self.initial_window
        return st

    def send_headers(self, sid, headers, end_stream=False):
        """Encodes with the connection's HPACK state and sends HEADERS (+ CONTINUATION)."""
        block = self.encoder.encode(headers)
        pieces = [block[i:i + self.max_frame] for i in range(0, len(block), self.max_frame)] or [b""]
        out = []
        for i, piece in enumerate(pieces):
            flags = (END_HEADERS if i == len(pieces) - 1 else 0)
            if i == 0:
                out.append(frame(HEADERS, flags | (END_STREAM if end_stream else 0), sid, piece))
            else:
                out.append(frame(CONTINUATION, flags, sid, piece))
        return self.send(b"".join(out))

    def request(self, method="GET", path="/", headers=(), body=None, end_stream=None, sid=None,
                authority="localhost"):
        """Opens a stream with a request. `body` (bytes) is sent under flow control and ends
        the stream; with body None the HEADERS end it unless end_stream=False."""
        st = self.new_stream(sid)
        if end_stream is None:
            end_stream = body is None
        self.send_headers(st.id, request_headers(method, path, headers, authority),
                          end_stream=end_stream and body is None)
        if body is not None:
            self.send_body(st, body, end=True)
        return st

    def send_body(self, st, data, end=True, timeout=None, stall_ok=False):
        """Sends DATA as the windows allow, reading frames meanwhile; returns the bytes sent.
        When the windows stay shut for `timeout` seconds, fails the test, or with
        stall_ok returns what was sent so far (the stream is left open)."""
        view = memoryview(data)
        sent = 0
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            room = min(self.send_window, self.stream_windows.get(st.id, 0), self.max_frame)
            if room > 0 and len(view) > 0:
                piece, view = view[:room], view[room:]
                self.send_window -= len(piece)
                self.stream_windows[st.id] -= len(piece)
                last = end and len(view) == 0
                if not self.send_frame(DATA, END_STREAM if last else 0, st.id, bytes(piece)):
                    return sent
                sent += len(piece)
                deadline = time.monotonic() + wait
                continue
            if len(view) == 0:
                if end and not data:
                    self.send_frame(DATA, END_STREAM, st.id)
                return sent
            if st.done or self.closed:
                return sent
            if time.monotonic() > deadline:
                if stall_ok:
                    return sent
                pytest.fail(f"stream {st.id}: no window to send in for {wait}s")
            self.pump(min(0.2, max(0.01, deadline - time.monotonic())))

    def rst(self, st, code=CANCEL):
        sid = st.id if isinstance(st, Stream) else st
        return self.send(rst_frame(sid, code))

    def ping(self, data=b"pingpong"):
        return self.send(ping_frame(data))

    # -------------------------------------------------------------- receiving

    def pump(self, timeout=None):
        """Reads what arrives within `timeout` (one recv) and handles every whole frame.
        Returns False once the peer has closed."""
        if self.closed:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except ConnectionResetError:
            self._peer_closed(reset=True)
            return False
        finally:
            try:
                self.sock.settimeout(self.timeout)
            except OSError:
                pass
        if not data:
            self._peer_closed()
            return False
        self.buf += data
        self._handle_frames()
        return True

    def _peer_closed(self, reset=False):
        self.closed = True
        self.reset_by_peer = reset
        self.t_closed = time.monotonic()

    def _handle_frames(self):
        credit = {}
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            head, body = bytes(self.buf[:9]), bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            f, _ = Frame.parse_frame_header(memoryview(head))
            f.parse_body(memoryview(body))
            ftype = head[3]
            self.frames_in[ftype] = self.frames_in.get(ftype, 0) + 1
            self._handle(ftype, head[4], f, length, credit)
        if credit and self.auto_window and self.replies and not self.closed:
            out = window_update_frame(0, sum(credit.values()))
            for sid, n in credit.items():
                st = self.streams.get(sid)
                if st is not None and not st.done:
                    out += window_update_frame(sid, n)
            self.send(out)

    def _handle(self, ftype, flags, f, length, credit):
        sid = f.stream_id
        st = self.streams.get(sid)
        if ftype == SETTINGS:
            if flags & ACK:
                self.settings_acks += 1
                return
            self.settings_frames += 1
            for k, v in f.settings.items():
                self.server_settings.setdefault(k, v)
                if k == INITIAL_WINDOW_SIZE:
                    for s in self.stream_windows:
                        self.stream_windows[s] += v - self.initial_window
                    self.initial_window = v
                elif k == MAX_FRAME_SIZE:
                    self.max_frame = v
                elif k == HEADER_TABLE_SIZE:
                    self.encoder.header_table_size = min(v, 4096)
            if self.replies:
                self.send(settings_frame(ack=True))
        elif ftype == PING:
            if flags & ACK:
                self.ping_acks += 1
            elif self.replies:
                self.send(ping_frame(f.opaque_data, ack=True))
        elif ftype == GOAWAY:
            self.goaways.append((f.error_code, f.last_stream_id, bytes(f.additional_data)))
        elif ftype == WINDOW_UPDATE:
            if sid == 0:
                self.send_window += f.window_increment
            elif sid in self.stream_windows:
                self.stream_windows[sid] += f.window_increment
        elif ftype == RST_STREAM:
            if st is not None:
                st.reset = f.error_code
                st.t_end = time.monotonic()
        elif ftype in (HEADERS, PUSH_PROMISE):
            self._block = (sid, ftype, flags, [bytes(f.data)])
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == CONTINUATION:
            if self._block is None or self._block[0] != sid:
                raise AssertionError(f"CONTINUATION on stream {sid} out of a header block")
            self._block[3].append(bytes(f.data))
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == DATA:
            if length:
                credit[sid] = credit.get(sid, 0) + length
            if st is not None:
                st.body += f.data
                if flags & END_STREAM:
                    st.ended = True
                    st.t_end = time.monotonic()

    def _end_block(self):
        sid, ftype, flags, fragments = self._block
        self._block = None
        headers = self.decoder.decode(b"".join(fragments))
        if ftype == PUSH_PROMISE:
            raise AssertionError("PUSH_PROMISE from a server the client told ENABLE_PUSH 0?")
        st = self.streams.get(sid)
        if st is None:
            return
        status = dict(headers).get(":status")
        if st.headers is None and status is not None and status.startswith("1"):
            st.informational.append(headers)
        elif st.headers is None:
            st.headers = headers
            st.t_head = time.monotonic()
        else:
            st.trailers = headers
        if flags & END_STREAM:
            st.ended = True
            st.t_end = time.monotonic()

    def wait(self, pred, timeout=None, what="a condition"):
        """Reads until pred() holds; returns its value. Fails the test on timeout, or when
        the connection closes first (unless pred holds then)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = pred()
            if value:
                return value
            if self.closed:
                pytest.fail(f"connection closed while waiting for {what} "
                            f"(GOAWAY {self.goaway_names()})")
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out after {timeout or self.timeout:.1f}s waiting for {what}")
            self.pump(min(left, 0.5))

    def response(self, st, timeout=None):
        """Waits for the stream's end (END_STREAM or RST_STREAM); returns it."""
        self.wait(lambda: st.done, timeout, f"stream {st.id} to end")
        return st

    def responses(self, streams, timeout=None):
        self.wait(lambda: all(s.done for s in streams), timeout,
                  f"streams {[s.id for s in streams if not s.done]} to end")
        return streams

    def handshake(self, timeout=None):
        """Waits for the server's SETTINGS; returns them."""
        self.wait(lambda: self.settings_frames > 0, timeout, "the server's SETTINGS")
        return self.server_settings

    def wait_end(self, timeout=None):
        """Reads until the peer closes; returns the seconds it took. Fails on timeout."""
        t0 = time.monotonic()
        deadline = t0 + (self.timeout if timeout is None else timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"connection still open after {timeout or self.timeout:.1f}s "
                            f"(GOAWAY {self.goaway_names()})")
            self.pump(min(left, 0.5))
        return self.t_closed - t0

    def goaway_names(self):
        return [name(g[0]) for g in self.goaways]

    @property
    def goaway(self):
        """The last GOAWAY received, or None."""
        return self.goaways[-1] if self.goaways else None


# ------------------------------------------------------------------ one-shot requests

def h2_request(port, method="GET", path="/", headers=(), body=None, timeout=TIMEOUT):
    """One request on a new connection; returns the Stream."""
    with H2Conn(port, timeout=timeout) as c:
        return c.response(c.request(method, path, headers, body), timeout)


def h2_get(port, path="/", headers=()):
    return h2_request(port, "GET", path, headers)


def assert_served(port, path="/healthy", within=None):
    """A well-behaved client on a new connection gets 200 (within `within` seconds)."""
    t0 = time.monotonic()
    st = h2_get(port, path)
    assert st.status == 200, st
    assert st.json()["target"] == path, st
    if within is not None:
        assert time.monotonic() - t0 < within, f"a well-behaved request took {time.monotonic() - t0:.2f}s"
    return st


# ------------------------------------------------------------------ configurations

CONFIG = """\
listen: "{listen}"
workers: %(workers)s
admin:
  listen: "{admin}"
upstream:
  url: "{upstream}"
  connect_timeout: 1s
  timeout: %(upstream_timeout)s
client:
  header_timeout: %(header_timeout)s
  idle_timeout: %(idle_timeout)s
  max_header_bytes: %(max_header_bytes)s
%(client)saccess_log: "{access_log}"
log_level: info
%(extra)sroutes:
%(routes)s"""

ALL_ROUTE = """\
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""


def h2_config(routes=ALL_ROUTE, workers=2, upstream_timeout="10s", header_timeout="5s",
              idle_timeout="75s", max_header_bytes="16k", client="", extra=""):
    """A configuration for HTTP/2 tests. `client` adds lines under client: (indented two
    spaces, each ending in a newline); `extra` adds top-level blocks before routes:."""
    return CONFIG % dict(workers=workers, upstream_timeout=upstream_timeout,
                         header_timeout=header_timeout, idle_timeout=idle_timeout,
                         max_header_bytes=max_header_bytes, client=client, extra=extra,
                         routes=routes)
