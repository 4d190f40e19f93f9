# Store layer: every file the firmware keeps lives under one root directory, on littlefs.
# On the ESP32, MicroPython mounts the littlefs partition at "/" itself before boot.py runs;
# the data root is "/data", beside the code, so a factory reset wipes data and keeps code.
# On the unix port, boards/unix/flashbd.py mounts a littlefs image file (say at "/flash") and
# start-up calls use("/flash/data"). Other layers only ever ask path(name).
#
#   from kh import store
#   store.use()                   # once at start-up (creates the root; clears stray temp files)
#   p = store.path("rules.jsonl") # "/data/rules.jsonl"
#
# The layer: files (atomic replace, directories), rules (the rules store, atomic puts and
# deletes, staged puts, metadata, event lookup), schema (rule validation), config (Wi-Fi
# credentials, settings), errors (StoreError). Power-cut tests: tests/store, tests/mp/powercut.py.
_root = "/data"


def use(root=None):
    global _root
    from kh.store import files
    if root:
        _root = root.rstrip("/") or "/"
    files.makedirs(_root)
    files.clean_tmp(_root)
    return _root


def root():
    return _root


def path(name):
    return _root + name if _root.endswith("/") else _root + "/" + name


def wipe():
    # Factory reset: remove every file under the root, then recreate the empty root.
    from kh.store import files
    if _root == "/":
        raise ValueError("the data root is /; refusing to wipe the code with it")
    for name in files.listdir(_root):
        files.rmtree(path(name))
    files.makedirs(_root)
