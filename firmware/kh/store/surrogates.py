# Surrogate code points in decoded JSON strings (see kh.store.jsontext, the only user): each
# high-low pair becomes its one code point (RFC 8259 section 7); a lone one is a ValueError.


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


def fix(o):
    if isinstance(o, str):
        return _str(o)
    if isinstance(o, list):
        for i in range(len(o)):
            o[i] = fix(o[i])
    elif isinstance(o, dict):
        for k in list(o):
            v = fix(o[k])
            k2 = _str(k)
            if k2 is not k:
                del o[k]
            o[k2] = v
    return o
