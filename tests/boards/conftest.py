"""Fixtures of the board tests: one build per board per run, and fake release images."""

from __future__ import annotations

from pathlib import Path

import pytest

import fakeimage
from keyhook import boards
from keyhook.boards import build

from boardtest import HAVE_TRUSTSTORE, ca_select


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """build(board) -> BuildResult, built once per board for the whole run."""
    cache: dict[str, build.BuildResult] = {}

    def get(name: str) -> build.BuildResult:
        if name not in cache:
            out = tmp_path_factory.mktemp(f"build-{name}")
            cache[name] = build.build(boards.load(name), out, select=ca_select(), trust=HAVE_TRUSTSTORE)
        return cache[name]

    return get


@pytest.fixture
def release():
    """release(board) -> bytes of a fake, well-formed MicroPython release image for it."""
    def make(board: boards.Board, **kw) -> bytes:
        return fakeimage.release_image(board.chip, board.image_offset, **kw)
    return make


@pytest.fixture
def board_dir(tmp_path) -> Path:
    return tmp_path
