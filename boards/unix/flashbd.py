# Unix board: the ESP32's littlefs flash partition, as a block device over an image file.
# MicroPython on the ESP32 mounts its own partition at "/"; the unix port has no flash, so
# start-up (and tests) mount an image file instead:
#
#   import flashbd
#   bd = flashbd.mount("state/flash.img", "/flash")   # mkfs when the image is blank
#   from kh import store; store.use("/flash/data")
#
# The block device speaks littlefs's extended interface (docs/design.md, MicroPython facts: readblocks and
# writeblocks with an offset, ioctl 4 block count, 5 block size, 6 erase). cut_at=N makes the
# N-th flash modification (a writeblocks or an erase) raise OSError(EIO), and every later one
# too, as if power failed there; remount the same image to see what survived.
import os
from micropython import const

_BLOCK = const(4096)
_BLOCKS = const(128)  # 512 KiB, a typical ESP32 4 MB layout's data partition is larger
_EIO = const(5)
_IOCTL_COUNT = const(4)
_IOCTL_SIZE = const(5)
_IOCTL_ERASE = const(6)


class FlashBlockDev:
    def __init__(self, path, blocks=_BLOCKS, block_size=_BLOCK, cut_at=0):
        self.path = path
        self.block_size = block_size
        self.cut_at = cut_at
        self.writes = 0  # flash modifications so far (writeblocks calls plus erases)
        try:
            have = os.stat(path)[6]
        except OSError:
            have = 0
        if have >= block_size:
            # An existing image keeps its own size: littlefs recorded its block count, and a
            # mount with another count would fail (and reformat).
            blocks = have // block_size
        else:
            with open(path, "wb") as f:  # a new image is erased flash
                chunk = b"\xff" * block_size
                for _ in range(blocks):
                    f.write(chunk)
        self.blocks = blocks
        self._f = open(path, "r+b")
        self._erased = b"\xff" * block_size  # made once: no 4 KiB allocation per erase

    def _modify(self, block):
        self.writes += 1
        if self.cut_at and self.writes >= self.cut_at:
            raise OSError(_EIO)

    def readblocks(self, block, buf, off=0):
        self._f.seek(block * self.block_size + off)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        self._modify(block)
        self._f.seek(block * self.block_size + (off or 0))
        self._f.write(buf)
        self._f.flush()

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.blocks
        if op == _IOCTL_SIZE:
            return self.block_size
        if op == _IOCTL_ERASE:
            self._modify(arg)
            self._f.seek(arg * self.block_size)
            self._f.write(self._erased)
            self._f.flush()
        return 0

    def blank(self):
        buf = bytearray(16)
        self.readblocks(0, buf)
        for b in buf:
            if b != 0xFF:
                return False
        return True

    def close(self):
        self._f.close()


def mount(path, mount_point="/flash", blocks=_BLOCKS, cut_at=0):
    # Mount the image at mount_point (a new image has `blocks` blocks), formatting it first
    # when it is blank; returns the device.
    bd = FlashBlockDev(path, blocks, cut_at=cut_at)
    if bd.blank():
        os.VfsLfs2.mkfs(bd)
    try:
        os.mount(os.VfsLfs2(bd), mount_point)
    except OSError:
        # Not littlefs (a corrupt or foreign image): reformat, as the ESP32 port does at boot.
        print("flashbd: %s is not a littlefs image; formatting it" % path)
        os.VfsLfs2.mkfs(bd)
        os.mount(os.VfsLfs2(bd), mount_point)
    return bd


def umount(mount_point="/flash"):
    try:
        os.umount(mount_point)
    except OSError:
        pass
