# Power-cut harness for MicroPython-side tests (unix port): a littlefs block device over a
# bytearray or a file whose N-th flash modification raises, and helpers to remount from the same
# bytes, as a reboot would.
#
#   import powercut
#   bd = powercut.RamBlockDev(blocks=32)             # or powercut.FileBlockDev(path, blocks=32)
#   powercut.mount(bd, "/flash")                     # mkfs first when the device is blank
#   n = powercut.count(bd, update)                   # flash modifications `update()` makes
#   bd.arm(k)                                        # the k-th modification from now raises
#   ...                                              # PowerCut, and so does every later one
#   powercut.reboot(bd, "/flash")                    # disarm, unmount, mount the same bytes again
#   results = powercut.sweep(bd, "/flash", prepare, update, check)
#
# A "modification" is one writeblocks call or one erase (ioctl 6): both change flash, so a cut
# can land on either. With torn=True the interrupted operation lands half-way first (the first
# half of the bytes are programmed, or the first half of the block is erased), like a program or
# erase cut short. After a cut the device stays "off": every later modification raises too,
# until reboot(), so a `with open(...)` block that tries to close cannot write anything more.
#
# Each mount talks to the flash through its own port object. reboot() disconnects the old port
# for good: file objects the cut left open belong to the old filesystem, and when the garbage
# collector finalises them later (closing them writes), that goes nowhere, as it would on a
# real device whose RAM was lost. `bd` stays the same object across reboots (arm, count).
import os

_EIO = 5
_ERASED = 0xFF


class PowerCut(OSError):
    pass


