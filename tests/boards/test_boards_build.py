"""`keyhook build`: the image, mounted back by MicroPython itself, holds exactly the build."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from keyhook import KeyhookError, boards
from keyhook.boards import build
from keyhook.paths import FIRMWARE

from boardtest import REAL_BOARDS, ca_select

# Runs under the MicroPython unix port: mount the image read-only with os.VfsLfs2 over a file
# block device (tests/mp/powercut.py's FileBlockDev), walk it, and report every file.
MOUNT_AND_LIST = r"""
import os, json, hashlib, binascii
import powercut
bd = powercut.FileBlockDev(%(img)r, blocks=%(blocks)d, block_size=%(bs)d)
os.mount(os.VfsLfs2(bd), "/img", readonly=True)
out = {}
def walk(d, rel):
    for e in os.ilistdir(d):
        p = d + "/" + e[0]
        r = (rel + "/" + e[0]) if rel else e[0]
        if e[1] == 0x4000:
            walk(p, r)
        else:
            with open(p, "rb") as f:
                data = f.read()
            out[r] = [len(data), binascii.hexlify(data[:4]).decode(),
                      binascii.hexlify(hashlib.sha256(data).digest()).decode()]
walk("/img", "")
st = os.statvfs("/img")
print(json.dumps({"files": out, "bsize": st[0], "blocks": st[2]}))
"""


def mount_and_list(micropython, image, block_size, tmp_path):
    img = tmp_path / "flash.img"
    shutil.copyfile(image, img)  # FileBlockDev opens read-write; keep the build untouched
    blocks = img.stat().st_size // block_size
    return micropython.json(MOUNT_AND_LIST % {"img": str(img), "blocks": blocks, "bs": block_size})


@pytest.mark.parametrize("name", REAL_BOARDS + ["unix"])
def test_micropython_mounts_the_image_and_sees_every_file(name, built, micropython, tmp_path):
    result = built(name)
    board = boards.load(name)
    seen = mount_and_list(micropython, result.image, board.vfs_block_size, tmp_path)
    assert seen["bsize"] == 4096 and seen["blocks"] == board.vfs_block_count
    files = seen["files"]
    assert sorted(files) == sorted(f.path for f in result.files)
    for f in result.files:
        assert files[f.path][0] == f.size, f.path
        assert files[f.path][2] == f.sha256, f.path
    # Every firmware module is there, compiled, at its package path.
    for rel in build.firmware_sources(FIRMWARE):
        name_on_device = rel.as_posix() if rel.as_posix() in build.KEEP_SOURCE else rel.with_suffix(".mpy").as_posix()
        assert name_on_device in files
    # The manifest on disk says the same as the image.
    summary = json.loads((result.out / "build.json").read_text())
    assert {f["path"] for f in summary["files"]} == set(files)


@pytest.mark.parametrize("name", REAL_BOARDS + ["unix"])
def test_every_mpy_is_loadable_on_the_boards_architecture(name, built, micropython, tmp_path):
    result = built(name)
    board = boards.load(name)
    seen = mount_and_list(micropython, result.image, board.vfs_block_size, tmp_path)["files"]
    mpys = {p: v for p, v in seen.items() if p.endswith(".mpy")}
    assert mpys, "no .mpy in the image"
    for path, (_size, head, _h) in mpys.items():
        h = bytes.fromhex(head)
        assert h[0:2] == b"M\x06", f"{path}: not an .mpy v6 file ({head})"
        arch = h[2] >> 2
        # Bytecode-only modules carry arch 0 (portable, loads anywhere); modules with native or
        # viper code must carry exactly the board's architecture.
        assert arch in (0, board.mpy_arch_code), f"{path}: arch {arch}, board wants {board.mpy_arch_code}"
        assert h[3] == 31, f"{path}: small-int bits {h[3]}"
    assert not any(p.endswith(".py") and p not in build.KEEP_SOURCE for p in seen), "source left beside .mpy"


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_native_code_is_compiled_for_the_boards_architecture(name, tmp_path):
    # A firmware tree with a @micropython.native function: its .mpy header must name the arch.
    src = tmp_path / "fw"
    (src / "kh").mkdir(parents=True)
    (src / "kh" / "__init__.py").write_text("")
    (src / "kh" / "fast.py").write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
    (src / "main.py").write_text("import kh.fast\n")
    board = boards.load(name)
    result = build.build(board, tmp_path / "out", firmware=src, trust=False)
    files = build.read_littlefs(result.image.read_bytes())
    head = files["kh/fast.mpy"][:4]
    assert head[2] >> 2 == board.mpy_arch_code
    assert files["main.py"] == b"import kh.fast\n"  # main.py stays source


def test_board_info_file_tells_the_firmware_its_pins(built):
    result = built("ESP32_GENERIC_C3")
    info = json.loads((result.stage / build.BOARD_INFO).read_text())
    assert info["name"] == "ESP32_GENERIC_C3" and info["name_prefix"] == "keyhook-"
    assert info["pins"]["button"]["gpio"] == 9
    assert "secret" not in json.dumps(info).lower() and "ssid" not in json.dumps(info).lower()


def test_compile_error_names_the_module(tmp_path):
    src = tmp_path / "fw"
    (src / "kh").mkdir(parents=True)
    (src / "kh" / "bad.py").write_text("def f(:\n")
    with pytest.raises(KeyhookError, match="kh/bad.py"):
        build.build(boards.load("ESP32_GENERIC"), tmp_path / "out", firmware=src, trust=False)


def test_files_that_do_not_fit_are_reported(tmp_path):
    src = tmp_path / "fw"
    (src / "kh").mkdir(parents=True)
    (src / "kh" / "__init__.py").write_text("")
    (src / "kh" / "big.py").write_text("X = %r\n" % ("x" * 60000))
    folder = tmp_path / "TINY"
    folder.mkdir()
    d = json.loads((boards.BOARDS / "unix" / "board.json").read_text())
    d["flash"]["size"] = "0x10000"
    d["flash"]["vfs_size"] = "0x8000"  # 8 blocks
    (folder / "board.json").write_text(json.dumps(d))
    with pytest.raises(KeyhookError, match="do not fit"):
        build.build(boards.load(str(folder)), tmp_path / "out", firmware=src, trust=False)


def test_flash_size_option_sizes_the_image(tmp_path):
    board = boards.load("ESP32_GENERIC_S3")
    result = build.build(board, tmp_path / "out", trust=False, flash_size=8 << 20)
    assert result.image.stat().st_size == 6 << 20 and result.vfs_offset == 0x200000


def test_ca_selection(tmp_path):
    roots = build.load_roots(None, ["ISRG Root X1"])
    assert len(roots) == 1 and "ISRG Root X1" in roots[0][0]
    assert len(build.load_roots(None, ["*digicert*"])) > 2
    sha = hashlib.sha256(roots[0][1]).hexdigest()
    assert build.load_roots(None, [sha]) == roots
    with pytest.raises(KeyhookError, match="no root"):
        build.load_roots(None, ["No Such Root CA 2049"])
    (tmp_path / "bad.pem").write_text("hello")
    with pytest.raises(KeyhookError, match="no PEM certificate"):
        build.load_roots(tmp_path / "bad.pem")


# Runs under the MicroPython unix port: mount the image, import the firmware from the image's
# own .mpy files, and let the firmware's trust store code find every root the index lists.
TRUST_CHECK = r"""
import os, sys, json
import powercut
bd = powercut.FileBlockDev(%(img)r, blocks=%(blocks)d, block_size=%(bs)d)
os.mount(os.VfsLfs2(bd), "/img", readonly=True)
sys.path.insert(0, "/img")
from kh.http import der, trust
info = json.loads(open("/img/board.json").read())
d = "/img" + info["certs"]
t = trust.Trust(d)
rows = []
for line in open(d + "/index.txt").read().split("\n"):
    if not line:
        continue
    fname, subject = line.split(" ", 1)
    data = open(d + "/" + fname, "rb").read()
    _issuer, subj = der.names(data)
    h = trust.name_hash(subj)
    found = [bytes(r) for r in t.roots(h)]
    rows.append([fname, subject, h, data in found])
