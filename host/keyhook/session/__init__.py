"""The secure channel between this app and a keyhook device (firmware/PROTOCOL.md).

`pair` onboards a device with its setup code (SPAKE2, RFC 9382); `open_session` runs the
forward-secret handshake and returns a `Session` whose `request` carries JSON over encrypted,
authenticated DATA frames. Both run over any `RecordLink` (BLE, or a pipe in tests).
"""

from keyhook.session.errors import (AuthenticationError, AuthFailed, BadFrame, BadRecord, Busy,
                                    ChannelError, DeviceError, DeviceInternal, LinkClosed, LinkTimeout,
                                    LockedOut, NotPaired, PairingClosed, ProtocolError, RateLimited,
                                    RequestFailed, TooLarge, WrongCode)
from keyhook.session.link import RecordLink
from keyhook.session.pairing import check_code, pair
from keyhook.session.session import Session, open_session

__all__ = [
    "AuthenticationError", "AuthFailed", "BadFrame", "BadRecord", "Busy", "ChannelError", "DeviceError",
    "DeviceInternal", "LinkClosed", "LinkTimeout", "LockedOut", "NotPaired", "PairingClosed",
    "ProtocolError", "RateLimited", "RecordLink", "RequestFailed", "Session", "TooLarge", "WrongCode",
    "check_code", "open_session", "pair",
]
