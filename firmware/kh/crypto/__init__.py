# Crypto layer: SHA-256/HMAC/HKDF, AES-CTR, P-256, X25519, SPAKE2 in pure MicroPython.
