"""The rate limit service's messages for the tests, written and read with a small protobuf
codec of their own (no generated stubs, no .proto files): the field numbers below are typed
from Envoy's API (envoy/service/ratelimit/v3/rls.proto,
envoy/extensions/common/ratelimit/v3/ratelimit.proto), independently of sluice's proto/, so
that a wrong number on either side fails a test. The client is python3-grpcio, calling the
method by name with raw bytes."""
import os
import textwrap

import grpc

from harness_http import pick_port

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
OK, OVER_LIMIT = 1, 2
UNITS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6, "week": 7}
MAX_UINT32 = 4294967295


# ---------------------------------------------------------------- writing

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def descriptor(entries, hits_addend=None, limit=None):
    """entries: [(key, value)]; hits_addend: the UInt64Value (None: absent, 0: present);
    limit: (requests_per_unit, unit name) for the RateLimitOverride."""
    out = b"".join(field_bytes(1, field_bytes(1, k) + field_bytes(2, v)) for k, v in entries)
    if limit is not None:
        rpu, unit = limit
        out += field_bytes(2, field_varint(1, rpu) + field_varint(2, UNITS[unit]))
    if hits_addend is not None:
        out += field_bytes(3, field_varint(1, hits_addend) if hits_addend else b"")
    return out


def rate_limit_request(domain, descriptors, hits_addend=0):
    """descriptors: a list of descriptor() bytes, or of entry lists."""
    out = field_bytes(1, domain) if domain else b""
    for d in descriptors:
        out += field_bytes(2, d if isinstance(d, bytes) else descriptor(d))
    if hits_addend:
        out += field_varint(3, hits_addend)
    return out


def framed(message):
    """The gRPC Length-Prefixed-Message (what h2load sends as a prepared body)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


# ---------------------------------------------------------------- reading

def parse(data):
    """{field number: [value]}: ints for varints, bytes for length-delimited fields."""
    fields, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            n, i = read_varint(data, i)
            value, i = data[i:i + n], i + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        fields.setdefault(num, []).append(value)
    return fields


def read_varint(data, i):
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def first(fields, num, default=0):
    return fields.get(num, [default])[-1]


class Status:
    """A DescriptorStatus: code, limit (None or (requests_per_unit, unit, name)),
    remaining, reset (None or (seconds, nanos))."""

    def __init__(self, data):
        f = parse(data)
        self.code = first(f, 1)
        self.limit = None
        if 2 in f:
            lf = parse(f[2][-1])
            self.limit = (first(lf, 1), first(lf, 2), first(lf, 3, b"").decode())
        self.remaining = first(f, 3)
        self.reset = None
        if 4 in f:
            df = parse(f[4][-1])
            self.reset = (first(df, 1), first(df, 2))

    def __repr__(self):
        return (f"Status(code={self.code}, limit={self.limit}, remaining={self.remaining}, "
                f"reset={self.reset})")


class Response:
    def __init__(self, data):
        f = parse(data)
        self.overall = first(f, 1)
        self.statuses = [Status(s) for s in f.get(2, [])]
        self.headers = {}
        for h in f.get(3, []):
            hf = parse(h)
            self.headers[first(hf, 1, b"").decode()] = first(hf, 2, b"").decode()

    def __repr__(self):
        return f"Response(overall={self.overall}, statuses={self.statuses}, {self.headers})"


# ---------------------------------------------------------------- calling

class Client:
    """One channel to sluice's rls listener."""

    def __init__(self, port):
        options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        self.stub = self.channel.unary_unary(METHOD, request_serializer=None,
                                             response_deserializer=None)

    def raw(self, message, method=None):
        """Sends `message` bytes; returns (grpc code, details, response bytes or None)."""
        stub = self.stub if method is None else self.channel.unary_unary(
            method, request_serializer=None, response_deserializer=None)
        try:
            data, call = stub.with_call(message, timeout=10)
            return call.code(), call.details(), data
        except grpc.RpcError as e:
            return e.code(), e.details(), None

    def call(self, domain, descriptors, hits_addend=0):
        code, details, data = self.raw(rate_limit_request(domain, descriptors, hits_addend))
        assert code == grpc.StatusCode.OK, (code, details)
        return Response(data)

    def close(self):
        self.channel.close()


def write_files(directory, files):
    """Writes {name: yaml text} (dedented) into `directory`; returns it."""
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(textwrap.dedent(text))
    return directory


def rls_config(config_dir, port, extra="", redis=None, failure_mode="open",
               response_headers=False, shadow_mode=False, workers=1, redis_timeout="200ms"):
    """A sluice configuration with the rls block on `port` reading `config_dir`."""
    text = f"""\
listen: "{{listen}}"
workers: {workers}
admin:
  listen: "{{admin}}"
upstream:
  url: "{{upstream}}"
access_log: off
failure_mode: {failure_mode}
rls:
  listen: "127.0.0.1:{port}"
  config: "{config_dir}"
  response_headers: {str(response_headers).lower()}
  shadow_mode: {str(shadow_mode).lower()}
routes:
  - name: all
    match:
      path_prefix: "/"
    limits: []
"""
    if redis:
        text += f"""redis:
  url: "redis://127.0.0.1:{redis.port}/0"
  timeout: {redis_timeout}
  key_prefix: "sluice:"
"""
    return text + extra


def start_rls(sluice_factory, tmp_path, files, **kw):
    """sluice serving the rate limit service from `files` ({name: yaml}); returns (sluice,
    client). The client's rls port is sluice.rls_port."""
    config_dir = write_files(str(tmp_path / "ratelimit"), files)
    for attempt in range(3):
        # A port picked free may be taken before sluice binds it: then another is picked.
        port = pick_port()
        try:
            s = sluice_factory(rls_config(config_dir, port, **kw))
            break
        except BaseException as e:
            if attempt == 2 or "Address already in use" not in str(e):
                raise
    s.rls_port = port
    s.config_dir = config_dir
    from harness_http import can_connect, wait_until
    wait_until(lambda: can_connect(port), 10, 0.02, f"the rls listener on {port}")
    return s, Client(port)
