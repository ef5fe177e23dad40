"""Request smuggling defences (SPEC section 7): ambiguous framing is answered 400 with
Connection: close and never forwarded. Each attack carries a second request that a
confused parser would take for a new one; the upstream must see neither."""
import pytest

from conftest import Client, http, request

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def attack(headers, body=b""):
    head = "POST /attack HTTP/1.1\r\nHost: x\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


ATTACKS = {
    "cl-and-te": attack(["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n" + SMUGGLED),
    "te-and-cl": attack(["Transfer-Encoding: chunked", "Content-Length: 40"], b"0\r\n\r\n" + SMUGGLED),
    "two-content-lengths": attack(["Content-Length: 5", "Content-Length: 6"], b"hello!" + SMUGGLED),
    "content-length-list": attack(["Content-Length: 1, 2"], b"xy" + SMUGGLED),
    "content-length-plus": attack(["Content-Length: +5"], b"hello" + SMUGGLED),
    "content-length-minus": attack(["Content-Length: -1"], SMUGGLED),
    "content-length-hex": attack(["Content-Length: 0x5"], b"hello" + SMUGGLED),
    "content-length-inner-space": attack(["Content-Length: 1 2"], b"x" * 12 + SMUGGLED),
    "te-gzip-chunked": attack(["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n" + SMUGGLED),
    "te-chunked-gzip": attack(["Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n" + SMUGGLED),
    "te-identity": attack(["Transfer-Encoding: identity"], b"0\r\n\r\n" + SMUGGLED),
    "te-space-before-colon": attack(["Transfer-Encoding : chunked", "Content-Length: 5"],
                                    b"0\r\n\r\n" + SMUGGLED),
    "bad-chunk-size": attack(["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-size-overflow": attack(["Transfer-Encoding: chunked"],
                                  b"1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
    "obsolete-line-folding": attack(["X-Folded: first", " second"], SMUGGLED),
    "folded-transfer-encoding": attack(["Content-Length: 5", "Transfer-Encoding:", " chunked"],
                                       b"0\r\n\r\n" + SMUGGLED),
    "nul-in-header": attack(["X-Nul: a\x00b"], SMUGGLED),
    "bare-cr-in-header": attack(["X-Cr: a\rb"], SMUGGLED),
    "bare-cr-line-end": attack(["X-Cr: a\rContent-Length: 5"], b"hello" + SMUGGLED),
}


@pytest.mark.parametrize("raw", ATTACKS.values(), ids=ATTACKS.keys())
def test_ambiguous_framing_rejected(proxy, raw):
    with Client(proxy.port) as c:
        c.send(raw)  # one write: everything is there before sluice could forward anything
        resp = c.read_response()
        assert resp.status == 400, resp
        assert "close" in resp.tokens("connection"), resp
        assert isinstance(resp.json(), dict)
        assert c.closed_by_peer(), "the connection stayed open after a framing error"
    assert proxy.upstream.log() == [], "a request with ambiguous framing reached the upstream"
    resp = http(proxy.port, request("GET", "/healthy"))
    assert resp.status == 200


def test_bad_chunk_mid_stream_never_completes_upstream(proxy):
    raw = attack(["Transfer-Encoding: chunked"], b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n" + SMUGGLED)
    with Client(proxy.port) as c:
        c.send(raw)
        try:
            resp = c.read_response()
            assert resp.status == 400, resp
            assert c.closed_by_peer()
        except (EOFError, ConnectionResetError):
            pass  # closing without an answer is acceptable once the head went out
    for e in proxy.upstream.log():
        assert e["target"] != "/smuggled"
        assert not e["body_complete"], e


def test_valid_framing_variants_accepted(proxy):
    # The defences must not reject what RFC 9112 allows.
    ok = [
        attack(["Content-Length: 5"], b"hello"),
        attack(["Content-Length: 005"], b"hello"),
        attack(["Transfer-Encoding: chunked"], b"5;ext=1\r\nhello\r\n0\r\n\r\n"),
        attack(["Transfer-Encoding: Chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
        attack(["Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
        attack(["X-Tab:\tvalue\t"], b""),
    ]
    with Client(proxy.port) as c:
        for raw in ok:
            resp = c.exchange(raw)
            assert resp.status == 200, (raw, resp)
    lengths = [e["body_length"] for e in proxy.upstream.log()]
    assert lengths == [5, 5, 5, 5, 5, 0]


def test_smuggled_request_in_body_is_just_body(proxy):
    # A body that looks like a request is data: one request reaches the upstream.
    resp = http(proxy.port, attack([f"Content-Length: {len(SMUGGLED)}"], SMUGGLED))
    assert resp.status == 200
    assert resp.json()["body_length"] == len(SMUGGLED)
    assert [e["target"] for e in proxy.upstream.log()] == ["/attack"]
