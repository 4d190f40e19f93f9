"""Records to GATT fragments and back (firmware/PROTOCOL.md section 1)."""

from __future__ import annotations

from keyhook.ble.protocol import END, MAX_RECORD, RESERVED, START


class FragmentError(ValueError):
    """A fragment sequence that the protocol rejects."""


def fragment(record: bytes, size: int) -> list[bytes]:
    """Split `record` into fragments of at most `size` bytes (`MTU - 3`)."""
    n = len(record)
    if not 0 < n <= MAX_RECORD:
        raise ValueError(f"a record is 1 to {MAX_RECORD} bytes, not {n}")
    if size < 4:
        raise ValueError("fragments must hold at least 4 bytes")
    first = record[:size - 3]
    out = [bytes([START | (END if len(first) == n else 0), n >> 8, n & 0xFF]) + first]
    off = len(first)
    while off < n:
        chunk = record[off:off + size - 1]
        off += len(chunk)
        out.append(bytes([END if off == n else 0]) + chunk)
    return out


class Reassembler:
    """Collects fragments into records, with the protocol's bound and rejections."""

    def __init__(self, max_record: int = MAX_RECORD) -> None:
        self.max_record = max_record
        self._buf: bytearray | None = None
        self._total = 0

    @property
    def open(self) -> bool:
        """A record is partly received."""
        return self._buf is not None

    def reset(self) -> None:
        """Discard a partial record (on a disconnect or after an error)."""
        self._buf = None
        self._total = 0

    def feed(self, frag: bytes) -> bytes | None:
        """Take one fragment; return the record it completes, if any; raise FragmentError."""
        try:
            return self._feed(frag)
        except FragmentError:
            self.reset()
            raise

    def _feed(self, frag: bytes) -> bytes | None:
        if not frag:
            raise FragmentError("empty fragment")
        h = frag[0]
        if h & RESERVED:
            raise FragmentError(f"reserved header bits set (0x{h:02x})")
        if h & START:
            if self._buf is not None:
                raise FragmentError("a new record started while one was open")
            if len(frag) < 3:
                raise FragmentError("a START fragment without its length")
            total = frag[1] << 8 | frag[2]
            if total == 0 or total > self.max_record:
                raise FragmentError(f"a record of {total} bytes (the limit is {self.max_record})")
            self._buf = bytearray()
            self._total = total
            data = frag[3:]
        else:
            if self._buf is None:
                raise FragmentError("a continuation without a START")
            data = frag[1:]
        if len(self._buf) + len(data) > self._total:
            raise FragmentError(f"more data than the announced {self._total} bytes")
        self._buf += data
        if h & END:
            if len(self._buf) != self._total:
                raise FragmentError(f"END after {len(self._buf)} of {self._total} bytes")
            record = bytes(self._buf)
            self.reset()
            return record
        return None
