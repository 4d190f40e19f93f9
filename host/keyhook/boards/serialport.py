"""The serial port a board is on: checked before esptool, mpremote or the console touch it.

A missing port, a port another program holds, and a port this user may not open each get their
own clear error. "Busy" is tested the way esptool itself opens a port: pySerial with
`exclusive=True` (an advisory `flock` on POSIX), so a console, mpremote or another keyhook
that has the port open is reported before anything is sent to the board.
"""

from __future__ import annotations

import errno
import os
import sys

from keyhook import KeyhookError

_LIST_HINT = ("plug the board in with a data USB cable; list the ports with "
              "`python -m serial.tools.list_ports` (Linux: /dev/ttyUSB0 or /dev/ttyACM0, "
              "macOS: /dev/cu.usbserial-*, Windows: COM3...)")


def _is_url(port: str) -> bool:
    return "://" in port


def missing(port: str) -> KeyhookError:
    return KeyhookError(f"serial port {port} does not exist", hint=_LIST_HINT)


def busy(port: str) -> KeyhookError:
    return KeyhookError(
        f"serial port {port} is busy: another program has it open",
        hint="close the other program (a serial console such as `keyhook console`, screen, "
             "minicom, mpremote, Thonny, or another keyhook/esptool run) and try again",
    )


def denied(port: str) -> KeyhookError:
    hint = ("add yourself to the dialout group (`sudo usermod -aG dialout $USER`, then log in "
            "again)" if sys.platform.startswith("linux") else "check the port's permissions")
    return KeyhookError(f"permission denied opening serial port {port}", hint=hint)


def classify(port: str, exc: BaseException) -> KeyhookError:
    """Turn a pySerial/OS error from opening `port` into a clear KeyhookError."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or "No such file" in text or "FileNotFoundError" in text:
        return missing(port)
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower() \
            or "Access is denied" in text:
        return busy(port)
    if code == errno.EACCES or "Permission denied" in text:
        return denied(port)
    return KeyhookError(f"cannot open serial port {port}: {text}", hint=_LIST_HINT)


def check(port: str) -> None:
    """Raise a KeyhookError unless `port` exists and no other program holds it.

    Opens the port exclusively for a moment (without touching DTR/RTS where the platform
    allows, so the board is not reset) and closes it again.
    """
    if not port:
        raise KeyhookError("no serial port given", hint="pass --port, e.g. --port /dev/ttyUSB0")
    if _is_url(port):
        return  # rfc2217:// and socket:// ports: the tool itself reports failures
    if not sys.platform.startswith("win") and not os.path.exists(port):
        raise missing(port)
    import serial

    s = serial.Serial()
    s.port = port
    s.exclusive = True
    s.dsrdtr = False
    s.rtscts = False
    try:
        s.open()
    except (serial.SerialException, OSError) as e:
        raise classify(port, e) from None
    finally:
        try:
            s.close()
        except Exception:  # closing a port that never opened
            pass
