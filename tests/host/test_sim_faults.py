"""`keyhook sim --fault SPEC`: specs are checked before a device starts, with a clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keyhook import KeyhookError
from keyhook.sim import faults


@pytest.mark.parametrize("spec, value", [
    ("irq-memoryerror:3", "irq-memoryerror:3"), (" drop-write:12 ", "drop-write:12"),
    ("link-stall:3000@20", "link-stall:3000@20")])
def test_good_specs(spec, value):
    assert faults.parse(spec) == value


@pytest.mark.parametrize("spec, why", [
    ("irq-memoryerror", "unknown fault"), ("irq-memoryerror:0", "must look like N"),
    ("link-stall:3000", "must look like MS@N"), ("drop-write:-1", "must look like N"),
    ("stall:3", "unknown fault"), ("link-stall:@20", "must look like MS@N")])
def test_bad_specs_say_what_is_wrong(spec, why):
    with pytest.raises(KeyhookError, match=why) as e:
        faults.parse(spec)
    assert "irq-memoryerror:N" in e.value.hint


def test_each_kind_once_and_the_environment_value():
    assert faults.env_value(["drop-write:4", "link-stall:10@2"]) == "drop-write:4,link-stall:10@2"
    with pytest.raises(KeyhookError, match="given twice"):
        faults.env_value(["drop-write:4", "drop-write:5"])


def test_cli_refuses_a_bad_fault_before_starting(tmp_path):
    r = subprocess.run([sys.executable, "-m", "keyhook", "--radio", str(tmp_path / "r"), "sim", "--state",
                        str(tmp_path / "s"), "--fault", "link-stall:3000"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "error: fault 'link-stall:3000': the argument must look like MS@N" in r.stderr
    assert "hint: use irq-memoryerror:N" in r.stderr
    assert not (tmp_path / "s").exists()  # no device was started
