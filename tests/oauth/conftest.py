"""Fixtures for the OAuth layer's tests: MicroPython runs with the oauth test kit on the path."""

from __future__ import annotations

from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent / "mp"
PRELUDE = "import oauthkit as K\nfrom kh.oauth.tokens import Tokens\n"


class OAuthMP:
    """Runs a snippet under MicroPython with `K` (oauthkit) and `Tokens` imported."""

    def __init__(self, micropython):
        self.mp = micropython

    def json(self, code: str, **kw):
        import textwrap
        return self.mp.json(PRELUDE + textwrap.dedent(code), extra_path=[KIT], **kw)


@pytest.fixture
def mpo(micropython) -> OAuthMP:
    return OAuthMP(micropython)
