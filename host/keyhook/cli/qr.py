"""`keyhook qr CODE`: a device's setup code as a QR code, for labels."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import segno

from keyhook import KeyhookError
from keyhook.session.pairing import check_code


def make_qr(code: str) -> segno.QRCode:
    """The QR code of a setup code (8 digits, numeric mode, error correction level M or better)."""
    return segno.make_qr(check_code(code), error="m", boost_error=True)


@click.command()
@click.argument("code")
@click.option("--png", "png", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              default=None, help="Also write the QR code to this PNG file (for printing labels).")
@click.option("--scale", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Pixels per module in the PNG.")
@click.option("--compact/--no-compact", default=False,
              help="Draw the terminal QR code with half-height Unicode blocks (always so into a pipe or file: "
                   "no terminal escapes there).")
def qr(code: str, png: Path | None, scale: int, compact: bool) -> None:
    """Show the setup CODE (8 digits, as printed on the device's serial console) as a QR code."""
    symbol = make_qr(code)
    symbol.terminal(out=sys.stdout, compact=compact or not sys.stdout.isatty())
    digits = check_code(code)
    click.echo(f"setup code {digits[:4]}-{digits[4:]}")
    if png is not None:
        try:
            symbol.save(str(png), kind="png", scale=scale, border=4)
        except OSError as e:
            raise KeyhookError(f"cannot write {png}: {e.strerror}", hint="choose a writable path") from e
        click.echo(f"wrote {png}")
