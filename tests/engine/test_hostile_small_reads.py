"""Hostile HTTPS servers against the client's small reads (review of issue 8, 2026-11-30).

The connection's read buffer went from 1 KiB to 256 bytes and a TLS read asks for at most 256
bytes, so lines longer than the buffer, a CRLF split between reads, and records of one byte
are now everyday paths. Each server here is on 127.0.0.1 and reached with TlsWithCACheck on
first contact, so every fire also takes the `tls_untrusted` retry (the first handshake is made
without the root, which is then looked up from the chain). Run with KEYHOOK_MICROPYTHON naming
the 32-bit interpreter to check the 32-bit port.
"""

from __future__ import annotations

import pytest

from keyhook.lab.receiver import server_context
from kh_engine_helpers import definition, job
from kh_scripted import Scripted

OK_HEAD = b"HTTP/1.1 200 OK\r\n"


def _tls(pki):
    return server_context(pki.leaf.chain_path, pki.leaf.key_path)


def _long_header_lines(link) -> None:
    link.read_request()
    link.send(OK_HEAD + b"X-Long: " + b"a" * 5000 + b"\r\n"
              + b"".join(b"Set-Cookie: c%d=%s\r\n" % (i, b"v" * 300) for i in range(20))
              + b"Content-Length: 5\r\n\r\nhello")


def _one_byte_records(link) -> None:
    link.read_request()
    for b in OK_HEAD + b"X-Pad: " + b"p" * 300 + b"\r\nContent-Length: 5\r\n\r\nhello":
        link.send(bytes((b,)))  # one TLS record, one TCP write, per byte


def _crlf_split_at_the_buffer(link) -> None:
    # the first record ends with the CR of Content-Length's line at byte 256; its LF comes next
    link.read_request()
    tail = b"Content-Length: 5\r"
    pad = 256 - len(OK_HEAD) - len(tail) - len(b"X-Pad: \r\n")
    link.send(OK_HEAD + b"X-Pad: " + b"p" * pad + b"\r\n" + tail)
    link.send(b"\n\r\nhello")


def _long_chunk_extensions(link) -> None:
    link.read_request()
    link.send(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
              + b"5;" + b"e" * 1000 + b"\r\nhello\r\n"
              + b"6;name=" + b"v" * 600 + b"\r\n world\r\n0\r\n\r\n")


def _chunked_in_one_byte_records(link) -> None:
    link.read_request()
    link.send(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    for b in b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n":
        link.send(bytes((b,)))


OK_SHAPES = {  # script, body bytes
    "long-header-lines": (_long_header_lines, 5),
    "one-byte-records": (_one_byte_records, 5),
    "crlf-split-at-the-buffer": (_crlf_split_at_the_buffer, 5),
    "long-chunk-extensions": (_long_chunk_extensions, 11),
    "chunked-in-one-byte-records": (_chunked_in_one_byte_records, 11),
}


@pytest.mark.parametrize("shape", list(OK_SHAPES))
def test_a_well_formed_answer_in_an_awkward_shape_is_read(batch, pki, trust_dir, shape):
    script, body = OK_SHAPES[shape]
    with Scripted(script, tls=_tls(pki), hold_s=0) as srv:
        d = definition(srv.url("/h", host="localhost"), "TlsWithCACheck", timeout=8000)
        [r] = batch.run([job(shape, d)], trust_dir=trust_dir, timeout=120)
    assert r["error"] is None and r["status"] == 200, r
    assert r["body_bytes"] == body, r  # the whole body was read, no more
    assert r["connect_attempts"] == 2  # first contact: one refused handshake, then the retry


def _closes(prefix: bytes, close_notify: bool):
    def script(link) -> None:
        link.read_request()
        link.send(prefix, close_notify=close_notify)
        link.sock.close()
    return script


CUT_SHAPES = {
    "mid-status-line": OK_HEAD[:10],
    "mid-header-line": OK_HEAD + b"Content-Le",
    "mid-long-header-line": OK_HEAD + b"X-Long: " + b"a" * 700,
    "mid-chunk-size-line": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" + b"0" * 3,
    "mid-body": OK_HEAD + b"Content-Length: 500\r\n\r\n" + b"b" * 300,
}


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "tcp-close"])
@pytest.mark.parametrize("shape", list(CUT_SHAPES))
def test_a_server_that_closes_mid_answer_gives_bad_response(batch, pki, trust_dir, shape, close_notify):
    with Scripted(_closes(CUT_SHAPES[shape], close_notify), tls=_tls(pki), hold_s=0) as srv:
        d = definition(srv.url("/h", host="localhost"), "TlsWithCACheck", timeout=8000)
        [r] = batch.run([job(shape, d)], trust_dir=trust_dir, timeout=120)
    assert r["status"] is None, r
    # an answer cut short is a bad response (never a time-out: the close was seen)
    assert r["error"] == "bad_response", r
