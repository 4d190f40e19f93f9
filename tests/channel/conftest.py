"""Fixtures for the channel tests: a keystore in a temporary config directory."""

from __future__ import annotations

import pytest

from keyhook.session.keystore import Keystore


@pytest.fixture
def keystore(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYHOOK_CONFIG", str(tmp_path / "config"))
    return Keystore()


@pytest.fixture
def make_keystore(tmp_path):
    n = iter(range(1000))
    return lambda: Keystore(tmp_path / f"app{next(n)}")
