"""A failed allocation is reported as `memory`, never as a verdict (issue 8).

Near the smallest heap a fire to a correctly pinned server once failed with `tls_pin_mismatch`:
a MemoryError inside the certificate check read as a rejected certificate. Here a MemoryError is
forced (tests/engine/mp/khfault.py) at each point where it could turn into a verdict or lose a
secret: inside the TLS verify callback (leaf pin, pinned CA, CA check), in mbedTLS's own
allocations, in the OAuth grant's reading of a rotated refresh token, and in the store's write of
it. Each fire reports `memory` (and sends nothing) or succeeds after a collection; the next fire
works, and no security code (tls_*) ever appears."""

from __future__ import annotations

import json

import pytest

from kh_engine_helpers import definition, job, refresh_definition

tokenserver = pytest.importorskip("keyhook.lab.tokenserver")


def _no_request(rx) -> None:
    rx.settle()
    assert rx.requests == [], "a request reached the server although the check did not complete"


# (level, pin, where the allocation fails): the CA check reads every certificate's issuer in the
# verify callback; a pinned level parses its pin (a pinned leaf is then compared in place).
@pytest.mark.parametrize("level,pin,target", [("TlsWithCACheck", None, "kh.http.der:names"),
                                              ("TlsWithCACheck", None, "kh.http.tlspolicy:name_hash"),
                                              ("TlsPinnedCertificate", "leaf", "kh.http.der:names"),
                                              ("TlsPinnedCertificate", "intermediate", "kh.http.der:names")])
def test_memory_error_in_the_verify_callback_is_memory(servers, pki, batch, trust_dir, level, pin, target):
    rx = servers.tls()
    extra = {"pinnedCertificate": getattr(pki, pin).pem} if pin else {}
    d = definition(rx.url("/hook", host="localhost"), level, **extra)
    first, second = batch.run([job("fault", d), job("after", d)], trust_dir=trust_dir,
                              fault={"target": target, "nth": 1})
    assert first["error"] == "memory", first
    assert first["sent"] is False
    assert "pin" not in first["message"] and not str(first["error"]).startswith("tls_")
    assert second["status"] == 200, second  # one failed allocation: the next fire is verified and sent
    assert len(rx.requests) == 1


def test_memory_error_before_the_first_byte_sends_nothing(servers, pki, batch):
    rx = servers.tls()
    d = definition(rx.url("/hook", host="localhost"), "TlsPinnedCertificate", pinnedCertificate=pki.leaf.pem)
    [r] = batch.run([job("fault", d)], fault={"target": "kh.http.der:names", "nth": 1})
    assert r["error"] == "memory" and r["sent"] is False, r
    _no_request(rx)


def test_mbedtls_allocation_failures_read_as_memory(micropython):
    # mbedTLS reports its own failed allocations as error codes (C heap on the ESP32 and unix)
    out = micropython.json("""
        import json
        from kh.http.tlspolicy import Check
        from kh.http import tlsfail
        chk = Check("TlsWithCACheck")
        codes = []
        for err in (-0x7F00, -0x2880, -0x4D80, -0x0010):
            codes.append(tlsfail.classify(chk, OSError(err)).code)
        codes.append(tlsfail.classify(chk, MemoryError()).code)
        codes.append(tlsfail.classify(chk, OSError(-0x7780)).code)  # a real failure: a fatal alert
        print(json.dumps(codes))
    """)
    assert out == ["memory"] * 5 + ["tls_unsupported"]


@pytest.mark.parametrize("target", ["kh.oauth.grant:parse", "kh.store.files:write_atomic"])
def test_rotated_refresh_token_survives_a_memory_error(ts, pki, batch, tmp_path, target):
    """The server rotated the refresh token and will not give it again: a MemoryError while it is
    read or written must not lose it (the chain would be dead)."""
    state = tmp_path / "state"
    state.mkdir()
    d = refresh_definition(ts, pki)
    [r] = batch.run([job("fault", d)], state_dir=state, fault={"target": target, "nth": 1})
    assert r["status"] == 200, r
    assert len(ts.token_requests) == 1
    stored = "".join(p.read_text() for p in state.glob("oauth-*.json"))
    assert ts.current_refresh_token in stored  # durable, as after a fault-free rotation
    # a later run (a reboot: nothing in RAM) redeems the rotated token, accepted by the server
    ts.revoke_access_tokens()
    [r2] = batch.run([job("later", d)], state_dir=state)
    assert r2["status"] == 200, r2
    assert all(json.loads(json.dumps(t.form)).get("refresh_token") != "rt-0" for t in ts.token_requests[1:])
