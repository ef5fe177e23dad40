"""A gRPC service (python3-grpcio, no generated code: messages are raw bytes) for sluice's
h2c:// upstream tests.

    python3 grpc_upstream.py --listen 127.0.0.1:PORT     prints "ready" once it serves

Service test.Echo:
  Unary(b)         -> b reversed; echoes metadata x-meta as initial metadata and sets
                      trailing metadata x-trailer: done
  ServerStream(b)  -> b + b"0", b + b"1", ... (count from metadata x-count, default 5)
  ClientStream(bs) -> the messages joined
  Bidi(bs)         -> each message upper-cased as it arrives
  Slow(b)          -> b after sleeping x-sleep-ms (default 3000) milliseconds
  Die(b)           -> one message, then the process exits: an upstream dying mid-stream
  Fail(b)          -> status NOT_FOUND with details "no such thing"
"""
import argparse
import os
import sys
import time
from concurrent import futures

import grpc


def meta(ctx, name, default=None):
    for k, v in ctx.invocation_metadata():
        if k == name:
            return v
    return default


def unary(req, ctx):
    echo = meta(ctx, "x-meta")
    if echo is not None:
        ctx.send_initial_metadata((("x-meta", echo),))
    ctx.set_trailing_metadata((("x-trailer", "done"),))
    return req[::-1]


def server_stream(req, ctx):
    for i in range(int(meta(ctx, "x-count", "5"))):
        yield req + str(i).encode()


def client_stream(it, ctx):
    return b"".join(it)


def bidi(it, ctx):
    for m in it:
        yield m.upper()


def slow(req, ctx):
    time.sleep(int(meta(ctx, "x-sleep-ms", "3000")) / 1000)
    return req


def die(req, ctx):
    yield req
    time.sleep(0.2)  # the first message leaves before the process goes
    os._exit(1)


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    args = ap.parse_args()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Die": grpc.unary_stream_rpc_method_handler(die),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server = grpc.server(futures.ThreadPoolExecutor(16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if server.add_insecure_port(args.listen) == 0:
        return 1
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
