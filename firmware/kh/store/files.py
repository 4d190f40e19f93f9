# Atomic file replace: write a temporary file beside the target, then rename over it.
# littlefs renames atomically, so a power cut leaves exactly the old or the new file.
import os

_TMP = ".tmp"


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path, data):
    tmp = path + _TMP
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    # os.makedirs is not in MicroPython; create each missing level.
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/" if not cur else cur
            continue
        cur = cur + part if cur.endswith("/") or not cur else cur + "/" + part
        if not exists(cur):
            os.mkdir(cur)
