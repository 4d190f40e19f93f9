# Session layer: pairing (SPAKE2), session handshake, AEAD frames (see PROTOCOL.md).
