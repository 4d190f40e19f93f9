"""Which Bluetooth the host uses: the system adapter, or the virtual radio of simulated devices."""

from __future__ import annotations

import os
from typing import Any


def radio_path(radio: str | os.PathLike | None = None) -> str | None:
    """The virtual radio to use: `radio`, else `KEYHOOK_RADIO`, else None (the adapter)."""
    radio = radio or os.environ.get("KEYHOOK_RADIO")
    return str(radio) if radio else None


def scanner_kwargs(radio: str | os.PathLike | None = None) -> dict[str, Any]:
    """Extra `BleakScanner` arguments for `radio` (none for the system adapter)."""
    path = radio_path(radio)
    if path is None:
        return {}
    from keyhook.sim.bleak_backend import SimBleakScanner

    return {"backend": SimBleakScanner, "radio": path}


def client_kwargs(radio: str | os.PathLike | None = None, mtu: int | None = None, link: Any = None) -> dict[str, Any]:
    """Extra `BleakClient` arguments for `radio` (none for the system adapter).

    `link` is the virtual radio's `LinkModel` (default: `KEYHOOK_RADIO_LINK`).
    """
    path = radio_path(radio)
    if path is None:
        return {}
    from keyhook.sim.bleak_backend import SimBleakClient

    kw: dict[str, Any] = {"backend": SimBleakClient, "radio": path}
    if mtu is not None:
        kw["mtu"] = mtu
    if link is not None:
        kw["link"] = link
    return kw


def where(radio: str | os.PathLike | None = None) -> str:
    """Words for error messages: where the host looked."""
    path = radio_path(radio)
    return f"on the virtual radio {path}" if path else "in range of this host's Bluetooth adapter"


def adapter_hint(radio: str | os.PathLike | None = None) -> str:
    path = radio_path(radio)
    if path:
        return f"start a simulated device on it: `keyhook sim --radio {path}`"
    return ("switch the Bluetooth adapter on (`bluetoothctl power on`), or talk to a simulated device "
            "with `--radio PATH`")


def default_radio() -> str:
    """The virtual radio that `keyhook sim` uses when none is given: one per user, short enough
    for Unix socket paths (`$XDG_RUNTIME_DIR/keyhook-radio`, else `/tmp/keyhook-radio-UID`)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "keyhook-radio")
    return f"/tmp/keyhook-radio-{os.getuid()}"


def live_devices(radio: str | os.PathLike) -> int:
    """How many simulated devices answer on the virtual radio `radio` (stale sockets do not)."""
    import socket
    from pathlib import Path

    n = 0
    try:
        paths = list(Path(radio).glob("*.sock"))
    except OSError:
        return 0
    for p in paths:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(0.5)
        try:
            s.connect(str(p))
            n += 1
        except OSError:
            pass
        finally:
            s.close()
    return n


def choose_radio(radio: str | os.PathLike | None = None) -> tuple[str | None, str]:
    """The radio a BLE command uses, and why: `radio` (`--radio`, `KEYHOOK_RADIO`), else the
    default virtual radio when a simulated device is running on it, else the Bluetooth adapter
    (None)."""
    path = radio_path(radio)
    if path is not None:
        return path, "--radio or KEYHOOK_RADIO"
    default = default_radio()
    if live_devices(default):
        return default, "the default; a simulated device runs on it"
    return None, f"no --radio, KEYHOOK_RADIO or simulated device on {default}"
