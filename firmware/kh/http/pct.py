# Percent-encoding of a request target (RFC 3986 section 2.1, 3.3, 3.4): every byte that may
# not stand in a path or query becomes %XX (non-ASCII as its UTF-8 bytes); a "%" that starts a
# %XX escape is left alone, any other "%" becomes %25. Loaded by kh.http.url only for a target
# that needs it.
_HEX = "0123456789ABCDEF"
_PCHAR = "!$&'()*+,;=:@/?-._~"


def _plain(b):
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or chr(b) in _PCHAR


def _is_hex(b):
    return (48 <= b <= 57) or (65 <= b <= 70) or (97 <= b <= 102)


def encode_target(t):
    b = t.encode()
    n = len(b)
    out = bytearray()
    i = 0
    while i < n:
        c = b[i]
        if (c == 37 and i + 2 < n and _is_hex(b[i + 1]) and _is_hex(b[i + 2])) or (c != 37 and _plain(c)):
            out.append(c)
        else:
            out.append(37)
            out.append(ord(_HEX[c >> 4]))
            out.append(ord(_HEX[c & 15]))
        i += 1
    return out.decode()
