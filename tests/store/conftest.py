"""Fixtures of the store tests."""

import pytest

from storehelp import make_cert_pem


@pytest.fixture(scope="session")
def cert_pem() -> str:
    """A self-signed certificate made for this run (PEM), to pin."""
    return make_cert_pem()
