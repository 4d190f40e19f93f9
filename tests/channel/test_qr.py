"""`keyhook qr`: validation, terminal output and the PNG."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from keyhook.cli.qr import make_qr, qr


def test_qr_prints_and_saves_png(tmp_path):
    out = tmp_path / "label.png"
    result = CliRunner().invoke(qr, ["12345678", "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert "setup code 1234-5678" in result.output
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the symbol encodes exactly the digits
    assert make_qr("1234 5678").matrix == make_qr("12345678").matrix
    assert make_qr("12345678").mode == "numeric"


def test_qr_refuses_a_bad_code_with_a_hint():
    for bad in ("1234567", "123456789", "12a45678"):
        proc = subprocess.run([sys.executable, "-m", "keyhook", "qr", bad], capture_output=True, text=True)
        assert proc.returncode == 2
        assert "is not a setup code" in proc.stderr and "8 decimal digits" in proc.stderr
