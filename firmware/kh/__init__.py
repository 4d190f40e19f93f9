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
