# keyhook device start-up: the code is kh/app/main.py (compiled, in a ROMFS at /rom, or frozen).
import sys

# MicroPython mounts a ROMFS partition at /rom and appends "/rom" and "/rom/lib" to sys.path:
# code in place goes first, so that no stale kh/ on the file system shadows it.
for _p in ("/rom/lib", "/rom"):
    if _p in sys.path:
        sys.path.remove(_p)
        sys.path.insert(0, _p)

from kh.app.main import main

main()
