# ERROR codes of PROTOCOL.md section 2, and the exception that carries one out of a handler.
from micropython import const

BAD_RECORD = const(1)
NOT_PAIRED = const(2)
WRONG_CODE = const(3)
RATE_LIMITED = const(4)
LOCKED_OUT = const(5)
PAIRING_CLOSED = const(6)
AUTH_FAILED = const(7)
TOO_LARGE = const(8)
BUSY = const(9)
BAD_FRAME = const(10)
INTERNAL = const(11)

NAMES = {
    1: "bad_record",
    2: "not_paired",
    3: "wrong_code",
    4: "rate_limited",
    5: "locked_out",
    6: "pairing_closed",
    7: "auth_failed",
    8: "too_large",
    9: "busy",
    10: "bad_frame",
    11: "internal",
}


class ChannelError(Exception):
    def __init__(self, code, message, retry_after_s=0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
