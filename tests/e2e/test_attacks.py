"""Attacks from outside on the simulated device (issue 9): a rogue central on the virtual radio,
a guest app, a hostile server on 127.0.0.1. Each test asserts what the attacker got: nothing.

The rogue app is the real host library with an identity of its choosing (an app identity is
only asserted in PAIR_REQ and HELLO, and every HELLO shows it on the air).
"""

from __future__ import annotations

import json

import pytest

from keyhook import ble
from keyhook.keystore import Keystore
from keyhook.session import PairingClosed, RequestFailed, pair

from e2ekit import client, run

pytestmark = pytest.mark.timeout(240)


def rogue(tmp_path, name, app_id=None) -> Keystore:
    """An app that claims `app_id` (someone else's identity) as its own."""
    ks = Keystore(tmp_path / name)
    if app_id is not None:
        ks._app_id = app_id
    return ks


def open_window(dev, keystore, seconds=60):
    async def go():
        async with client(dev, keystore) as d:
            return await d.open_pairing(seconds)
    return run(go())


def pair_with(dev, code, keystore):
    async def go():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            return await pair(link, code, keystore)
    return run(go())


def admin_works(dev, keystore):
    """The admin can still open a session and do an admin-only operation."""
    async def go():
        async with client(dev, keystore) as d:
            info = await d.info()
            code = await d.open_pairing(30)
            return info, code
    return run(go())


# ---- High 1: a window pairing never takes an identity that is paired, never becomes admin ----

def test_window_code_with_the_admins_identity_gets_nothing(paired, keystore, tmp_path):
    dev = paired
    code = open_window(dev, keystore)
    attacker = rogue(tmp_path, "rogue", keystore.app_id)
    with pytest.raises(PairingClosed) as e:
        pair_with(dev, code, attacker)
    assert "paired already" in str(e.value)
    assert attacker.list() == []  # no pairing key for the attacker
    info, new_code = admin_works(dev, keystore)
    assert info["pairings"] == 1
    assert len(new_code) == 8


def test_window_code_with_a_guests_identity_gets_nothing(paired, keystore, tmp_path):
    dev = paired
    guest = Keystore(tmp_path / "guest")
    pair_with(dev, open_window(dev, keystore), guest)
    code = open_window(dev, keystore)
    attacker = rogue(tmp_path, "rogue", guest.app_id)
    with pytest.raises(PairingClosed):
        pair_with(dev, code, attacker)
    assert attacker.list() == []

    async def guest_session():
        async with client(dev, guest) as d:
            return await d.info()
    assert run(guest_session())["pairings"] == 2  # the guest's own key still opens its session
    # the window is still open for the app it was meant for: a new identity pairs, as a guest
    newcomer = Keystore(tmp_path / "newcomer")
    pair_with(dev, code, newcomer)

    async def newcomer_is_not_admin():
        async with client(dev, newcomer) as d:
            with pytest.raises(RequestFailed) as e:
                await d.open_pairing(30)
            return e.value.code
    assert run(newcomer_is_not_admin()) == "forbidden"
