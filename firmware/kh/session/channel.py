# One BLE connection: the pairing flow (SPAKE2), the session handshake (X25519 authenticated by
# the pairing key) and DATA frames, as in PROTOCOL.md sections 2 to 5. receive() never raises
# on hostile input: every failure becomes an ERROR record and closes the channel, forgetting
# the pairing attempt or session of this connection.
from hashlib import sha256

from micropython import const

from kh.crypto import ct, x25519
from kh.crypto.hmac import hkdf, hmac_sha256
from kh.session import errors, frames
from kh.session.errors import ChannelError

PAIR_REQ = const(0x01)
PAIR_A = const(0x02)
PAIR_B = const(0x03)
PAIR_OK = const(0x04)
HELLO = const(0x10)
HELLO_DEV = const(0x11)
HELLO_APP = const(0x12)
DATA = const(0x20)
ERROR = const(0x7F)

_IDLE = const(0)
_PAIRING = const(1)
_HELLO = const(2)
_SESSION = const(3)
_CLOSED = const(4)

_MAX_ID = const(64)
_MAX_MESSAGE = const(200)
_APP_PREFIX = b"keyhook-app:"
_HEX = b"0123456789abcdef"

PAIR_AAD = b"keyhook-pair-v1"
_W_SALT = b"keyhook-spake2-w-v1"
_PK_SALT = b"keyhook-pairing-key-v1"
_SESSION_LABEL = b"keyhook-session-v2"
_KEYS_INFO = b"keyhook-session-keys-v1"


def u8len(x):
    return bytes((len(x),)) + x


def derive_w(code, idA, idB):
    ikm = code.encode() if isinstance(code, str) else code
    return int.from_bytes(hkdf(_W_SALT, ikm, u8len(idA) + u8len(idB), 40), "big")


def pairing_key(Ke, idA, idB):
    return hkdf(_PK_SALT, Ke, u8len(idA) + u8len(idB), 32)


def error_record(code, message="", retry_after_s=0):
    m = message.encode()[:_MAX_MESSAGE]
    return bytes((ERROR, code, (retry_after_s >> 8) & 0xFF, retry_after_s & 0xFF)) + m


def _app_identity(record, start):
    # u8len(B) at record[start:] -> (B, app_id, end offset)
    if len(record) <= start:
        raise ChannelError(errors.BAD_RECORD, "record too short")
    n = record[start]
    end = start + 1 + n
    if n > _MAX_ID or len(record) < end:
        raise ChannelError(errors.BAD_RECORD, "bad app identity length")
    b = bytes(record[start + 1 : end])
    app_id = b[len(_APP_PREFIX) :]
    if not b.startswith(_APP_PREFIX) or len(app_id) != 32 or any(c not in _HEX for c in app_id):
        raise ChannelError(errors.BAD_RECORD, "app identity is not keyhook-app:<32 hex digits>")
    return b, app_id.decode(), end


def _unload_pairing():
    import kh

    kh.unload("kh.crypto.spake2", "kh.crypto.p256", "kh.crypto.p256tab")


