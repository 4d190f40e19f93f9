"""Code in place: the firmware as a ROMFS image, mounted and imported by the real MicroPython,
and `keyhook deploy` choosing between a ROMFS partition and .mpy files.

No board here: the ROMFS partition is a file standing for the flash, the probe runs under the
MicroPython unix port with `vfs.rom_ioctl` answering from that file (as the esp32 port's
`esp32_partition.c` does), and `mpremote romfs deploy` writes the image into it. The unix port
mounts the same bytes with `vfs.VfsRom`, as the esp32 port mounts its partition at /rom.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from keyhook import KeyhookError, boards
from keyhook.boards import build, heap, mp, romfs
from keyhook.boards import deploy as kdeploy
from keyhook.paths import FIRMWARE

from test_boards_deploy import FakeBoard

# The interpreter `keyhook.boards.mp` runs (the PyPI unix port, or the one KEYHOOK_MICROPYTHON names,
# e.g. a 32-bit build); KEYHOOK_MICROPYTHON32 (a 32-bit build, as `make bench` uses) adds one more to the same tests.
INTERPRETERS = [pytest.param(None, id="default")]
if os.environ.get("KEYHOOK_MICROPYTHON32"):
    INTERPRETERS.append(pytest.param(os.environ["KEYHOOK_MICROPYTHON32"], id="32-bit"))


@pytest.fixture(scope="module")
def unix_build(tmp_path_factory) -> build.BuildResult:
    return build.build(boards.load("unix"), tmp_path_factory.mktemp("romfs-build"), trust=False)


# Runs under MicroPython: mount the image as the esp32 port does at start-up (VfsRom at /rom,
# "/rom" and "/rom/lib" appended to sys.path), run the start-up lines of the real main.py with
# kh.app.main's main() replaced, then import every firmware module and say where each came from.
MOUNT_AND_IMPORT = """
import sys, vfs
f = open(IMAGE, 'rb')
data = f.read()
f.close()
vfs.mount(vfs.VfsRom(data), '/rom')
sys.path.append('/rom')
sys.path.append('/rom/lib')
src = open(MAIN).read().replace('from kh.app.main import main', 'main = lambda: print("main called")')
exec(src)
print('path', sys.path[:2])
import os
print('top', os.listdir('/rom'))
for name in MODULES:
    m = __import__(name, None, None, ['x'])
    print('from', name, m.__file__)
