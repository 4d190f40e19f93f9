"""Hardware in the loop: every test here needs a real board, and is skipped, saying why, without.

    make hil PORT=/dev/ttyUSB0 BLE=AA:BB:CC:DD:EE:FF HIL_HOST=192.168.1.20
    .venv/bin/python -m pytest tests/hil -rs --port=/dev/ttyUSB0 --ble-address=AA:BB:... --hil-host=192.168.1.20

Options (from tests/conftest.py): --port (the board's serial port), --ble-address (its BLE
address as this host's adapter sees it), --hil-host (this host's LAN address that the board
can reach: the test servers bind to it, and only to it).

Environment, for what pytest options cannot carry here:
- KEYHOOK_HIL_BOARD: the board (default: read from the device, else ESP32_GENERIC);
- KEYHOOK_HIL_MICROPYTHON: a MicroPython release .bin; when set, the board is erased and flashed
  with it (`keyhook flash --erase`), else the files are updated with `keyhook deploy`;
- KEYHOOK_HIL_SSID / KEYHOOK_HIL_PASSWORD: the Wi-Fi network the board joins (required: the
  board must reach --hil-host).
"""

from __future__ import annotations

import ipaddress
import os

import pytest


def _missing(config) -> list[str]:
    why = []
    if not config.getoption("--port", default=""):
        why.append("--port (the board's serial port)")
    if not config.getoption("--ble-address", default=""):
        why.append("--ble-address (the board's BLE address)")
    if not config.getoption("--hil-host", default=""):
        why.append("--hil-host (this host's LAN address the board can reach)")
    if not os.environ.get("KEYHOOK_HIL_SSID"):
        why.append("KEYHOOK_HIL_SSID (the Wi-Fi network the board joins)")
    return why


@pytest.fixture(autouse=True)
def _needs_a_board(request):
    """Skip every HIL test, with the reason, unless a board and a LAN address are given."""
    why = _missing(request.config)
    if why:
        pytest.skip("hardware in the loop needs a real board; missing: " + ", ".join(why))


@pytest.fixture(scope="session")
def hil(pytestconfig):
    """The board and network under test."""
    host = pytestconfig.getoption("--hil-host", default="")
    if host:
        addr = ipaddress.ip_address(host)
        if addr.is_unspecified or addr.is_multicast:
            pytest.fail(f"--hil-host {host}: give this host's own LAN address, not a wildcard")
    return {
        "port": pytestconfig.getoption("--port", default=""),
        "ble": pytestconfig.getoption("--ble-address", default=""),
        "host": host,
        "board": os.environ.get("KEYHOOK_HIL_BOARD") or None,
        "micropython": os.environ.get("KEYHOOK_HIL_MICROPYTHON") or None,
        "ssid": os.environ.get("KEYHOOK_HIL_SSID", ""),
        "password": os.environ.get("KEYHOOK_HIL_PASSWORD", ""),
    }
