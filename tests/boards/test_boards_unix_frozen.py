"""The unix board's frozen build (`make mp32-frozen`, boards/unix/manifest.py): the manifest freezes
the firmware and every stand-in the firmware imports, and a frozen `keyhook_board` (a module with
no folder) still finds the board's description."""

from __future__ import annotations

import os
import re

from keyhook.boards import mp
from keyhook.paths import FIRMWARE, UNIX_BOARD


def _manifest_calls():
    # MicroPython runs a manifest from its own folder, with its API as globals (tools/manifestfile.py)
    calls = []
    api = {k: (lambda *a, _k=k, **kw: calls.append((_k, a, kw))) for k in ("metadata", "include", "package",
                                                                          "module", "require", "freeze")}
    here = os.getcwd()
    os.chdir(UNIX_BOARD)
    try:
        exec((UNIX_BOARD / "manifest.py").read_text(), api)
        paths = [(k, a[0], os.path.abspath(kw.get("base_path", "."))) for k, a, kw in calls if k in ("package", "module")]
    finally:
        os.chdir(here)
    return calls, paths


def test_the_manifest_freezes_the_firmware_and_the_stand_ins_it_imports():
    calls, paths = _manifest_calls()
    assert ("include", ("$(PORT_DIR)/variants/standard/manifest.py",), {}) in calls  # asyncio, as the PyPI port
    assert ("package", "kh", str(FIRMWARE)) in paths
    frozen = {name[:-3] for k, name, base in paths if k == "module"}
    for k, name, base in paths:
        if k == "module":
            assert (UNIX_BOARD / name).is_file() and base == str(UNIX_BOARD)
    # every board module that the firmware or another stand-in imports is frozen with them
    imported = set()
    sources = list(FIRMWARE.rglob("*.py")) + [UNIX_BOARD / (m + ".py") for m in frozen]
    for src in sources:
        imported |= set(re.findall(r"^\s*(?:import|from)\s+(\w+)", src.read_text(), re.M))
    stand_ins = {p.stem for p in UNIX_BOARD.glob("*.py")} - {"manifest", "romboot", "fire", "validate"}
    assert imported & stand_ins <= frozen
    # the entry scripts run by path, so they stay files
    assert not frozen & {"romboot", "fire", "validate", "main"}


def test_a_frozen_keyhook_board_reads_the_board_description_the_host_names(tmp_path, monkeypatch):
    # frozen, the module's __file__ is a bare name: board.json is found through the environment
    script = tmp_path / "frozen_board.py"
    script.write_text(
        "src = open(%r).read()\n"
        "g = {'__name__': 'keyhook_board', '__file__': 'keyhook_board.py'}\n"
        "exec(src, g)\n"
        "info = g['setup']()\n"
        "print('NAME', info.get('name'), info.get('name_prefix'))\n" % str(UNIX_BOARD / "keyhook_board.py"))
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("KEYHOOK_SIM_STATE", str(tmp_path / "state"))
    p = mp.run_micropython(script, cwd=tmp_path, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "NAME unix keyhook-" in out


def test_sim_code_frozen_needs_an_interpreter_with_the_firmware_frozen_in(tmp_path, monkeypatch, capsys):
    # the stock interpreter holds no kh: `keyhook sim --code frozen` says so and how to build one,
    # before it starts anything or writes a state directory
    import pytest

    from keyhook.cli import main

    if mp.has_frozen_firmware():
        pytest.skip("this interpreter has the firmware frozen in (KEYHOOK_MICROPYTHON names a frozen build)")
    monkeypatch.setenv("KEYHOOK_RADIO", str(tmp_path / "radio"))
    with pytest.raises(SystemExit) as e:
        main(["sim", "--state", str(tmp_path / "state"), "--code", "frozen"])
    err = capsys.readouterr().err
    assert e.value.code != 0
    assert "has no keyhook firmware frozen in" in err and "make mp32-frozen" in err
    assert not (tmp_path / "state").exists()