"""


def modules_of(stage: Path) -> list[str]:
    return sorted(p.relative_to(stage).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
                  for p in (stage / "kh").rglob("*.mpy"))


def run_mp(binary: str | None, script: str, cwd: Path, extra: dict) -> subprocess.CompletedProcess:
    body = "".join(f"{k} = {v!r}\n" for k, v in extra.items()) + script
    (cwd / "check.py").write_text(body)
    cmd = [binary or mp.micropython_binary(), "check.py"]
    env = dict(os.environ)
    # Only the simulated board's stand-ins and the frozen modules: no firmware source on the path.
    env["MICROPYPATH"] = os.pathsep.join([str(boards.load("unix").path), ".frozen"])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("binary", INTERPRETERS)
def test_the_firmware_imports_from_a_romfs_image(unix_build, tmp_path, binary):
    image = romfs.build_image(unix_build.stage)
    assert image.startswith(romfs.ROMFS_HEADER) and romfs.image_length(image) == len(image)
    (tmp_path / "fw.romfs").write_bytes(image)
    # A stale kh/ on the file system (the cwd is first on sys.path) must not win over ROM.
    (tmp_path / "kh").mkdir()
    (tmp_path / "kh" / "__init__.py").write_text("raise ImportError('stale kh on the file system')\n")
    mods = modules_of(unix_build.stage)
    assert "kh.app.main" in mods and "kh.http.client" in mods
    proc = run_mp(binary, MOUNT_AND_IMPORT, tmp_path,
                  {"IMAGE": "fw.romfs", "MAIN": str(FIRMWARE / "main.py"), "MODULES": mods})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "main called" in proc.stdout
    assert "path ['/rom', '/rom/lib']" in proc.stdout
    assert "top ['kh']" in proc.stdout  # main.py and board.json stay on the file system
    origins = dict(line.split()[1:3] for line in proc.stdout.splitlines() if line.startswith("from "))
    assert set(origins) == set(mods)
    assert all(f.startswith("/rom/kh/") for f in origins.values()), origins


def test_the_image_holds_only_the_compiled_firmware(unix_build, tmp_path):
    image = romfs.build_image(unix_build.stage)
    # Only kh/**.mpy (the listing of /rom is checked by the import test).
    assert len(image) < unix_build.mpy_total + 4096
    src = tmp_path / "src"
    shutil.copytree(FIRMWARE / "kh", src / "kh")
    with pytest.raises(KeyhookError, match="is source"):
        romfs.build_image(src)
    with pytest.raises(KeyhookError, match="does not exist"):
        romfs.build_image(tmp_path / "nothing")
    with pytest.raises(KeyhookError, match="not a ROMFS image"):
        romfs.image_length(b"\x00" * 16)
    assert romfs.image_length(romfs.empty_image()) == len(romfs.empty_image())


# --- deploy ---------------------------------------------------------------------------------

FAKE_VFS = """
class _RomVfs:
    @staticmethod
    def rom_ioctl(op, *args):
        if op == 1:
            return 1 if ROM_SIZE else 0
        if op == 2:
            if not ROM_SIZE:
                return -22
            f = open(ROM_FILE, 'rb')
            b = bytearray(f.read())
            f.close()
            return b
        return -22
