"""Helpers shared by the engine tests (imported by name: tests/engine is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keyhook.boards import mp
from keyhook.lab.devpki import DevPKI
from keyhook.lab.receiver import Receiver, server_context

HERE = Path(__file__).resolve().parent
MP_DIR = HERE / "mp"


def definition(url: str, level: str = "TlsWithCACheck", **extra: Any) -> dict:
    """A webhook definition with a body, in the public JSON shape."""
    d = {"method": "Post", "url": url, "securityLevel": level,
         "body": {"contentType": "application/json", "content": {"event": "test"}},
         "timeout": 3000, "authentication": {"apiAuthenticationType": "None"}}
    d.update(extra)
    return d


def refresh_definition(ts, pki) -> dict:
    """A pinned POST to the token server's resource, authenticated by the refresh token rt-0
    that the token server (`ts`, the `ts` fixture of conftest.py) redeems and rotates."""
    return definition(ts.resource_url, "TlsPinnedCertificate", pinnedCertificate=pki.intermediate.pem,
                      authentication={"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                      "refreshToken": "rt-0", "tokenEndpoint": ts.token_url,
                                      "clientId": "keyhook-test"})


def job(case: str, d: dict, **kw: Any) -> dict:
    """One fire in a batch."""
    return {"case": case, "definition": d, **kw}


class Servers:
    """Starts receivers and stops them all at the end of the test."""

    def __init__(self, pki: DevPKI):
        self.pki = pki
        self.started: list[Receiver] = []

    def tls(self, name: str = "leaf", respond=None, chain: bool = True) -> Receiver:
        if name == "leaf_only":  # the leaf without its intermediate: a misconfigured server
            name, chain = "leaf", False
        item = getattr(self.pki, name)
        cert = item.chain_path if chain else item.cert_path
        return self._start(Receiver(tls=server_context(cert, item.key_path), respond=respond))

    def plain(self, respond=None) -> Receiver:
        return self._start(Receiver(respond=respond))

    def _start(self, rx: Receiver) -> Receiver:
        rx.start()
        self.started.append(rx)
        return rx

    def stop(self) -> None:
        for rx in self.started:
            rx.stop()


class Batch:
    """Fires a list of jobs in one MicroPython process; returns the results in order."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.n = 0

    def run(self, jobs: list[dict], *, trust_dir: Path | None = None, state_dir: Path | None = None,
            resolve: dict | None = None, pool_size: int = 1, heapsize: int | None = None,
            timeout: float = 120, firmware: Path | None = None, fault: dict | None = None) -> list[dict]:
        self.n += 1
        cfg = {"trust_dir": str(trust_dir) if trust_dir else None,
               "state_dir": str(state_dir) if state_dir else None,
               "resolve": resolve or {}, "pool_size": pool_size, "jobs": jobs, "fault": fault}
        path = self.tmp_path / f"jobs{self.n}.json"
        path.write_text(json.dumps(cfg))
        proc = mp.run_micropython(MP_DIR / "khbatch.py", [str(path)], heapsize=heapsize, timeout=timeout,
                                  firmware=firmware, cwd=self.tmp_path)
        out = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
        if proc.returncode != 0 or len(out) < sum(j.get("repeat", 1) for j in jobs):
            raise AssertionError(f"micropython exited {proc.returncode}\n--- stdout\n{proc.stdout.decode()}"
                                 f"\n--- stderr\n{proc.stderr.decode()}")
        return out
