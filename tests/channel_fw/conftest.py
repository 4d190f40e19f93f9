"""Fixtures for the firmware channel tests: the device's channel in a MicroPython process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fwpipe import FirmwarePipe  # noqa: E402

from keyhook.session.keystore import Keystore  # noqa: E402




@pytest.fixture
def fw(tmp_path):
    """Start firmware pipes on stores under tmp_path; all are closed after the test."""
    pipes = []

    def start(store: str = "store", **kw) -> FirmwarePipe:
        p = FirmwarePipe(tmp_path / store, **kw)
        pipes.append(p)
        return p

    yield start
    for p in pipes:
        p.close()


@pytest.fixture
def keystore(tmp_path):
    return Keystore(tmp_path / "keystore")


@pytest.fixture
def make_keystore(tmp_path):
    return lambda name: Keystore(tmp_path / ("keystore-" + name))