class Channel:
    def __init__(self, device):
        self.device = device
        self.closed = False
        self.app_id = None
        self.error = None  # the ERROR code that closed the channel
        self._state = _IDLE
        self._forget()

    def _forget(self):
        if getattr(self, "_spake", None) is not None:
            self.device.limit.abandoned()  # its P-256 work was for nothing: rate limited
            _unload_pairing()
        self._spake = None
        self._pair_app = None
        self._pair_id = None
        self._via_window = False
        self._th = None
        self._ss = None
        self._rx = None
        self._tx = None
        self.app_id = None

    def _drop_spake(self):
        self._spake = None
        _unload_pairing()

    @property
    def pairing(self):
        # a pairing attempt is under way (PAIR_A sent)
        return self._spake is not None

    def close(self):
        self._forget()
        self._state = _CLOSED
        self.closed = True

    async def receive(self, record):
        if self.closed:
            return [], None
        try:
            return self._receive(record)
        except ChannelError as e:
            return [self._fail(e.code, e.message, e.retry_after_s)], None
        except MemoryError:
            return [self._fail(errors.INTERNAL, "out of memory")], None
        except Exception as e:  # a bug must not leave a half-open session behind
            return [self._fail(errors.INTERNAL, "internal error: %s" % type(e).__name__)], None

    def _fail(self, code, message, retry_after_s=0):
        self.close()
        self.error = code
        return error_record(code, message, retry_after_s)

    def _receive(self, record):
        n = len(record)
        if n == 0:
            raise ChannelError(errors.BAD_RECORD, "empty record")
        if n > frames.MAX_RECORD:
            raise ChannelError(errors.BAD_RECORD, "record over %d bytes" % frames.MAX_RECORD)
        t = record[0]
        st = self._state
        if t == DATA and st == _SESSION:
            return [], self._data(record)
        if t == PAIR_REQ and st == _IDLE:
            return [self._pair_req(record)], None
        if t == PAIR_B and st == _PAIRING:
            return [self._pair_b(record)], None
        if t == HELLO and st == _IDLE:
            return [self._hello(record)], None
        if t == HELLO_APP and st == _HELLO:
            self._hello_app(record)
            return [], None
        raise ChannelError(errors.BAD_RECORD, "unexpected record type 0x%02x" % t)

    # -- pairing

    def _limit(self):
        code, retry = self.device.limit.check()
        if code == errors.LOCKED_OUT:
            raise ChannelError(code, "too many wrong codes: hold the device's button for 3 s or power cycle it")
        if code:
            raise ChannelError(code, "too many wrong codes: try again in %d s" % retry, retry)

    def _pair_req(self, record):
        b, app_id, end = _app_identity(record, 1)
        if end != len(record):
            raise ChannelError(errors.BAD_RECORD, "PAIR_REQ length")
        self._limit()
        code, via_window = self.device.pairing_code()
        if code is None:
            raise ChannelError(errors.PAIRING_CLOSED, "device is paired: an admin app must open a pairing window")
        if self.device.pairing_key(app_id) is not None:
            # an identity is only asserted here: it never replaces the pairing that holds it
            raise ChannelError(errors.PAIRING_CLOSED, "this app is paired already: unpair it first, or ask the "
                               "admin app to remove its pairing")
        a = self.device.identity
        from kh.crypto.spake2 import Spake2  # P-256 and its tables: only while pairing

        self._spake = Spake2("A", derive_w(code, a, b), a, b, PAIR_AAD)
        self._pair_app = app_id
        self._pair_id = b
        self._via_window = via_window
        self._state = _PAIRING
        return bytes((PAIR_A,)) + u8len(a) + self._spake.share

    def _pair_b(self, record):
        if len(record) != 1 + 65 + 32:
            raise ChannelError(errors.BAD_RECORD, "PAIR_B length")
        try:
            self._limit()
        except ChannelError:
            self._drop_spake()  # the failure delay covers this attempt already
            raise
        try:
            ke, c_a, c_b = self._spake.finish(bytes(record[1:66]))
        except ValueError:
            raise ChannelError(errors.BAD_RECORD, "pB is not a valid P-256 point")
        if not ct.equal(c_b, record[66:98]):
            self.device.limit.failed()
            self._drop_spake()  # counted as a failure, not as abandoned
            raise ChannelError(errors.WRONG_CODE, "wrong setup code")
        pk = pairing_key(ke, self.device.identity, self._pair_id)
        try:
            self.device.add_pairing(self._pair_app, pk, self._via_window)
        except ValueError:
            raise ChannelError(errors.PAIRING_CLOSED, "this app is paired already")
        self._spake = None
        _unload_pairing()
        self._pair_app = None
        self._pair_id = None
        self._state = _IDLE
        return bytes((PAIR_OK,)) + c_a

    # -- session handshake

    def _hello(self, record):
        # HELLO names no app (PROTOCOL.md section 4): every HELLO gets the same answer, and the
        # app is found at HELLO_APP by the pairing key its MAC was made with
        if len(record) != 33:
            raise ChannelError(errors.BAD_RECORD, "HELLO length")
        e_a = bytes(record[1:33])
        sk, e_d = x25519.keypair()
        ss = x25519.x25519(sk, e_a)
        sk = None
        if ss == bytes(32):
            raise ChannelError(errors.BAD_RECORD, "eA is a low-order point")
        a = self.device.identity
        self._th = sha256(_SESSION_LABEL + u8len(a) + e_a + e_d).digest()
        self._ss = ss
        self._state = _HELLO
        return bytes((HELLO_DEV,)) + u8len(a) + e_d

    def _hello_app(self, record):
        if len(record) != 33:
            raise ChannelError(errors.BAD_RECORD, "HELLO_APP length")
        mac = record[1:33]
        th = self._th
        app_id = pk = None
        # every stored key is tried, whatever matched before: the time taken tells nothing
        for aid in self.device.pairings():
            k = self.device.pairing_key(aid)
            if ct.equal(hmac_sha256(k, b"app", th), mac) and app_id is None:
                app_id, pk = aid, k
        if app_id is None:
            raise ChannelError(errors.AUTH_FAILED, "session authentication failed")
        okm = hkdf(th, self._ss + pk, _KEYS_INFO, 128)
        self._th = self._ss = None
        self._rx = frames.Direction(okm[0:32], okm[32:64])
        self._tx = frames.Direction(okm[64:96], okm[96:128])
        self.app_id = app_id
        self._state = _SESSION

    # -- DATA

    def _data(self, record):
        if self.device.pairing_key(self.app_id) is None:
            raise ChannelError(errors.NOT_PAIRED, "this app's pairing was removed")
        return frames.decode_payload(self._rx.open(record))

    def seal(self, obj):
        if self._state != _SESSION:
            raise ValueError("no session")
        return frames.seal_message(self._tx, obj)