"""


class RomBoard(FakeBoard):
    """A FakeBoard whose MicroPython has a ROMFS partition of `rom_size` bytes (0: none)."""

    def __init__(self, root: Path, rom_size: int, heapsize: int | None = None, **kw):
        super().__init__(root, **kw)
        self.rom_size = rom_size
        self.rom_file = root.parent / "romfs-partition.bin"
        self.rom_file.write_bytes(b"\xff" * rom_size)
        self.heapsize = heapsize
        self.rom_writes = 0

    def rom(self) -> bytes:
        return self.rom_file.read_bytes()

    def __call__(self, cmd, timeout):
        args = list(cmd[5:])
        if args and args[0] == "exec":
            script = args[1].replace("    import vfs\n", "    vfs = _RomVfs\n")
            script = (FAKE_VFS + f"ROM_SIZE = {self.rom_size}\nROM_FILE = {str(self.rom_file)!r}\n" + script)
            cmd = [*cmd[:5], "exec", script]
        if args and args[0] == "romfs":
            # `romfs --partition 0 deploy IMAGE [+ ...]`: write the image, then the rest.
            assert args[1:4] == ["--partition", "0", "deploy"], args
            data = Path(args[4]).read_bytes()
            assert self.rom_size, "mpremote: ROMFS0 partition not found on device"
            assert len(data) <= self.rom_size, "mpremote: ROMFS image is too big for the target partition"
            self.rom_file.write_bytes(data + b"\xff" * (self.rom_size - len(data)))
            self.rom_writes += 1
            self.commands.append(args[:5])
            rest = args[6:] if len(args) > 5 else []
            if not rest:
                return subprocess.CompletedProcess(cmd, 0, "", "")
            return super().__call__([*cmd[:5], *rest], timeout)
        if self.heapsize and args and args[0] == "exec":
            return self._exec_with_heap(cmd)
        return super().__call__(cmd, timeout)

    def _exec_with_heap(self, cmd):
        self.commands.append(list(cmd[5:]))
        script = self.root.parent / "probe.py"
        arch = boards.MPY_ARCH_CODE["xtensawin"]
        script.write_text(cmd[6].replace("sys.implementation._machine", repr(self.machine))
                          .replace("getattr(sys.implementation, '_mpy', 0)", str(6 | 3 << 8 | arch << 10)))
        proc = mp.run_micropython(script, cwd=self.root, timeout=60, heapsize=self.heapsize)
        assert proc.returncode == 0, proc.stderr.decode()
        return subprocess.CompletedProcess(cmd, 0, proc.stdout.decode(), "")


def device(tmp_path, rom_size: int, **kw) -> RomBoard:
    root = tmp_path / "device"
    root.mkdir(parents=True)
    (root / "boot.py").write_text("# MicroPython's own boot.py\n")
    (root / "data").mkdir()
    (root / "data" / "rules.json").write_text("{}")
    return RomBoard(root, rom_size, **kw)


def kw() -> dict:
    return {"select": ["ISRG Root X1"]}


def test_deploy_puts_the_firmware_in_the_romfs_partition(tmp_path):
    dev = device(tmp_path, 0x20000)  # the romfs row of MicroPython's partitions-4MiB-romfs.csv
    # An earlier .mpy deploy left kh/ on the file system.
    kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev, code="mpy")
    assert "kh/app/main.mpy" in dev.files()
    warned: list[str] = []
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(), runner=dev, warn=warned.append)
    assert r.code == "romfs" and r.romfs_written and dev.rom_writes == 1
    assert not any("no code in place" in w for w in warned)
    files = dev.files()
    assert not any(p.startswith("kh/") for p in files) and not (dev.root / "kh").exists()
    assert {"main.py", "board.json", "certs/index.txt", "data/rules.json", "boot.py"} <= set(files)
    # The partition holds the image of the firmware compiled for the board.
    rom = dev.rom()
    n = romfs.image_length(rom)
    assert b"main.mpy" in rom[:n] and b"client.mpy" in rom[:n] and r.romfs_size == n
    # Unchanged firmware: the image is not written again, nothing is copied.
    r2 = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(), runner=dev)
    assert r2.code == "romfs" and not r2.romfs_written and r2.copied == [] and dev.rom_writes == 1
    assert dev.commands[-1] == ["reset"]


@pytest.mark.parametrize("binary", INTERPRETERS)
def test_a_deployed_device_imports_its_firmware_from_rom(tmp_path, binary):
    # Deploy for the unix board's architecture is refused (simulated), so deploy for the ESP32
    # and check with plain bytecode: the .mpy files are portable (no native code).
    dev = device(tmp_path, 0x20000)
    kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev)
    (dev.root / "fw.romfs").write_bytes(dev.rom())
    proc = run_mp(binary, MOUNT_AND_IMPORT, dev.root,
                  {"IMAGE": "fw.romfs", "MAIN": "main.py", "MODULES": ["kh.app.main", "kh.store.files"]})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "from kh.app.main /rom/kh/app/main.mpy" in proc.stdout


def test_no_romfs_falls_back_to_mpy_files_and_says_what_it_costs(tmp_path):
    dev = FakeBoard(tmp_path / "d")
    dev.root.mkdir()
    warned: list[str] = []
    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev, warn=warned.append)
    assert r.code == "mpy" and "kh/app/main.mpy" in dev.files()
    cost = heap.FIRMWARE_HEAP_KIB["mpy"] - heap.FIRMWARE_HEAP_KIB["romfs"]
    w = next(w for w in warned if "no code in place" in w)
    assert "no ROMFS support" in w and f"about {cost} KiB more heap" in w and "make firmware BOARD=ESP32_GENERIC" in w
    assert r.warnings == warned


def test_a_partition_too_small_or_absent(tmp_path):
    dev = device(tmp_path, 4096)
    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev, dry_run=True)
    assert r.code == "mpy" and any("ROMFS partition holds 4096 bytes" in w for w in r.warnings)
    with pytest.raises(KeyhookError) as e:
        kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev, code="romfs")
    assert "cannot run in place" in str(e.value) and "--code mpy" in e.value.hint
    assert dev.rom_writes == 0 and set(dev.files()) == {"boot.py", "data/rules.json"}
    nopart = device(tmp_path / "n", 0)
    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=nopart, dry_run=True)
    assert r.code == "mpy" and any("no ROMFS partition" in w for w in r.warnings)


def test_mpy_deploy_retires_code_in_rom(tmp_path):
    dev = device(tmp_path, 0x20000)
    kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev)
    assert b"main.mpy" in dev.rom()
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(), runner=dev, code="mpy")
    assert r.code == "mpy" and r.romfs_written and "kh/app/main.mpy" in dev.files()
    rom = dev.rom()
    assert rom[:romfs.image_length(rom)] == romfs.empty_image()
    # Once empty, it stays as it is.
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(), runner=dev, code="mpy")
    assert not r.romfs_written and dev.rom_writes == 2


def test_deploy_warns_before_writing_when_the_heap_is_too_small(tmp_path):
    # A MicroPython with a 40 KiB heap (less than any form needs), no way to grow it, no ROMFS.
    dev = device(tmp_path, 0, heapsize=40 * 1024)
    seen: list[tuple[str, int]] = []

    def warn(text):
        seen.append((text, len(dev.commands)))

    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=dev, warn=warn)
    assert r.heap is not None and 30 * 1024 < r.heap.size <= 40 * 1024
    assert 0 < r.heap.largest_free <= r.heap.free <= r.heap.size
    w, commands_before = seen[0]
    assert f"needs about {heap.FIRMWARE_HEAP_KIB['mpy']} KiB" in w and "will not fit" in w and "KiB GC heap" in w
    assert commands_before == 1  # only the probe had run: nothing was written yet
    roomy = device(tmp_path / "r", 0x20000, heapsize=512 * 1024)
    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(), runner=roomy)
    assert r.warnings == [] and r.heap.free > 400 * 1024


def test_board_names_of_the_spiram_images():
    assert kdeploy.board_from_machine("Generic ESP32 module with SPIRAM with ESP32") == "ESP32_GENERIC-SPIRAM"
    assert kdeploy.board_from_machine("Generic ESP32 module with ESP32") == "ESP32_GENERIC"
    assert (kdeploy.board_from_machine("Generic ESP32S3 module with Octal-SPIRAM with ESP32S3")
            == "ESP32_GENERIC_S3-SPIRAM_OCT")
    assert kdeploy.board_from_machine("Generic ESP32S3 module with ESP32S3") == "ESP32_GENERIC_S3"


def test_cli_deploy_says_where_the_code_went(tmp_path, capsys, monkeypatch):
    from keyhook.cli import main

    dev = device(tmp_path, 0x20000)
    monkeypatch.setattr(kdeploy, "_default_runner", dev)
    monkeypatch.setattr(kdeploy.serialport, "check", lambda port: None)
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--port", "/dev/ttyFAKE", "--board", "ESP32_GENERIC", "--ca", "ISRG Root X1"])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    assert "heap: " in out.err and "KiB GC heap" in out.err
    assert "firmware in place: ROMFS image of" in out.out and "bytes written" in out.out
    # --code mpy on the same board: the files, and the ROM emptied.
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--port", "/dev/ttyFAKE", "--code", "mpy", "--ca", "ISRG Root X1"])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    assert "copied kh/app/main.mpy" in out.out and "firmware in place" not in out.out
    nopart = device(tmp_path / "n", 0)
    monkeypatch.setattr(kdeploy, "_default_runner", nopart)
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--port", "/dev/ttyFAKE", "--board", "ESP32_GENERIC", "--code", "romfs", "--no-trust"])
    out = capsys.readouterr()
    assert e.value.code == 2 and "cannot run in place" in out.err and "hint:" in out.err
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--port", "/dev/ttyFAKE", "--board", "ESP32_GENERIC", "--no-trust", "--dry-run"])
    out = capsys.readouterr()
    assert e.value.code == 0 and "warning: no code in place on this ESP32_GENERIC" in out.err
