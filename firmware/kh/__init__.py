# keyhook firmware: secure webhook device on MicroPython (ESP32 with BLE; unix port in tests).
VERSION = "0.1.0"


# Forget modules that only one phase needs (pairing crypto, rule validation), so that their
# code and tables are garbage once nothing else holds them; a later import loads them again.
def unload(*names):
    import sys

    for name in names:
        if sys.modules.pop(name, None) is None:
            continue
        parent, _, leaf = name.rpartition(".")
        p = sys.modules.get(parent)
        if p is not None and hasattr(p, leaf):
            delattr(p, leaf)


# The lowest gc.mem_free() seen since boot, sampled at each record from the app, at the end of
# each fire and once a second (`info` reports it: how close the device came to MemoryError).
low_free = 0


def heap_mark():
    import gc

    global low_free
    f = gc.mem_free()
    if not low_free or f < low_free:
        low_free = f
