# Store layer: files on littlefs (the unix port: any mounted VFS), replaced atomically.
# Atomic file replace: write a temporary file beside the target, then rename over it.
# littlefs renames atomically, so a power cut leaves exactly the old or the new file; a cut
# can leave a stray "<name>.tmp", which the next write truncates and clean_tmp() removes.
import os
from micropython import const

TMP = ".tmp"
_S_IFDIR = const(0x4000)
# littlefs keeps a file of at most block_size/8 bytes inside its directory's metadata log, where
# a newer version or a delete does not erase it; a secret is padded past that (a 4 KiB block)
_NOT_INLINE = const(520)
_SCRUB = ".scrub" + TMP


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path, data, secret=False):
    # secret: the file holds a secret; it is kept out of littlefs's metadata (padded with
    # spaces, which JSON ignores), so that scrub() can erase its former versions
    tmp = path + TMP
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if secret and len(data) < _NOT_INLINE:
                f.write(b" " * (_NOT_INLINE - len(data)))
        os.rename(tmp, path)
    except OSError:
        remove(tmp)  # best effort: without power it fails too, and clean_tmp() gets it later
        raise


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


def is_dir(path):
    try:
        return bool(os.stat(path)[0] & _S_IFDIR)
    except OSError:
        return False


def makedirs(path):
    # os.makedirs is not in MicroPython; create each missing level.
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part if (not cur or cur.endswith("/")) else cur + "/" + part
        if not exists(cur):
            os.mkdir(cur)


def listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def clean_tmp(path):
    # Remove what an interrupted write_atomic left in the directory `path`.
    n = 0
    for name in listdir(path):
        if name.endswith(TMP) and remove(path + "/" + name):
            n += 1
    return n


def rmtree(path):
    # Remove a directory and everything in it (a factory reset); a file is just removed.
    if is_dir(path):
        for name in listdir(path):
            rmtree(path + "/" + name)
        try:
            os.rmdir(path)
        except OSError:
            pass
    else:
        remove(path)


def free_bytes(path):
    try:
        st = os.statvfs(path)
        return st[0] * st[3]
    except OSError:
        return -1


def scrub(path):
    # Overwrite every free block of the file system that holds the directory `path`: what
    # deleted and replaced files left there (littlefs never erases a block it frees). A file
    # of zeros fills the free space, then goes. Slow (the whole free space is written, about
    # 40 ms a block): for factory resets and for changes that drop secrets.
    p = path + "/" + _SCRUB
    buf = bytes(512)
    try:
        with open(p, "wb") as f:
            while True:
                f.write(buf)
    except OSError:
        pass  # ENOSPC: every free block holds zeros now
    remove(p)
