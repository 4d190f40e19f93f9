# JSON text from outside the device (BLE messages, rule files, token answers) -> objects.
# MicroPython's json turns an escaped surrogate pair (RFC 8259 section 7: "\ud83d\udeaa", as
# CPython's json.dumps and most clients write a character outside the BMP) into two 3-byte
# sequences that are not UTF-8. loads() joins each pair into its one code point and refuses a
# lone surrogate with ValueError. The scan runs only when the text holds a "\ud" escape or an
# 0xED byte (the lead byte of an encoded surrogate); otherwise it is json.loads.
import json


def _suspect(b):
    if isinstance(b, str):
        return "\\ud" in b or "\\uD" in b
    return b.find(b"\\ud") >= 0 or b.find(b"\\uD") >= 0 or b.find(b"\xed") >= 0


def _str(s):
    for ch in s:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            break
    else:
        return s
    out = []
    hi = 0
    for ch in s:
        o = ord(ch)
        if hi:
            if not 0xDC00 <= o <= 0xDFFF:
                raise ValueError("lone surrogate in a JSON string")
            out.append(chr(0x10000 + ((hi - 0xD800) << 10) + (o - 0xDC00)))
            hi = 0
        elif 0xD800 <= o <= 0xDBFF:
            hi = o
        elif 0xDC00 <= o <= 0xDFFF:
            raise ValueError("lone surrogate in a JSON string")
        else:
            out.append(ch)
    if hi:
        raise ValueError("lone surrogate in a JSON string")
    return "".join(out)


def _fix(o):
    if isinstance(o, str):
        return _str(o)
    if isinstance(o, list):
        for i in range(len(o)):
            o[i] = _fix(o[i])
    elif isinstance(o, dict):
        for k in list(o):
            v = _fix(o[k])
            k2 = _str(k)
            if k2 is not k:
                del o[k]
            o[k2] = v
    return o


def loads(data, raw=None):
    # data: str, bytes, bytearray or memoryview; raw: the buffer a memoryview looks into (for
    # the scan; a memoryview has no find). Raises ValueError as json.loads does.
    o = json.loads(data)
    b = data if raw is None else raw
    if isinstance(b, memoryview):
        b = bytes(b)
    if _suspect(b):
        o = _fix(o)
    return o
