# JSON text from outside the device (BLE messages, rule files, token answers) -> objects.
# MicroPython's json turns an escaped surrogate pair (RFC 8259 section 7: "\ud83d\udeaa", as
# CPython's json.dumps and most clients write a character outside the BMP) into two 3-byte
# sequences that are not UTF-8. loads() joins each pair into its one code point and refuses a
# lone surrogate with ValueError. The scan runs only when the text holds a "\ud" escape or an
# 0xED byte (the lead byte of an encoded surrogate), and kh.store.surrogates is loaded only
# then; otherwise it is json.loads.
import json


def _suspect(b):
    if isinstance(b, str):
        return "\\ud" in b or "\\uD" in b
    return b.find(b"\\ud") >= 0 or b.find(b"\\uD") >= 0 or b.find(b"\xed") >= 0


def loads(data, raw=None):
    # data: str, bytes, bytearray or memoryview; raw: the buffer a memoryview looks into (for
    # the scan; a memoryview has no find). Raises ValueError as json.loads does.
    o = json.loads(data)
    b = data if raw is None else raw
    if isinstance(b, memoryview):
        b = bytes(b)
    if _suspect(b):
        from kh.store.surrogates import fix
        o = fix(o)
    return o
