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