print(json.dumps({"rows": rows, "files": sorted(os.listdir(d)), "module": trust.__file__}))
"""


@pytest.mark.parametrize("name", ["unix", "ESP32_GENERIC_C3"])
def test_trust_store_index_is_consistent_for_the_firmware(name, built, micropython, tmp_path):
    result = built(name)
    board = boards.load(name)
    img = tmp_path / "flash.img"
    shutil.copyfile(result.image, img)
    seen = micropython.json(TRUST_CHECK % {"img": str(img), "blocks": board.vfs_block_count, "bs": board.vfs_block_size})
    # The firmware code came from the image (bytecode .mpy is portable across architectures).
    assert seen["module"] == "/img/kh/http/trust.mpy"
    rows = seen["rows"]
    want = build.load_roots(None, ca_select())
    assert len(rows) == len(want) == result.trust["count"]
    assert sorted(seen["files"]) == sorted([r[0] for r in rows] + ["index.txt"])
    for fname, subject, h, found in rows:
        assert fname.startswith(h), f"{fname} is not named after its subject hash {h}"
        assert found, f"the firmware's Trust.roots({h}) does not return {fname}"
    assert {r[1] for r in rows} == {s for s, _d in want}
    assert result.trust_total == sum(len(d) for _s, d in want) + (result.stage / "certs" / "index.txt").stat().st_size


def test_whole_certifi_bundle_fits_and_is_indexed(tmp_path):
    result = build.build(boards.load("ESP32_GENERIC"), tmp_path / "out")
    n = len(build.load_roots())
    assert result.trust["count"] == n > 100
    files = build.read_littlefs(result.image.read_bytes())
    assert sum(1 for p in files if p.startswith("certs/") and p.endswith(".der")) == n
    assert len(files["certs/index.txt"].decode().strip().splitlines()) == n


def test_images_are_reproducible_and_carry_micropythons_mtime(tmp_path, micropython, monkeypatch):
    # With SOURCE_DATE_EPOCH, two builds give the same bytes, and MicroPython's os.stat reads
    # that time back (littlefs attribute 1, as extmod/vfs_lfs.c stores it).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01T00:00:00Z
    board = boards.load("unix")
    a = build.build(board, tmp_path / "a", select=["ISRG Root X1"])
    b = build.build(board, tmp_path / "b", select=["ISRG Root X1"])
    assert a.image.read_bytes() == b.image.read_bytes()
    img = tmp_path / "flash.img"
    shutil.copyfile(a.image, img)
    st = micropython.json(r'''
import os, json, powercut
bd = powercut.FileBlockDev(%r, blocks=%d)
os.mount(os.VfsLfs2(bd), "/img", readonly=True)
print(json.dumps([os.stat("/img/main.py")[8], os.stat("/img/kh/__init__.mpy")[8]]))
''' % (str(img), board.vfs_block_count))
    assert st == [1767225600, 1767225600]
