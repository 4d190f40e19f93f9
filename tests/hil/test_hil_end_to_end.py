"""The end-to-end scenario on a real board, through the `keyhook` command line only:

1. put the firmware on the board: `keyhook flash --erase --micropython` (KEYHOOK_HIL_MICROPYTHON)
   or `keyhook deploy`, with the per-run test root added to the trust store;
2. read the setup code from the serial console after a reset;
3. `keyhook onboard`, `keyhook time`, `keyhook wifi`;
4. one rule per security level, each aimed at its own server bound to --hil-host only
   (TlsWithCACheck, TlsPinnedCertificate with a CA pin and with a leaf pin, TlsAllowSelfSigned,
   AllowHttp), pushed with `keyhook rules push`;
5. `keyhook trigger` each, and check what each server received: exactly the defined request,
   and for a wrong pin, nothing at all.

It cannot run without a board (see conftest.py); every step states what it needs.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from keyhook.boards import console as kconsole
from keyhook.lab.devpki import make_pki
from keyhook.lab.receiver import Receiver, server_context

pytestmark = pytest.mark.hil

SETUP_CODE = re.compile(rb"setup code (\d{8})")
BOOT_TIMEOUT_S = 30


def keyhook(*args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would; fail with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "keyhook", *args], capture_output=True, text=True,
                          input=input, timeout=timeout)
    assert proc.returncode == 0, f"keyhook {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


class LanReceiver(Receiver):
    """keyhook.lab.receiver.Receiver, bound to the one LAN address given (never a wildcard)."""

    def __init__(self, host: str, **kw):
        super().__init__(**kw)
        self._sock.close()
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.host = host

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return super().url(path, host or self.host)


def read_setup_code(port: str) -> str:
    """Reset the board and read its setup code from the serial console."""
    s = kconsole.open_port(port)
    try:
        kconsole.hard_reset(s)
        seen = b""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            seen += s.read(256)
            m = SETUP_CODE.search(seen)
            if m:
                return m.group(1).decode()
        pytest.fail(f"no setup code on the console within {BOOT_TIMEOUT_S} s; it printed:\n"
                    f"{seen.decode(errors='replace')[-2000:]}")
    finally:
        s.close()


def rule(name: str, url: str, level: str, pin: str | None = None) -> dict:
    d = {"method": "Post", "url": url, "securityLevel": level, "timeout": 5000,
         "body": {"contentType": "application/json", "content": json.dumps({"rule": name})},
         "additionalHttpHeaders": {"X-Keyhook-Hil": name},
         "authentication": {"apiAuthenticationType": "None"}}
    if pin:
        d["pinnedCertificate"] = pin
    return {"integrationName": "keyhook HIL", "locationName": "bench", "functionName": name, "definition": d}


def test_flash_onboard_push_trigger_every_level(hil, tmp_path):
    port, ble, host = hil["port"], hil["ble"], hil["host"]
    pki = make_pki(tmp_path / "pki", hosts=(host,))
    bundle = tmp_path / "trust.pem"
    bundle.write_text(pki.root.pem)

    # 1. Firmware on the board; the test root is the trust store (built from this bundle).
    board_args = ["--board", hil["board"]] if hil["board"] else []
    if hil["micropython"]:
        keyhook("flash", *(board_args or ["--board", "ESP32_GENERIC"]), "--port", port, "--erase",
                "--micropython", hil["micropython"], "--ca-bundle", str(bundle), timeout=600)
    else:
        keyhook("deploy", "--port", port, *board_args, "--ca-bundle", str(bundle), timeout=600)

    # 2-3. Setup code from the console, then onboarding and settings over BLE.
    code = read_setup_code(port)
    keyhook("onboard", ble, "--code", code)
    keyhook("time", ble)
    keyhook("wifi", ble, "--ssid", hil["ssid"], "--password", hil["password"])

    # 4. One server per level, on the LAN address only.
    servers = {
        "ca-check": LanReceiver(host, tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)),
        "pin-ca": LanReceiver(host, tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)),
        "pin-leaf": LanReceiver(host, tls=server_context(pki.self_signed.cert_path, pki.self_signed.key_path)),
        "pin-wrong": LanReceiver(host, tls=server_context(pki.unrelated_leaf.chain_path, pki.unrelated_leaf.key_path)),
        "self-signed": LanReceiver(host, tls=server_context(pki.self_signed.cert_path, pki.self_signed.key_path)),
        "http": LanReceiver(host),
    }
    for s in servers.values():
        s.start()
    try:
        rules = [
            rule("ca-check", servers["ca-check"].url("/ca"), "TlsWithCACheck"),
            rule("pin-ca", servers["pin-ca"].url("/pin-ca"), "TlsPinnedCertificate", pki.intermediate.pem),
            rule("pin-leaf", servers["pin-leaf"].url("/pin-leaf"), "TlsPinnedCertificate", pki.self_signed.pem),
            rule("pin-wrong", servers["pin-wrong"].url("/pin-wrong"), "TlsPinnedCertificate", pki.intermediate.pem),
            rule("self-signed", servers["self-signed"].url("/self"), "TlsAllowSelfSigned"),
            rule("http", servers["http"].url("/plain"), "AllowHttp"),
        ]
        path = tmp_path / "rules.json"
        path.write_text(json.dumps(rules))
        keyhook("rules", "push", ble, str(path), "--no-check-pins")
        listed = json.loads(keyhook("rules", "list", ble, "--json").stdout)
        assert {r["name"] for r in listed} >= {r["functionName"] for r in rules}

        # 5. Trigger each; check what arrived.
        results = {}
        for r in rules:
            proc = subprocess.run([sys.executable, "-m", "keyhook", "trigger", ble, r["functionName"], "--json"],
                                  capture_output=True, text=True, timeout=120)
            results[r["functionName"]] = (proc.returncode, proc.stdout)
        for s in servers.values():
            s.settle(timeout_s=10)
        for name in ("ca-check", "pin-ca", "pin-leaf", "self-signed", "http"):
            reqs = servers[name].requests
            assert len(reqs) == 1, f"{name}: the server got {len(reqs)} requests ({results[name]})"
            req = reqs[0]
            assert req.method == "POST"
            assert req.header("X-Keyhook-Hil") == name
            assert req.header("Content-Type") == "application/json"
            assert json.loads(req.body) == {"rule": name}
        # A pin that does not match: the device must not send a single byte of the request.
        assert servers["pin-wrong"].received == b"", "the device sent data to a server that failed the pin"
        assert results["pin-wrong"][0] != 0
        assert "pin" in results["pin-wrong"][1]
    finally:
        for s in servers.values():
            s.stop()
        subprocess.run([sys.executable, "-m", "keyhook", "unpair", ble], capture_output=True, timeout=60)
