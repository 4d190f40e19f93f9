"""Fixtures for the request-engine tests: a per-run PKI, recording servers, and a runner that
fires many definitions in one MicroPython process (the real firmware engine, real mbedTLS)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from keyhook.lab.devpki import DevPKI, make_pki
from keyhook.rules.truststore import write_trust_store
from kh_engine_helpers import Batch, Servers


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> DevPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def trust_dir(pki, tmp_path_factory) -> Path:
    """A device trust store holding the test root only."""
    d = tmp_path_factory.mktemp("trust")
    write_trust_store([pki.root.der], d)
    return d


@pytest.fixture
def servers(pki) -> Iterator[Servers]:
    s = Servers(pki)
    yield s
    s.stop()


@pytest.fixture
def batch(tmp_path) -> Batch:
    return Batch(tmp_path)


@pytest.fixture
def ts(pki):
    """A local OAuth token server on 127.0.0.1 that rotates refresh token rt-0 at each use."""
    from keyhook.lab import tokenserver

    with tokenserver.TokenServer(refresh_token="rt-0", rotate=True, expires_in=3600,
                                 certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as s:
        yield s