class RamBlockDev:
    # Block device over a bytearray (block_size bytes per block), littlefs's extended interface.
    def __init__(self, blocks=32, block_size=4096, data=None):
        self.block_size = block_size
        if data is None:
            data = bytearray(b"\xff" * (blocks * block_size))
        self.data = data
        self.blocks = len(data) // block_size
        self.count = 0          # modifications since reset (or construction)
        self.cut_at = 0         # 0: never; else the value of count that raises
        self.torn = False
        self.dead = False       # power is off after a cut
        self._erased = b"\xff" * block_size   # made once: erasing allocates nothing
        self._saved = bytearray(len(data))     # for save(): made while the heap is still whole

    def reset_count(self):
        self.count = 0

    def arm(self, n, torn=False):
        # Cut the power at the n-th modification (1-based) from now.
        self.count = 0
        self.cut_at = n
        self.torn = torn
        self.dead = False

    def disarm(self):
        self.cut_at = 0
        self.dead = False

    def _tick(self):
        # True when this modification is the one where power fails.
        if self.dead:
            raise PowerCut(_EIO, "power is off")
        self.count += 1
        if self.cut_at and self.count >= self.cut_at:
            self.dead = True
            return True
        return False

    def _load(self, addr, buf):
        buf[:] = self.data[addr:addr + len(buf)]

    def _store(self, addr, buf):
        self.data[addr:addr + len(buf)] = buf

    def readblocks(self, block, buf, off=0):
        self._load(block * self.block_size + off, buf)

    def writeblocks(self, block, buf, off=None):
        if off is None:
            # Old-style interface: the write covers whole blocks, erase first.
            off = 0
        addr = block * self.block_size + off
        if self._tick():
            if self.torn:
                half = len(buf) // 2
                self._store(addr, memoryview(buf)[:half])
            raise PowerCut(_EIO, "power cut at write %d (block %d)" % (self.count, block))
        self._store(addr, buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 6:
            addr = arg * self.block_size
            if self._tick():
                if self.torn:
                    self._store(addr, memoryview(self._erased)[:self.block_size // 2])
                raise PowerCut(_EIO, "power cut at erase %d (block %d)" % (self.count, arg))
            self._store(addr, self._erased)
            return 0
        return 0

    def snapshot(self):
        return bytes(self.data)

    def restore(self, snap):
        self.data[:] = snap

    def save(self):
        # Like snapshot(), into one buffer made with the device (a fresh 200 KB allocation
        # later may fail in a fragmented heap).
        self._saved[:] = self.data
        return self._saved


class FileBlockDev(RamBlockDev):
    # The same over a file (created, filled with erased bytes, when missing or too small).
    def __init__(self, path, blocks=32, block_size=4096):
        self.path = path
        size = blocks * block_size
        try:
            have = os.stat(path)[6]
        except OSError:
            have = 0
        if have < size:
            with open(path, "ab") as f:
                chunk = b"\xff" * block_size
                while have < size:
                    f.write(chunk)
                    have += block_size
        self._f = open(path, "r+b")
        super().__init__(blocks=0, block_size=block_size, data=bytearray(0))
        self.blocks = blocks

    def _load(self, addr, buf):
        self._f.seek(addr)
        self._f.readinto(buf)

    def _store(self, addr, buf):
        self._f.seek(addr)
        self._f.write(buf)
        self._f.flush()

    def snapshot(self):
        self._f.seek(0)
        return self._f.read(self.blocks * self.block_size)

    def save(self):
        return self.snapshot()

    def restore(self, snap):
        self._store(0, snap)

    def close(self):
        self._f.close()


class _Port:
    # What one mounted filesystem sees of the flash; dead after a reboot (no allocation there:
    # finalisers run with the heap locked).
    def __init__(self, chip):
        self.chip = chip
        self.live = True

    def readblocks(self, block, buf, off=0):
        if self.live:
            self.chip.readblocks(block, buf, off)

    def writeblocks(self, block, buf, off=None):
        if self.live:
            self.chip.writeblocks(block, buf, off)

    def ioctl(self, op, arg):
        if self.live:
            return self.chip.ioctl(op, arg)
        return 0


def _attach(bd, mount_point):
    old = getattr(bd, "_port", None)
    if old is not None:
        old.live = False
    bd._port = _Port(bd)
    os.mount(os.VfsLfs2(bd._port), mount_point)


def blank(bd):
    buf = bytearray(16)
    bd.readblocks(0, buf, 0)
    for b in buf:
        if b != _ERASED:
            return False
    return True


def mount(bd, mount_point, mkfs=None):
    # Mount littlefs v2 from bd at mount_point; format first when blank (or when mkfs is True).
    if mkfs or (mkfs is None and blank(bd)):
        os.VfsLfs2.mkfs(bd)
    _attach(bd, mount_point)


def umount(mount_point):
    try:
        os.umount(mount_point)
    except OSError:
        pass


def reboot(bd, mount_point):
    # Power back on: forget the old filesystem object, mount the same bytes afresh.
    umount(mount_point)
    if getattr(bd, "_port", None) is not None:
        bd._port.live = False
    bd.disarm()
    _attach(bd, mount_point)


def count(bd, fn):
    # Number of flash modifications fn() makes (it runs for real).
    bd.disarm()
    bd.reset_count()
    fn()
    return bd.count


def sweep(bd, mount_point, prepare, update, check, torn=False, limit=0):
    # Cut the power at every modification of update() in turn, starting each time from the
    # state prepare() leaves, then reboot and call check(k) (k = the cut point; 0 = no cut,
    # update() completed). Returns [(k, check(k)), ...]. limit > 0 samples at most that many
    # cut points, spread evenly, always including the first and the last.
    umount(mount_point)
    mount(bd, mount_point, mkfs=True)
    prepare()
    base = bd.save()
    n = count(bd, update)
    out = [(0, check(0))]
    points = list(range(1, n + 1))
    if limit and n > limit:
        step = (n - 1) / (limit - 1)
        points = sorted(set(int(i * step + 0.5) + 1 for i in range(limit)))
    for k in points:
        umount(mount_point)
        bd._port.live = False
        bd.disarm()
        bd.restore(base)
        _attach(bd, mount_point)
        bd.arm(k, torn)
        try:
            update()
        except Exception as e:  # the store may wrap the cut in its own error; only a cut is fine
            if not bd.dead:
                raise
        if not bd.dead:
            raise AssertionError("update() finished without reaching modification %d of %d" % (k, n))
        reboot(bd, mount_point)
        out.append((k, check(k)))
    return out
