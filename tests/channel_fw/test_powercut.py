"""Pairings survive a power cut at every flash modification, on real littlefs
(tests/mp/powercut.py): after the reboot the device holds exactly the old or exactly the new
set of pairings, its identity and setup code are intact, and the keys are the stored ones."""

from __future__ import annotations

import pytest

SCRIPT = """
import json, powercut
from kh.session.device import Device
bd = powercut.RamBlockDev(blocks=32)
A1, A2, A3 = "1" * 32, "2" * 32, "3" * 32
K1, K2, K3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
first = {}

def dev():
    return Device("/flash/kh", log=lambda s: None)

def prepare():
    d = dev()
    d.add_pairing(A1, K1, False)
    d.add_pairing(A2, K2, True)
    first["id"] = (d.device_id, d.setup_code())

def update():
    d = dev()
    d.add_pairing(A3, K3, True)   # an admin window pairing
    d.remove_pairing(A2)          # and a revocation

def check(k):
    d = dev()
    keys = [(a, d.pairing_key(a).hex()) for a in d.pairings()]
    return [d.device_id == first["id"][0] and d.setup_code() == first["id"][1], keys]

print(json.dumps(powercut.sweep(bd, "/flash", prepare, update, check, torn=TORN)))
"""


@pytest.mark.parametrize("torn", [False, True])
def test_pairings_survive_power_cut_at_every_write(micropython, torn):
    r = micropython.json(SCRIPT.replace("TORN", str(torn)))
    assert len(r) > 3, "suspiciously few flash writes"
    k1, k2, k3 = ("1" * 32, "01" * 32), ("2" * 32, "02" * 32), ("3" * 32, "03" * 32)
    allowed = {(k1, k2), (k1, k2, k3), (k1, k3)}  # before, between the two changes, after
    seen = set()
    for k, (ident_ok, keys) in r:
        assert ident_ok, k
        state = tuple(tuple(x) for x in keys)
        assert state in allowed, (k, state)
        seen.add(state)
    assert tuple(tuple(x) for x in r[0][1][1]) == (k1, k3)  # the uncut update
    assert (k1, k2) in seen
