"""`keyhook console`: opens the port exclusively; a missing or busy port is a clear error."""

from __future__ import annotations

import os

import pytest
import serial

from keyhook import KeyhookError
from keyhook.boards import console as kconsole
from keyhook.cli import main


def test_missing_port(capsys):
    with pytest.raises(SystemExit) as e:
        main(["console", "--port", "/dev/ttyKEYHOOK-NONE"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "does not exist" in err and "hint:" in err


def test_busy_port():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    holder = serial.Serial(name, exclusive=True)
    try:
        with pytest.raises(KeyhookError, match="is busy"):
            kconsole.open_port(name)
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_console_shows_what_the_board_prints():
    # The board side of a pseudo terminal prints; the console's port reads it.
    master, slave = os.openpty()
    s = kconsole.open_port(os.ttyname(slave))
    try:
        os.write(master, b"keyhook setup code: 1234 5678\r\n")
        assert b"1234 5678" in s.read_until(b"\n")
        # Once open, nobody else gets the port.
        with pytest.raises(KeyhookError, match="is busy"):
            kconsole.open_port(os.ttyname(slave))
    finally:
        s.close()
        os.close(master)
        os.close(slave)


def test_reset_without_modem_lines_says_so():
    master, slave = os.openpty()
    s = kconsole.open_port(os.ttyname(slave))
    try:
        assert kconsole.hard_reset(s) is False  # a pseudo terminal has no RTS line
    finally:
        s.close()
        os.close(master)
        os.close(slave)
