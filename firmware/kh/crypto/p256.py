# NIST P-256 over big integers: Jacobian coordinates (a = -3), 4-bit fixed windows, cached
# tables for fixed bases, SEC1 uncompressed encoding. Points outside this module are affine
# tuples (x, y), or None for the identity.
# Big-integer arithmetic is not constant time. The windows do the same additions whatever the
# digits (a zero digit adds to a discarded point); what is left to leak is the operands' sizes,
# under the radio link's jitter.

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def on_curve(pt):
    if pt is None:
        return False
    x, y = pt
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x - 3 * x + B)) % P == 0


def decode(data):
    # SEC1 uncompressed; raises ValueError unless it is a point of the curve (never identity)
    if len(data) != 65 or data[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    pt = (int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:65], "big"))
    if not on_curve(pt):
        raise ValueError("point not on P-256")
    return pt


def encode(pt):
    if pt is None:
        raise ValueError("identity has no encoding")
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def decompress(data):
    # SEC1 compressed (02/03 || x); for the RFC's constants M and N
    x = int.from_bytes(data[1:33], "big")
    y = pow((x * x * x - 3 * x + B) % P, (P + 1) >> 2, P)
    if (y & 1) != (data[0] & 1):
        y = P - y
    pt = (x, y)
    if len(data) != 33 or data[0] not in (2, 3) or not on_curve(pt):
        raise ValueError("bad compressed point")
    return pt


# Jacobian points are lists [X, Y, Z]; Z == 0 is the identity.


def _dbl(X1, Y1, Z1):
    # dbl-2001-b, a = -3
    if Z1 == 0 or Y1 == 0:
        return 0, 1, 0
    p = P
    delta = Z1 * Z1 % p
    gamma = Y1 * Y1 % p
    beta = X1 * gamma % p
    alpha = 3 * (X1 - delta) * (X1 + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    Z3 = ((Y1 + Z1) * (Y1 + Z1) - gamma - delta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return X3, Y3, Z3


def _madd(X1, Y1, Z1, x2, y2):
    # madd-2007-bl: Jacobian + affine
    if Z1 == 0:
        return x2, y2, 1
    p = P
    Z1Z1 = Z1 * Z1 % p
    U2 = x2 * Z1Z1 % p
    S2 = y2 * Z1 * Z1Z1 % p
    H = (U2 - X1) % p
    r = 2 * (S2 - Y1) % p
    if H == 0:
        if r == 0:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    HH = H * H % p
    I = 4 * HH % p
    J = H * I % p
    V = X1 * I % p
    X3 = (r * r - J - 2 * V) % p
    Y3 = (r * (V - X3) - 2 * Y1 * J) % p
    Z3 = ((Z1 + H) * (Z1 + H) - Z1Z1 - HH) % p
    return X3, Y3, Z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    # add-2007-bl: Jacobian + Jacobian
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    p = P
    Z1Z1 = Z1 * Z1 % p
    Z2Z2 = Z2 * Z2 % p
    U1 = X1 * Z2Z2 % p
    U2 = X2 * Z1Z1 % p
    S1 = Y1 * Z2 * Z2Z2 % p
    S2 = Y2 * Z1 * Z1Z1 % p
    H = (U2 - U1) % p
    r = 2 * (S2 - S1) % p
    if H == 0:
        if r == 0:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    I = 4 * H * H % p
    J = H * I % p
    V = U1 * I % p
    X3 = (r * r - J - 2 * V) % p
    Y3 = (r * (V - X3) - 2 * S1 * J) % p
    Z3 = ((Z1 + Z2) * (Z1 + Z2) - Z1Z1 - Z2Z2) * H % p
    return X3, Y3, Z3


def _to_affine(X, Y, Z):
    if Z == 0:
        return None
    zi = pow(Z, P - 2, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _table(pt):
    # [None, 1*pt, ..., 15*pt] in affine form, with one inversion (Montgomery's trick)
    jac = [(pt[0], pt[1], 1)]
    for _ in range(14):
        X, Y, Z = jac[-1]
        jac.append(_madd(X, Y, Z, pt[0], pt[1]))
    # a multiple of a point of prime order n is never the identity below n
    acc = [1] * 15
    run = 1
    for i in range(15):
        acc[i] = run
        run = run * jac[i][2] % P
    inv = pow(run, P - 2, P)
    out = [None] * 16
    for i in range(14, -1, -1):
        X, Y, Z = jac[i]
        zi = inv * acc[i] % P
        inv = inv * Z % P
        zi2 = zi * zi % P
        out[i + 1] = (X * zi2 % P, Y * zi2 * zi % P)
    return out


_tables = {}


def _pack(table):
    # 15 affine points as one bytes object of 960 bytes: one long-lived allocation instead of
    # 45 small ones scattered over the heap (which would leave no room for an 8 KiB frame)
    out = bytearray(64 * 15)
    for i in range(15):
        x, y = table[i + 1]
        out[64 * i : 64 * i + 32] = x.to_bytes(32, "big")
        out[64 * i + 32 : 64 * i + 64] = y.to_bytes(32, "big")
    return bytes(out)


def fixed_table(name, pt):
    # tables of fixed bases (G, M, N) are kept, packed, for the life of the process
    t = _tables.get(name)
    if t is None:
        t = _pack(_table(pt))
        _tables[name] = t
    return t


def _mul_tables(pairs):
    # sum of k_i * T_i for (k, table) pairs, sharing the doublings (Straus/Shamir)
    X, Y, Z = 0, 1, 0
    for shift in range(252, -4, -4):
        if Z != 0:
            X, Y, Z = _dbl(X, Y, Z)
            X, Y, Z = _dbl(X, Y, Z)
            X, Y, Z = _dbl(X, Y, Z)
            X, Y, Z = _dbl(X, Y, Z)
        for k, t in pairs:
            d = (k >> shift) & 15
            # a zero digit still costs an addition (to a discarded point), so that the time of
            # a multiplication does not tell how many zero digits the scalar has
            e = d or 1
            if isinstance(t, bytes):
                o = 64 * e - 64
                x2 = int.from_bytes(t[o : o + 32], "big")
                y2 = int.from_bytes(t[o + 32 : o + 64], "big")
            else:
                x2, y2 = t[e]
            if d:
                X, Y, Z = _madd(X, Y, Z, x2, y2)
            elif Z != 0:
                _madd(X, Y, Z, x2, y2)
    return _to_affine(X, Y, Z)


def _scalar(k):
    k %= N
    return k


def mul(k, pt, table=None):
    # k * pt (affine in, affine out; None for the identity)
    # (pt may be None when a table is given)
    k = _scalar(k)
    if k == 0 or (pt is None and table is None):
        return None
    return _mul_tables(((k, table or _table(pt)),))


def mul2(k1, t1, k2, t2):
    # k1 * T1 + k2 * T2 for two tables (from fixed_table or table)
    return _mul_tables(((_scalar(k1), t1), (_scalar(k2), t2)))


def table(pt):
    return _table(pt)


def mul_g(k):
    return mul(k, G, fixed_table("G", G))


def neg(pt):
    if pt is None:
        return None
    return pt[0], (P - pt[1]) % P


def add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    return _to_affine(*_add(p1[0], p1[1], 1, p2[0], p2[1], 1))
