# keyhook oauth: application/x-www-form-urlencoded bodies (RFC 6749 appendix B).
# Unreserved characters pass, a space becomes "+", every other byte of the UTF-8 form is %XX.

_HEX = b"0123456789ABCDEF"


def _put(out, s):
    if isinstance(s, str):
        s = s.encode()
    for c in s:
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c in b"-._~":
            out.append(c)
        elif c == 32:
            out.append(43)
        else:
            out.append(37)
            out.append(_HEX[c >> 4])
            out.append(_HEX[c & 15])


def encode(pairs):
    # pairs: [(name, value), ...] with str or bytes; returns bytes.
    out = bytearray()
    for name, value in pairs:
        if out:
            out.append(38)
        _put(out, name)
        out.append(61)
        _put(out, value)
    return bytes(out)
