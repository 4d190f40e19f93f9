"""The board's serial console: pySerial's miniterm on the port, opened exclusively.

With `reset`, the port is opened first and the board is then reset through the USB-serial
bridge's RTS line (EN) with DTR (GPIO0/BOOT) released, as esptool's hard reset does, so no byte
of the start-up output (and the setup code) is lost.
"""

from __future__ import annotations

import time

from keyhook import KeyhookError
from keyhook.boards import serialport

EXIT_CHAR = chr(0x1D)  # Ctrl-]
RESET_PULSE_S = 0.1


def open_port(port: str, baud: int = 115200):
    """An open, exclusively locked `serial.Serial` on `port` (clear errors when it can't be)."""
    import serial

    serialport.check(port)
    s = serial.Serial()
    s.port = port
    s.baudrate = baud
    s.exclusive = True
    s.timeout = 0.2
    s.dtr = False
    s.rts = False
    try:
        s.open()
    except (serial.SerialException, OSError) as e:
        raise serialport.classify(port, e) from None
    return s


def hard_reset(s) -> bool:
    """Pulse EN low through RTS, with BOOT (DTR) released: a normal boot.

    Returns False when the port has no modem lines to do it with (some adapters, pseudo
    terminals); then only the board's RESET button restarts it.
    """
    try:
        s.dtr = False
        s.rts = True
        time.sleep(RESET_PULSE_S)
        s.rts = False
    except OSError:
        return False
    return True


def run(port: str, baud: int = 115200, reset: bool = False) -> None:
    """Interactive console until Ctrl-]."""
    from serial.tools.miniterm import Miniterm

    s = open_port(port, baud)
    try:
        term = Miniterm(s, echo=False, eol="crlf")
        term.exit_character = EXIT_CHAR
        term.set_rx_encoding("utf-8", errors="replace")
        term.set_tx_encoding("utf-8")
        print(f"--- keyhook console on {port} at {baud} baud; Ctrl-] quits ---", flush=True)
        if reset and not hard_reset(s):
            print("--- this port cannot reset the board: press its RESET (EN) button ---", flush=True)
        term.start()
        try:
            term.join(True)
        except KeyboardInterrupt:
            pass
        term.join()
    except OSError as e:
        raise KeyhookError(f"lost the serial port {port}: {e}", hint="was the board unplugged?") from None
    finally:
        s.close()
