"""A token rotation cut short by a power failure at every flash modification, on real littlefs
(tests/mp/powercut.py): after the reboot the state holds exactly the old or exactly the new
refresh token, never a mix or nothing, and the device carries on from it."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("torn", [False, True])
def test_rotation_survives_power_cut_at_every_write(mpo, torn):
    r = mpo.json(f"""
        import powercut
        bd = powercut.RamBlockDev(blocks=32)
        clock = K.Clock(1000000)
        d = K.definition()

        def prepare():
            # A previous rotation left RT1 (with AT1) in the state file.
            K.run(Tokens("/flash/st", clock=clock).header(d, "k", K.Endpoint(rotate=True)))

        def update():
            # An hour later (AT1 expired) after a reboot: the endpoint rotates RT1 to RT2.
            clock.t = 1003600
            ep = K.Endpoint(rotate=True)
            ep.n = 1
            K.run(Tokens("/flash/st", clock=clock).header(d, "k", ep))

        def check(k):
            e = K.stored("/flash/st")
            # What the rebooted device redeems next, and whether it can still fire.
            ep = K.Endpoint(rotate=True)
            ep.n = 10
            clock.t = 1010000
            h = K.run(Tokens("/flash/st", clock=clock).header(d, "k", ep))
            sent = [c["body"] for c in ep.calls]
            return [e and e.get("rt"), e and e.get("at"), sent, h]

        K.out(powercut.sweep(bd, "/flash", prepare, update, check, torn={torn}))
    """)
    assert len(r) > 3, "the rotation made suspiciously few flash writes"
    outcomes = set()
    for k, (rt, at, sent, header) in r:
        assert (rt, at) in {("RT1", "AT1"), ("RT2", "AT2")}, (k, rt, at)
        assert sent == ["grant_type=refresh_token&refresh_token=" + rt], (k, sent)
        assert header == "Bearer AT11"
        outcomes.add(rt)
    assert r[0][1][0] == "RT2"           # the uncut rotation stored the new token
    assert outcomes == {"RT1", "RT2"}     # some cuts land before the rename, some after
