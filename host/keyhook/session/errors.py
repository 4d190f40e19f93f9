"""Exceptions of the secure channel: one per device ERROR code, plus host-side failures.

Every class is a `KeyhookError` whose message says what went wrong and whose hint says what
to do, so the CLI can print it as is.
"""

from __future__ import annotations

from keyhook import KeyhookError


class ChannelError(KeyhookError):
    """Root of every failure of pairing, session set-up or frames."""


class LinkClosed(ChannelError):
    """The link went down (the device disconnected or the transport closed)."""

    def __init__(self, message: str = "the device closed the connection", hint: str | None = None) -> None:
        super().__init__(message, hint or "move closer to the device and try again")


class LinkTimeout(ChannelError):
    """The device did not answer in time."""

    def __init__(self, message: str = "the device did not answer in time", hint: str | None = None) -> None:
        super().__init__(message, hint or "check that the device is powered and in range, then try again")


class ProtocolError(ChannelError):
    """The device sent something this host does not accept (malformed, unexpected, oversized).

    The session or pairing attempt is abandoned; nothing is stored.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint or "try again; if it persists, the device runs an incompatible firmware or "
            "something on the link is altering data",
        )


class AuthenticationError(ChannelError):
    """The device failed to prove what it must prove (setup code or pairing key)."""


class RequestFailed(ChannelError):
    """The device answered a request with `ok: false`."""

    def __init__(self, op: str, code: str, message: str, response: dict) -> None:
        super().__init__(f"the device refused `{op}`: {message or code} ({code})",
                         _REQUEST_HINTS.get(code))
        self.op = op
        self.code = code
        self.response = response


_REQUEST_HINTS: dict[str, str] = {
    "bad_request": "fix the field the message names and send the request again",
    "unknown_op": "update the device firmware or the host tool so that both speak the same operations",
    "not_found": "list what the device holds and use one of those names",
    "invalid_rule": "fix the rule and field the message names; `keyhook` validates rules before pushing them",
    "store_full": "delete rules or logs on the device to make room",
    "busy": "wait a moment and try again",
    "clock_not_set": "set the device's clock first (the `time` operation sends this host's time)",
    "internal": "try again; if it persists, read the device's log over serial",
    "memory": "try again, or push fewer rules at once; `keyhook info` shows the device's heap (size, free, "
              "largest free block); a board with PSRAM leaves far more room",
    "forbidden": "this needs the device's admin app (or, for a rule, the app that stored it); "
                 "`keyhook pairing list ADDRESS` shows which app this is",
}


class DeviceError(ChannelError):
    """The device answered with an ERROR record; it has forgotten the attempt or session."""

    code: int = 0
    name: str = "error"

    def __init__(self, message: str, hint: str | None = None, *, device_message: str = "",
                 retry_after_s: int = 0) -> None:
        super().__init__(message, hint)
        self.device_message = device_message
        self.retry_after_s = retry_after_s


class BadRecord(DeviceError):
    code, name = 1, "bad_record"


class NotPaired(DeviceError):
    code, name = 2, "not_paired"


class WrongCode(DeviceError):
    code, name = 3, "wrong_code"


class RateLimited(DeviceError):
    code, name = 4, "rate_limited"


class LockedOut(DeviceError):
    code, name = 5, "locked_out"


class PairingClosed(DeviceError):
    code, name = 6, "pairing_closed"


class AuthFailed(DeviceError):
    code, name = 7, "auth_failed"


class TooLarge(DeviceError):
    code, name = 8, "too_large"


class Busy(DeviceError):
    code, name = 9, "busy"


class BadFrame(DeviceError):
    code, name = 10, "bad_frame"


class DeviceInternal(DeviceError):
    code, name = 11, "internal"


class UnknownDeviceError(DeviceError):
    name = "unknown"


DEVICE_ERRORS: dict[int, type[DeviceError]] = {
    cls.code: cls
    for cls in (BadRecord, NotPaired, WrongCode, RateLimited, LockedOut, PairingClosed, AuthFailed,
                TooLarge, Busy, BadFrame, DeviceInternal)
}


def device_error(code: int, retry_after_s: int, device_message: str) -> DeviceError:
    """The exception for an ERROR record, with a message and a hint that say what to do."""
    cls = DEVICE_ERRORS.get(code, UnknownDeviceError)
    wait = max(int(retry_after_s), 1)
    table: dict[int, tuple[str, str]] = {
        1: ("the device rejected a malformed record",
            "try again; if it persists, update the host tool and the firmware to the same protocol version"),
        2: ("this app is not paired with the device",
            "pair first with the device's setup code (`keyhook onboard ADDRESS --code CODE`), or ask an admin app to open a "
            "pairing window; remove the stale local pairing if the device was reset"),
        3: ("the setup code is wrong; nothing was stored",
            "check the 8-digit code on the device's label or serial console; failed attempts are "
            "rate limited"),
        4: (f"too many failed pairing attempts; the device refuses pairing for {wait} s",
            f"wait {wait} s, then try again with the right code"),
        5: ("the device is locked out after too many failed pairing attempts",
            "hold the device's button down for 3 s (a simulated device: `keyhook sim press ADDRESS --hold 3`) "
            "or power-cycle it, then pair again with the right code"),
        6: ("the device is already paired and does not accept new apps now",
            "ask an admin app to open a pairing window and pair with the one-time code it shows"),
        7: ("the device could not authenticate this app (the pairing keys differ)",
            "the pairing was probably removed on the device: remove it here and pair again"),
        8: ("the request was too large for the device",
            "send less data per request (at most 8192 bytes of JSON)"),
        9: ("the device is busy with another app",
            "wait until the other app disconnects, then try again"),
        10: ("the device rejected a corrupted, replayed or reordered frame and closed the session",
             "reconnect; if it keeps happening, something on the link is altering data"),
        11: ("the device hit an internal error",
             "try again; if it persists, read the device's log over serial"),
    }
    message, hint = table.get(code, (f"the device reported error {code}",
                                     "update the host tool to match the device firmware"))
    if device_message:
        message = f"{message} (device: {device_message})"
    err = cls(message, hint, device_message=device_message, retry_after_s=retry_after_s)
    err.code = code
    return err
