# keyhook, frozen into a MicroPython build for ESP32_GENERIC_S3-SPIRAM_OCT (optional: release images work as they are).
#
# Freezing puts the firmware's bytecode in the app partition, where it runs from flash instead of
# the GC heap, and leaves the file system for data. Build MicroPython (the release named in
# boards/ESP32_GENERIC_S3-SPIRAM_OCT/board.json) with this manifest:
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC_S3 BOARD_VARIANT=SPIRAM_OCT FROZEN_MANIFEST=/path/to/keyhook/boards/ESP32_GENERIC_S3-SPIRAM_OCT/manifest.py
#
# Then flash the result (build-ESP32_GENERIC_S3-SPIRAM_OCT/firmware.bin) with
#   keyhook flash --board ESP32_GENERIC_S3-SPIRAM_OCT --port PORT --micropython build-ESP32_GENERIC_S3-SPIRAM_OCT/firmware.bin
# which still writes main.py, board.json and the trust store to the file system. A kh/ folder on
# the file system shadows the frozen one (sys.path is '', '.frozen', '/lib'), so after a
# "keyhook deploy" the deployed files win.
#
# Paths here are relative to this file (manifest.py files run in their own folder).

metadata(description="keyhook firmware for ESP32_GENERIC_S3-SPIRAM_OCT", version="0.1.0")

# Everything a stock ESP32_GENERIC_S3 SPIRAM_OCT image freezes (_boot.py, inisetup.py, asyncio, networking...).
include("$(PORT_DIR)/boards/manifest.py")

# The keyhook firmware package (firmware/kh/**), compiled and frozen as kh.*. main.py stays on
# the file system, where MicroPython looks for it at start-up.
package("kh", base_path="../../firmware")
