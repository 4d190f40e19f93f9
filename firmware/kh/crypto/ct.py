# Constant-time comparison of two byte strings (MACs, confirmations).
# The loop always runs over the whole of `a`; only the lengths may leak.


def equal(a, b):
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
