# keyhook's MicroPython board for the esp32 port: a stock board (and variant) plus a ROMFS
# partition, MICROPY_VFS_ROM, TLS 1.3 and X25519. An out-of-tree board (BOARD_DIR) that
# `make firmware` (host/keyhook/firmware.py) builds with these cmake variables:
#   KEYHOOK_BASE_BOARD    the stock MicroPython board, e.g. ESP32_GENERIC_S3
#   KEYHOOK_BASE_VARIANT  its variant, e.g. SPIRAM_OCT (empty for none)
#   KEYHOOK_BOARD_DIR     keyhook's boards/<BOARD> folder (absolute), holding partitions-romfs.csv
#   KEYHOOK_SDKCONFIG     keyhook's boards/sdkconfig.keyhook (absolute)
if(NOT KEYHOOK_BASE_BOARD OR NOT KEYHOOK_BOARD_DIR OR NOT KEYHOOK_SDKCONFIG)
    message(FATAL_ERROR "keyhook: build this board with `make firmware BOARD=...` from a keyhook checkout")
endif()

# The stock board's own configuration (paths relative to ports/esp32, as MicroPython's are).
include(boards/${KEYHOOK_BASE_BOARD}/mpconfigboard.cmake)
if(KEYHOOK_BASE_VARIANT)
    include(boards/${KEYHOOK_BASE_BOARD}/mpconfigvariant_${KEYHOOK_BASE_VARIANT}.cmake)
endif()

# keyhook's ESP-IDF settings, then the partition table's absolute path (an sdkconfig file
# cannot name a path relative to the keyhook checkout).
set(KEYHOOK_PARTITIONS_FRAGMENT ${CMAKE_BINARY_DIR}/sdkconfig.keyhook_partitions)
file(WRITE ${KEYHOOK_PARTITIONS_FRAGMENT}
    "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${KEYHOOK_BOARD_DIR}/partitions-romfs.csv\"\n")
list(APPEND SDKCONFIG_DEFAULTS ${KEYHOOK_SDKCONFIG} ${KEYHOOK_PARTITIONS_FRAGMENT})

# The stock board's header, then ROMFS on (mpconfigboard.h here).
list(APPEND MICROPY_DEF_BOARD
    KEYHOOK_BASE_BOARD_H="boards/${KEYHOOK_BASE_BOARD}/mpconfigboard.h"
)
