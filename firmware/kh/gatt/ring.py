# GATT layer: a byte ring of typed entries between the BLE IRQ handler (the only producer)
# and the GATT task (the only consumer). Preallocated; put never blocks or allocates.
# Entry: kind(1) conn(2) arg(2) then `arg` data bytes for kinds that carry data.
# The producer moves head only after writing an entry, the consumer moves tail only after
# reading one, so an IRQ may interrupt the consumer anywhere.
from micropython import const

_HDR = const(5)


class Ring:
    def __init__(self, size):
        self._b = bytearray(size)
        self._n = size
        self._head = 0
        self._tail = 0
        self._ph = bytearray(_HDR)  # producer's header scratch
        self._ch = bytearray(_HDR)  # consumer's header scratch

    def free(self):
        return self._n - 1 - (self._head - self._tail) % self._n

    def _write(self, pos, src, ln):
        # no slice of src (a slice is a new object): one slice store when the entry fits
        # before the end, else byte by byte (rare: once per trip round the ring)
        b = self._b
        n = self._n
        if pos + ln <= n:
            b[pos:pos + ln] = src
            return (pos + ln) % n
        i = 0
        while i < ln:
            b[pos] = src[i]
            pos += 1
            if pos == n:
                pos = 0
            i += 1
        return pos

    def _read(self, pos, dst, ln):
        first = min(ln, self._n - pos)
        dst[:first] = self._b[pos:pos + first]
        if first < ln:
            dst[first:ln] = self._b[0:ln - first]
        return (pos + ln) % self._n

    def put(self, kind, conn, arg, data=None, reserve=0):
        # False when it does not fit with `reserve` bytes left over
        ln = len(data) if data is not None else 0
        if _HDR + ln + reserve > self.free():
            return False
        h = self._ph
        h[0] = kind
        h[1] = conn >> 8
        h[2] = conn & 0xFF
        h[3] = arg >> 8
        h[4] = arg & 0xFF
        pos = self._write(self._head, h, _HDR)
        if ln:
            pos = self._write(pos, data, ln)
        self._head = pos
        return True

    def get(self, dst):
        # (kind, conn, arg); data (arg bytes, for kinds that carry it) copied into dst;
        # kind 0 when empty
        if self._head == self._tail:
            return 0, 0, 0
        h = self._ch
        pos = self._read(self._tail, h, _HDR)
        arg = h[3] << 8 | h[4]
        if h[0] & 0x80:  # kinds with data have the high bit set
            pos = self._read(pos, dst, arg)
        self._tail = pos
        return h[0], h[1] << 8 | h[2], arg
