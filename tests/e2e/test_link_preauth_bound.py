"""A rogue central on the virtual radio against the link's pre-authentication rules
(PROTOCOL.md section 1). Each test asserts what the attacker got, then that the paired app
still works.

- A GATT-level rejection (a malformed fragment, a record whose next fragment never came) starts
  the connection's state again; it must not start the pre-authentication bound again, or a
  central that sends one bad fragment a little more often than the bound holds the one
  connection for ever.
- Before a session is authenticated, no record is larger than PAIR_B (98 bytes); a START that
  announces more must not make the device reserve a buffer of that length (8 KiB of a board's
  heap, for anyone in radio range, while the device may be firing a rule).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from keyhook import ble

from e2ekit import IDLE_MS, PREAUTH_MS, client, run

pytestmark = pytest.mark.timeout(240)

def app_works(dev, keystore):
    async def go():
        async with client(dev, keystore) as d:
            return (await d.info())["pairings"]
    return run(go())


def test_bad_fragments_do_not_restart_the_preauthentication_bound(bounded, keystore):
    dev = bounded

    async def hold():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            t0 = time.monotonic()
            # a malformed START (no length) every second: each one is rejected (bad_record),
            # which starts the connection's state again, but must not start the bound again
            while link.connected and time.monotonic() - t0 < 3 * PREAUTH_MS / 1000 + 10:
                try:
                    await link.client.write_gatt_char(link._rx, b"\x80", response=False)
                except Exception:
                    break
                await asyncio.sleep(1.0)
            return link.connected, time.monotonic() - t0
    still_connected, held = run(hold())
    assert not still_connected, f"the rogue central held the one connection for {held:.0f} s"
    assert held < PREAUTH_MS / 1000 + 8
    assert app_works(dev, keystore) == 1


def test_before_authentication_a_start_cannot_reserve_a_large_record(bounded, keystore):
    dev = bounded

    async def announce(total):
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await link.client.write_gatt_char(link._rx, bytes([0x80, total >> 8, total & 0xFF]) + b"x" * 17,
                                              response=False)
            t0 = time.monotonic()
            reply = await link.recv(10)  # the device's answer, whenever it comes
            return reply, time.monotonic() - t0
    reply, waited = run(announce(8256))
    # refused at the START, not after the 2 s a missing fragment takes to notice
    assert reply[0] == 0x7F and reply[1] == 1, reply  # ERROR bad_record
    assert b"authenticat" in reply[4:], reply
    assert waited < 1.5

    # many connections in a row, each announcing the largest record: the paired app still works
    for _ in range(6):
        run(announce(8256))
    assert app_works(dev, keystore) == 1
