"""The demo's local world and its sample rule type: PKI, trust store, recording servers, state
directory (used by `keyhook.lab.demo` and `keyhook.lab.demo_ble`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from keyhook.lab.devpki import DevPKI, make_pki
from keyhook.lab.receiver import Receiver, Respond, server_context
from keyhook.rules.truststore import write_trust_store


@dataclass
class Rule:
    """One sample rule: a webhook object plus what the demo expects and where it lands."""

    title: str
    webhook: dict
    expect: str  # "accepted" or an error code
    server: str  # key into Stage.servers ("" if it must never reach one)
    marker: str  # unique path segment, to find what the server received

    @property
    def definition(self) -> dict:
        return self.webhook["definition"]


@dataclass
class Stage:
    """The local world the demo fires into: PKI, trust store, servers, state directory."""

    workdir: Path | None = None
    pki: DevPKI | None = None
    trust_dir: Path | None = None
    state_dir: Path | None = None
    servers: dict[str, object] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "Stage":
        self._tmp = tempfile.TemporaryDirectory(prefix="keyhook-demo-")
        self.workdir = Path(self._tmp.name)
        self.pki = make_pki(self.workdir / "pki")
        self.trust_dir = self.workdir / "trust"
        write_trust_store([self.pki.root.der], self.trust_dir)
        self.state_dir = self.workdir / "state"
        self.state_dir.mkdir()
        self.servers = start_servers(self.pki)
        return self

    def __exit__(self, *exc) -> None:
        for s in self.servers.values():
            s.stop()
        if self._tmp:
            self._tmp.cleanup()


def start_servers(pki: DevPKI) -> dict[str, object]:
    """Recording receivers (CA-signed HTTPS, self-signed HTTPS, plain HTTP) and a token server."""
    from keyhook.lab.tokenserver import TokenServer

    servers: dict[str, object] = {
        "https": Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path), respond=Respond(body=b'{"ok":true}')),
        "self-signed": Receiver(tls=server_context(pki.self_signed.cert_path, pki.self_signed.key_path)),
        "http": Receiver(respond=Respond(status=204, body=b"")),
    }
    for s in servers.values():
        s.start()
    servers["oauth"] = TokenServer(refresh_token="demo-refresh-0", rotate=True, expires_in=3600,
                                   certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path).start()
    return servers
