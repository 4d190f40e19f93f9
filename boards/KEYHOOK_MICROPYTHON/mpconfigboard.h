// keyhook's MicroPython board: the stock board's settings (KEYHOOK_BASE_BOARD_H, set by
// mpconfigboard.cmake), plus a ROMFS mounted at /rom from the partition labelled "romfs".
#include KEYHOOK_BASE_BOARD_H

// extmod/vfs_rom.c and the esp32 port's vfs.rom_ioctl (esp32_partition.c); at start-up
// mp_init() mounts the first ROMFS at /rom and adds /rom and /rom/lib to sys.path.
#define MICROPY_VFS_ROM (1)
