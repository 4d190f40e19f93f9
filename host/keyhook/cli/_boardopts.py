"""Options shared by `keyhook build`, `image`, `flash` and `deploy` (board, flash size, trust store)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from keyhook.boards import parse_size

BOARD_HELP = ("Board: ESP32_GENERIC, ESP32_GENERIC_S3, ESP32_GENERIC_C3, ESP32_GENERIC-SPIRAM, "
              "ESP32_GENERIC_S3-SPIRAM_OCT (or a folder holding a board.json).")


def flash_size_arg(value: str | None) -> int | None:
    return None if value is None else parse_size(value)


def trust_options(f: Callable) -> Callable:
    """--ca-bundle, --ca (repeatable), --no-trust, --flash-size."""
    f = click.option("--flash-size", default=None, metavar="SIZE",
                     help="The module's flash size when it is not the board's default (e.g. 8MB); "
                          "MicroPython's file system fills the flash after 2 MiB.")(f)
    f = click.option("--no-trust", is_flag=True, help="Build without a CA trust store.")(f)
    f = click.option("--ca", "select", multiple=True, metavar="PATTERN",
                     help="Only the roots whose subject contains PATTERN (or matches it as a glob, or "
                          "whose DER SHA-256 it is); repeatable. Default: every root of the bundle.")(f)
    f = click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
                     help="PEM CA bundle for the trust store (default: certifi's, Mozilla's roots).")(f)
    return f


def build_kw(ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool) -> dict:
    return {"bundle": ca_bundle, "select": list(select), "trust": not no_trust}
