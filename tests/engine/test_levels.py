"""The level table of docs/design.md against real TLS servers on 127.0.0.1 (one per certificate
situation) and the firmware engine under the MicroPython unix port.

Every case asserts accepted or refused, the error code, and for a refusal that the server got
no byte of the request (every request carries a unique marker; a TLS server's recorded bytes
are what its HTTP layer received after the handshake)."""

from __future__ import annotations

import pytest

from kh_engine_helpers import Batch, Servers, definition, job

SERVERS = ["full", "leaf_only", "unrelated", "self_signed", "expired", "not_yet_valid", "wrong_host", "plain"]
SERVER_CERT = {"full": "leaf", "leaf_only": "leaf_only", "unrelated": "unrelated_leaf", "self_signed": "self_signed",
               "expired": "expired", "not_yet_valid": "not_yet_valid", "wrong_host": "wrong_host"}
OK = None
MISMATCH = "tls_pin_mismatch"
HANDSHAKE = "tls_handshake"

# level (and pin) -> expected outcome per server; None = accepted
EXPECTED = {
    "ca": {"full": OK, "leaf_only": "tls_untrusted", "unrelated": "tls_untrusted", "self_signed": "tls_untrusted",
           "expired": "tls_expired", "not_yet_valid": "tls_not_yet_valid", "wrong_host": "tls_hostname",
           "plain": HANDSHAKE},
    # a pinned CA: validated from the pin down; no chain fetching, so a leaf-only server fails a pinned root
    "pin_root": {"full": OK, "leaf_only": MISMATCH, "unrelated": MISMATCH, "self_signed": MISMATCH,
                 "expired": "tls_expired", "not_yet_valid": "tls_not_yet_valid", "wrong_host": "tls_hostname",
                 "plain": HANDSHAKE},
    "pin_intermediate": {"full": OK, "leaf_only": OK, "unrelated": MISMATCH, "self_signed": MISMATCH,
                         "expired": "tls_expired", "not_yet_valid": "tls_not_yet_valid",
                         "wrong_host": "tls_hostname", "plain": HANDSHAKE},
    # a pinned leaf: exactly that certificate, whoever signed it
    "pin_leaf": {"full": OK, "leaf_only": OK, "unrelated": MISMATCH, "self_signed": MISMATCH, "expired": MISMATCH,
                 "not_yet_valid": MISMATCH, "wrong_host": MISMATCH, "plain": HANDSHAKE},
    "pin_sibling": {s: MISMATCH for s in SERVERS} | {"plain": HANDSHAKE},
    "pin_unrelated_root": {s: MISMATCH for s in SERVERS} | {"unrelated": OK, "plain": HANDSHAKE},
    # pinning the very certificate a server presents: accepted even when expired or for another host
    "pin_own_leaf": {s: OK for s in SERVERS} | {"plain": HANDSHAKE},
    "self_signed": {s: OK for s in SERVERS} | {"plain": HANDSHAKE},
    "http": {s: OK for s in SERVERS},
}


def _pin(pki, column: str, server: str) -> str | None:
    if not column.startswith("pin_"):
        return None
    name = column[4:]
    if name == "own_leaf":
        name = SERVER_CERT.get(server, "leaf")
        if name == "leaf_only":
            name = "leaf"
    return getattr(pki, name).pem


def _level(column: str) -> str:
    if column == "ca":
        return "TlsWithCACheck"
    if column == "self_signed":
        return "TlsAllowSelfSigned"
    if column == "http":
        return "AllowHttp"
    return "TlsPinnedCertificate"


@pytest.fixture(scope="module")
def matrix(pki, trust_dir, tmp_path_factory):
    servers = Servers(pki)
    batch = Batch(tmp_path_factory.mktemp("matrix"))
    try:
        yield _run_matrix(servers, pki, trust_dir, batch)
    finally:
        servers.stop()


def _run_matrix(servers, pki, trust_dir, batch):
    rx = {name: (servers.plain() if name == "plain" else servers.tls(SERVER_CERT[name])) for name in SERVERS}
    jobs, cases = [], []
    for column, row in EXPECTED.items():
        for server in SERVERS:
            case = f"{column}@{server}"
            marker = f"kh-case-{len(jobs):03d}x"
            url = rx[server].url(f"/{marker}", host="localhost")
            if server == "plain" and column != "http":
                url = url.replace("http://", "https://")
            d = definition(url, _level(column), additionalHttpHeaders={"X-Case": marker})
            pin = _pin(pki, column, server)
            if pin:
                d["pinnedCertificate"] = pin
            jobs.append(job(case, d))
            cases.append((case, column, server, marker, row[server]))
    results = batch.run(jobs, trust_dir=trust_dir)
    for r in rx.values():
        r.settle()
    return rx, cases, {r["case"]: r for r in results}


def test_every_level_against_every_server(matrix):
    rx, cases, results = matrix
    wrong = []
    for case, column, server, marker, expected in cases:
        r = results[case]
        if r["error"] != expected:
            wrong.append(f"{case}: expected {expected or 'accepted'}, got {r['error']} ({r['message']})")
            continue
        got = rx[server].received
        if expected is None:
            assert r["status"] == 200 and r["sent"], case
            assert marker.encode() in got, f"{case}: accepted but the server did not get the request"
        else:
            assert r["status"] is None and not r["sent"], case
            assert marker.encode() not in got, f"{case}: refused, yet the server received the request"
    assert not wrong, "\n".join(wrong)


def test_refused_tls_connections_carry_no_request_byte(matrix):
    """Over TLS, a refused handshake leaves the server's HTTP layer with zero bytes."""
    rx, cases, results = matrix
    accepted = {marker.encode() for case, _, _, marker, exp in cases if exp is None}
    for name, server in rx.items():
        for conn in server.connections:
            if name == "plain":
                # a TLS level speaking to a plain server sends a ClientHello, never the request
                assert conn.data.startswith(b"\x16\x03") or any(m in conn.data for m in accepted), conn.data[:40]
                if conn.data.startswith(b"\x16\x03"):
                    assert b"kh-case" not in conn.data
            elif not conn.handshake_ok:
                assert conn.data == b""
            else:
                assert conn.data == b"" or sum(m in conn.data for m in accepted) == 1, conn.data[:60]


def test_pinned_leaf_is_checked_before_the_first_byte(matrix):
    rx, cases, results = matrix
    for case, column, server, marker, expected in cases:
        if column == "pin_leaf" and expected == MISMATCH:
            assert "pinned" in results[case]["message"]
