# The unix board's measuring interpreter with code in place (`make mp32-frozen`): MicroPython's
# unix port, built 32-bit, with the keyhook firmware frozen in, and with the board's stand-ins
# for `bluetooth`, `network`, `machine` and the flash frozen too. On an ESP32 those modules are
# C, and their code costs the GC heap nothing; frozen here, they cost it only their objects, as
# there. (Compiled from source at every start, they would also leave the compiler's garbage
# between the firmware's first objects, which no board does.)
#
# Paths are relative to this file. The entry scripts (romboot.py, fire.py, validate.py) stay
# files: they are run by path.
include("$(PORT_DIR)/variants/standard/manifest.py")

package("kh", base_path="../../firmware")

for name in ("_vradio", "bluetooth", "flashbd", "keyhook_board", "machine", "network"):
    module(name + ".py")
