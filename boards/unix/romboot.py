# The unix board's stand-in for a ROMFS partition (MicroPython's vfs.VfsRom, "code in place").
# A board with a ROMFS partition mounts it at /rom before main.py runs and appends /rom and
# /rom/lib to sys.path (MicroPython v1.25+, extmod/vfs.c mp_vfs_mount_romfs_protected). The unix
# port has no such partition, so this entry script reads the image named by KEYHOOK_SIM_ROMFS
# into one buffer, mounts it with vfs.VfsRom at /rom, does the same to sys.path, and runs
# main.py from the file system as the board would. Bytecode is then executed in place from that
# buffer, as from flash on a board; the buffer itself stands for the flash, so whoever sizes
# the heap adds the image's size (`keyhook sim --code romfs`).
import os
import sys
import vfs

img = bytearray(os.stat(os.getenv("KEYHOOK_SIM_ROMFS"))[6])
with open(os.getenv("KEYHOOK_SIM_ROMFS"), "rb") as f:
    f.readinto(img)
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.append("/rom")
sys.path.append("/rom/lib")
del img, f
import main  # noqa: E402,F401  (main.py, on the file system, starts the firmware)
