"""Helpers for the end-to-end tests (a module of its own: test files import it by name)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from keyhook.session.device import DeviceClient


# the link time bounds of the `bounded` device (conftest.py); the firmware's are 60 s and 120 s
PREAUTH_MS, IDLE_MS = 4000, 3000


def client(device, keystore) -> DeviceClient:
    return DeviceClient(device.address, radio=str(device.radio), keystore=keystore)


def run(coro):
    return asyncio.run(coro)


def cli(*args: str, radio: Path, config: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The real `keyhook` command line in a subprocess."""
    env = dict(os.environ, KEYHOOK_RADIO=str(radio), KEYHOOK_CONFIG=str(config))
    proc = subprocess.run([sys.executable, "-m", "keyhook", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"keyhook {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


