# The unix board's stand-in for a ROMFS partition (MicroPython's vfs.VfsRom, "code in place").
# A board with a ROMFS partition mounts it at /rom before main.py runs and puts /rom and
# /rom/lib first on sys.path (MicroPython v1.25+, ports/esp32 with MICROPY_VFS_ROM). The unix
# port has no such partition, so this entry script reads the image named by KEYHOOK_SIM_ROMFS
# into one buffer, mounts it with vfs.VfsRom at /rom and runs /rom/main.py. Bytecode is then
# executed in place from that buffer, as from flash on a board; the buffer itself stands for
# the flash, so whoever sizes the heap adds the image's size (`keyhook sim --code romfs`).
import os
import sys
import vfs

img = bytearray(os.stat(os.getenv("KEYHOOK_SIM_ROMFS"))[6])
with open(os.getenv("KEYHOOK_SIM_ROMFS"), "rb") as f:
    f.readinto(img)
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom/lib")
sys.path.insert(0, "/rom")
del img, f
import main  # noqa: E402,F401  (/rom/main.py starts the firmware)
