"""Attacks from outside on the simulated device (issue 9): a rogue central on the virtual radio,
a guest app, a hostile server on 127.0.0.1. Each test asserts what the attacker got: nothing.

The rogue app is the real host library with an identity of its choosing (an app identity is
only asserted in PAIR_REQ; a session's HELLO names no app).
"""

from __future__ import annotations

import json

import pytest

from keyhook import ble
from keyhook.session.keystore import Keystore
from keyhook.session import PairingClosed, RequestFailed, pair

from e2ekit import IDLE_MS, PREAUTH_MS, client, run

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


# ---- Medium 2: what a guest may do (PROTOCOL.md section 6, "Who may do what") ----

def hook(name, url, **extra):
    d = {"method": "Post", "url": url, "securityLevel": "AllowHttp", "timeout": 5000,
         "additionalHttpHeaders": {"X-Rule": name}}
    d.update(extra)
    return {"functionName": name, "definition": d}


def test_a_guest_cannot_change_trust_wifi_or_time(paired, keystore, tmp_path, pki):
    dev = paired
    guest = Keystore(tmp_path / "guest")
    pair_with(dev, open_window(dev, keystore), guest)

    async def before():
        async with client(dev, keystore) as d:
            return await d.request("trust.list"), await d.info()
    roots0, info0 = run(before())
    import base64

    async def attack():
        async with client(dev, guest) as d:
            out = {}
            for op, fields in (("trust.add", {"der": base64.b64encode(pki.sibling.der).decode()}),
                               ("trust.remove", {"root": roots0["roots"][0]["id"]}),
                               ("wifi", {"ssid": "evil", "password": "evil-pw-123"}),
                               ("time", {"unix": 1700000001})):
                with pytest.raises(RequestFailed) as e:
                    await d.request(op, **fields)
                out[op] = e.value.code
            apps = (await d.request("pairing.list"))["apps"]
            return out, apps
    codes, apps = run(attack())
    assert codes == {"trust.add": "forbidden", "trust.remove": "forbidden", "wifi": "forbidden",
                     "time": "forbidden"}
    assert apps == [guest.app_id]  # a guest does not learn the admin's identity
    roots1, info1 = run(before())
    assert roots1["roots"] == roots0["roots"]  # nothing added, nothing removed
    assert info1["wifi"]["ssid"] == info0["wifi"]["ssid"] == "lab"
    assert abs(info1["clock"] - info0["clock"]) < 600  # not set back to 2023


def test_a_guest_cannot_replace_or_delete_the_admins_rules(paired, keystore, tmp_path, plain):
    dev = paired
    guest = Keystore(tmp_path / "guest")
    pair_with(dev, open_window(dev, keystore), guest)

    async def admin_push():
        async with client(dev, keystore) as d:
            await d.put_rules([hook("door", plain.url("/admin-door"))])
    run(admin_push())
    evil = hook("door", plain.url("/evil-door"))

    async def attack():
        async with client(dev, guest) as d:
            out = []
            with pytest.raises(RequestFailed) as e:
                await d.request("rules.put", rules=[evil])
            out.append(e.value.code)
            with pytest.raises(RequestFailed) as e:  # the staged path too
                await d.request("rules.stage", txn=None, rules=[evil], commit=True)
            out.append(e.value.code)
            with pytest.raises(RequestFailed) as e:
                await d.request("rules.delete", functionName="door")
            out.append(e.value.code)
            # its own rules are its own: stored, replaced, deleted
            await d.request("rules.put", rules=[hook("mine", plain.url("/mine"))])
            await d.request("rules.put", rules=[hook("mine", plain.url("/mine2"))])
            assert (await d.request("rules.delete", functionName="mine"))["deleted"] is True
            result = await d.trigger("door")  # triggering a shared rule is allowed
            return out, result
    codes, result = run(attack())
    assert codes == ["forbidden"] * 3
    assert result["status"] == 200
    assert [r.target for r in plain.requests] == ["/admin-door"]  # the admin's rule, unchanged

    async def admin_overrides():
        async with client(dev, guest) as d:
            await d.request("rules.put", rules=[hook("guest-rule", plain.url("/g"))])
        async with client(dev, keystore) as d:  # the admin may remove a guest's rule
            return (await d.request("rules.delete", functionName="guest-rule"))["deleted"]
    assert run(admin_overrides()) is True


# ---- Medium 3: the one connection cannot be held; a flood leaves nothing behind ----

async def _dropped_within(link, seconds):
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while link.connected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return not link.connected


def test_an_unauthenticated_central_cannot_hold_the_connection(bounded, keystore):
    dev = bounded

    async def hold():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            # a START fragment announcing the largest record, then nothing
            await link.client.write_gatt_char(link._rx, bytes([0x80, 8256 >> 8, 8256 & 0xFF]) + b"x" * 17,
                                              response=False)
            return await _dropped_within(link, PREAUTH_MS / 1000 + 15)
    assert run(hold()) is True  # the device dropped the stalled central

    async def hello_only():
        # a handshake begun and never finished (HELLO, then no HELLO_APP) is bounded the same way
        import os
        from keyhook.session import records
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await link.send(bytes([records.HELLO]) + os.urandom(32))
            await link.recv(10)  # HELLO_DEV
            return await _dropped_within(link, PREAUTH_MS / 1000 + 15)
    assert run(hello_only()) is True

    async def real_app():
        async with client(dev, keystore) as d:
            return (await d.info())["pairings"]
    assert run(real_app()) == 1


def test_an_idle_session_is_dropped_and_the_device_advertises_again(bounded, keystore):
    dev = bounded

    async def idle():
        async with client(dev, keystore) as d:
            await d.info()
            return await _dropped_within(d.session.link, IDLE_MS / 1000 + 15)
    assert run(idle()) is True
    found = run(ble.scan(radio=str(dev.radio), timeout=2.0))
    assert dev.address in [f.address for f in found]  # connectable again

    async def again():
        async with client(dev, keystore) as d:
            return (await d.info())["pairings"]
    assert run(again()) == 1


# ---- Medium 4: someone holding the board reads the flash: no former secret is there ----

def test_deleted_rules_and_a_reset_leave_no_secret_on_flash(paired, keystore, pki, plain):
    from keyhook.lab.tokenserver import TokenServer

    dev = paired
    image = dev.state / "flash.img"
    device_key = keystore.list()[0].key.hex()
    with TokenServer(refresh_token="rt-first-SECRET", rotate=True, expires_in=3600,
                     certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as idp:
        oauth = {"functionName": "oauth", "definition": {
            "method": "Post", "url": idp.resource_url, "securityLevel": "TlsPinnedCertificate",
            "pinnedCertificate": pki.intermediate.pem, "timeout": 5000,
            "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                               "refreshToken": "rt-first-SECRET", "tokenEndpoint": idp.token_url,
                               "clientId": "keyhook-e2e"}}}
        header = hook("header", plain.url("/h"), additionalHttpHeaders={"X-Api-Key": "hdr-SECRET-4711"},
                      authentication={"apiAuthenticationType": "OAuth2IssuedAccessToken",
                                      "accessToken": "at-static-SECRET"},
                      body={"contentType": "application/json", "content": {"pin": "body-SECRET-0815"}})
        keep = hook("keep", plain.url("/k"), additionalHttpHeaders={"X-Keep": "kept-SECRET-1234"})

        async def push_fire_delete():
            async with client(dev, keystore) as d:
                await d.put_rules([oauth, header, keep])
                assert (await d.trigger("oauth"))["status"] == 200
                assert (await d.trigger("header"))["status"] == 200
                await d.delete_rule("oauth")
                await d.delete_rule("header")
        run(push_fire_delete())
        issued = [idp.issued_refresh_tokens[-1], idp.issued_access_tokens[-1]]
    dev.stop()
    flash = image.read_bytes()
    gone = ["rt-first-SECRET", *issued, "hdr-SECRET-4711", "at-static-SECRET", "body-SECRET-0815"]
    assert [s for s in gone if s.encode() in flash] == []  # the deleted rules' secrets
    assert b"kept-SECRET-1234" in flash  # the rule that stays is still there (the search works)
    dev.start()

    async def reset():
        async with client(dev, keystore) as d:
            await d.reset()
    run(reset())
    dev.proc.wait(10)
    flash = image.read_bytes()
    gone += ["kept-SECRET-1234", "secret-wifi-pw", device_key]
    assert [s for s in gone if s.encode() in flash] == []
    dev.start()
    assert dev.setup_code  # the label's code pairs again


# ---- Low 9: nothing unauthenticated changes state ----

def test_a_refused_pair_req_leaves_the_engines_connection_alone(paired, keystore, plain):
    dev = paired

    async def push_and_fire():
        async with client(dev, keystore) as d:
            await d.put_rules([hook("bell", plain.url("/bell"))])
            return (await d.trigger("bell"))["status"]
    assert run(push_and_fire()) == 200

    async def stranger():
        from keyhook.session import records
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await link.send(bytes([records.PAIR_REQ]) + records.u8len(records.app_identity("ab" * 16)))
            return await link.recv(10)
    reply = run(stranger())
    assert reply[0] == 0x7F and reply[1] == 6  # pairing_closed

    async def fire_again():
        async with client(dev, keystore) as d:
            return await d.trigger("bell")
    assert run(fire_again())["status"] == 200
    plain.settle()
    # the kept-alive connection was reused: the stranger did not close it
    assert [len(c.requests) for c in plain.connections] == [2]


# ---- Low 10, 11: the host's terminal output ----

def test_what_a_device_or_a_rule_says_reaches_the_terminal_as_inert_text(paired, keystore, tmp_path, plain):
    # a rule name with rich markup (a fake hyperlink) and a bidi override (the device refuses
    # control characters), stored on the device and shown back by `rules list` and `trigger`
    from e2ekit import cli

    dev = paired
    name = "[link=http://evil.example]ok[/link]\u202egnp.exe"
    f = tmp_path / "r.json"
    f.write_text(json.dumps(hook(name, plain.url("/x"))))
    cli("rules", "push", dev.address, str(f), radio=dev.radio, config=keystore.root)
    for args in (("rules", "list", dev.address), ("trigger", dev.address, name)):
        out = cli(*args, radio=dev.radio, config=keystore.root)
        shown = out.stdout + out.stderr
        assert "\u202e" not in shown and "\x1b" not in shown, args
        assert "[link=" in shown, args  # printed, not rendered as a hyperlink
        if args[0] == "trigger":  # one line (the list wraps the name in its table cell)
            assert "[link=http://evil.example]ok[/link]\\u202egnp.exe" in shown, shown


def test_an_advertised_name_reaches_scan_as_inert_text(tmp_path, radio, certs):
    from keyhook.sim.device import SimDevice

    from e2ekit import cli

    dev = SimDevice(radio, tmp_path / "state", certs=certs, name="\x1b]0;p\x07[link=http://e]x")
    dev.start()
    try:
        out = cli("scan", "--timeout", "1", radio=dev.radio, config=tmp_path / "cfg")
    finally:
        dev.stop()
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "[link=http://e]x" in out.stdout


def test_host_errors_do_not_print_a_rules_secrets(tmp_path):
    from e2ekit import cli

    bad = [hook("a", "ftp://example.test/hook?api_key=SECRET-1"),
           hook("b", "https://user:SECRET-2@example.test:0/x"),
           hook("c", "http://example.test/x?token=SECRET-3", securityLevel="TlsWithCACheck")]
    for rule in bad:
        f = tmp_path / "r.json"
        f.write_text(json.dumps(rule))
        for args in (("rules", "push", "24:6F:00:00:00:01", str(f)), ("fire", str(f))):
            out = cli(*args, radio=tmp_path / "radio", config=tmp_path / "cfg", check=False)
            assert out.returncode in (1, 2), (args, out.stdout, out.stderr)  # refused (fire: by the engine)
            assert "SECRET" not in out.stdout + out.stderr, (args, out.stdout, out.stderr)


# ---- Low 13: every request gets an answer or a clean close ----

def test_a_request_with_a_huge_id_gets_an_answer(paired, keystore):
    dev = paired

    async def go():
        async with client(dev, keystore) as d:
            s = d.session
            await s.send_message({"id": "x" * 8150, "op": "info"})
            answer = await s.recv_message(timeout=15)
        async with client(dev, keystore) as d:  # and the device is fine afterwards
            return answer, (await d.info())["pairings"]
    answer, pairings = run(go())
    assert answer == {"id": None, "ok": False, "error": "too_large",
                      "message": "the answer does not fit one message; ask for less"}
    assert pairings == 1


# ---- Low 14: the simulated device's keys and button are its user's only ----

def test_the_simulated_devices_state_and_radio_are_private(tmp_path, radio, certs):
    import stat

    from keyhook.sim.device import SimDevice

    state, shared = tmp_path / "state", radio / "r"
    for d in (state, shared):
        d.mkdir(mode=0o755)
        d.chmod(0o755)  # as a umask of 022 leaves a directory
    dev = SimDevice(shared, state, certs=certs)
    dev.start()
    try:
        modes = {d.name: stat.S_IMODE(d.stat().st_mode) for d in (state, shared)}
    finally:
        dev.stop()
    assert modes == {"state": 0o700, "r": 0o700}  # other users reach neither the keys nor the button


# ---- Low 8: ownership over the device's life ----

def test_the_admin_hands_over_before_leaving_and_the_last_app_leaves_nothing(paired, keystore, tmp_path, plain):
    dev = paired
    guest = Keystore(tmp_path / "guest")
    pair_with(dev, open_window(dev, keystore), guest)

    async def admin_leaves():
        async with client(dev, keystore) as d:
            await d.put_rules([hook("door", plain.url("/d"), additionalHttpHeaders={"X-Key": "door-SECRET-77"})])
            with pytest.raises(RequestFailed) as e:
                await d.unpair()  # the guest would be left without an admin
            code = e.value.code
            await d.hand_over_admin(guest.app_id)
            await d.unpair()  # now a guest: it may go
            return code
    assert run(admin_leaves()) == "forbidden"

    async def guest_is_admin():
        async with client(dev, guest) as d:
            return len(await d.open_pairing(30)), (await d.request("pairing.list"))["apps"]
    assert run(guest_is_admin()) == (8, [guest.app_id])

    async def last_leaves():
        async with client(dev, guest) as d:
            await d.unpair()
    run(last_leaves())
    dev.proc.wait(30)
    assert b"door-SECRET-77" not in (dev.state / "flash.img").read_bytes()
    dev.start()
    fresh = Keystore(tmp_path / "fresh")  # whoever holds the label's code next
    pair_with(dev, dev.setup_code, fresh)

    async def inherited():
        async with client(dev, fresh) as d:
            return await d.list_rules(), (await d.info())["wifi"]["ssid"]
    assert run(inherited()) == ([], None)


# ---- Low 7: lifting a lock-out is deliberate, and an ordinary press does not weaken the limit ----

def test_a_press_does_not_reset_the_limit_and_the_long_press_that_does_fires_nothing(paired, keystore, tmp_path, plain):
    import time

    from keyhook.session import RateLimited, WrongCode
    from keyhook.sim import radio as vradio

    dev = paired
    rule = hook("bell", plain.url("/bell"))
    rule["events"] = ["button:boot"]

    async def push():
        async with client(dev, keystore) as d:
            await d.put_rules([rule])
            return await d.open_pairing(600)
    code = run(push())
    wrong = "%08d" % ((int(code) + 1) % 10**8)
    attacker = Keystore(tmp_path / "attacker")
    for wait in (1.1, 2.1, 4.1, 0):  # four wrong guesses: the next waits 8 s
        with pytest.raises(WrongCode):
            pair_with(dev, wrong, attacker)
        time.sleep(wait)
    run(vradio.press(str(dev.radio), dev.address, pin=0))  # an ordinary press: fires the rule
    with pytest.raises(RateLimited):
        pair_with(dev, wrong, attacker)  # ... and leaves the limit as it was
    deadline = time.monotonic() + 10
    while not plain.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.target for r in plain.requests] == ["/bell"]

    run(vradio.press(str(dev.radio), dev.address, pin=0, hold_s=3.6))  # held: lifts the limit
    with pytest.raises(WrongCode):
        pair_with(dev, wrong, attacker)  # the device listens again (and counts this failure)
    time.sleep(1)
    plain.settle()
    assert [r.target for r in plain.requests] == ["/bell"]  # the long press fired nothing


def test_a_fresh_window_is_not_held_off_by_guesses_at_an_earlier_one(paired, keystore, tmp_path):
    from keyhook.session import WrongCode

    dev = paired
    old = open_window(dev, keystore)
    attacker = Keystore(tmp_path / "attacker")
    with pytest.raises(WrongCode):
        pair_with(dev, "%08d" % ((int(old) + 1) % 10**8), attacker)
    new = open_window(dev, keystore)  # the admin opens a new window at once
    guest = Keystore(tmp_path / "guest")
    pair_with(dev, new, guest)  # not refused by the attacker's delay
    assert guest.list() != [] and attacker.list() == []


# ---- Low 12: what the air shows about apps ------------------------------------------------------

@pytest.fixture
def air(monkeypatch):
    """A passive recording of one side of the radio: every GATT write the host makes (app to
    device) and every notification it gets (device to app), fragment by fragment, as a
    listener on the air would see them (BLE link-layer encryption is not used: PROTOCOL.md 8)."""
    from keyhook.ble.link import BleRecordLink
    seen: list[tuple[str, bytes]] = []
    send, on_notify = BleRecordLink.send, BleRecordLink.on_notify

    async def tapped_send(self, record):
        if not getattr(self, "_tapped", False):
            write = self.client.write_gatt_char

            async def tap(char, data, response=False):
                seen.append(("app", bytes(data)))
                return await write(char, data, response=response)
            self.client.write_gatt_char = tap
            self._tapped = True
        return await send(self, record)

    def tapped_notify(self, char, data):
        seen.append(("dev", bytes(data)))
        return on_notify(self, char, data)
    monkeypatch.setattr(BleRecordLink, "send", tapped_send)
    monkeypatch.setattr(BleRecordLink, "on_notify", tapped_notify)
    return seen


def _records(fragments):
    """Whole records (PROTOCOL.md section 1) out of a recording of one connection."""
    from keyhook.ble.fragments import Reassembler
    out = {"app": [], "dev": []}
    parts = {"app": Reassembler(8256), "dev": Reassembler(8256)}
    for side, frag in fragments:
        record = parts[side].feed(frag)
        if record is not None:
            out[side].append(record)
    return out


def test_a_passive_recording_of_a_session_holds_no_app_identity(paired, keystore, air):
    air.clear()

    async def go():
        async with client(paired, keystore) as d:
            return await d.info()
    info = run(go())
    assert info["pairings"] == 1 and air
    app_id = keystore.app_id
    everything = b"".join(frag for _, frag in air)
    for needle in (app_id.encode(), bytes.fromhex(app_id), b"keyhook-app:", app_id[:16].encode()):
        assert needle not in everything
    hello = _records(air)["app"][0]
    assert hello[0] == 0x10 and len(hello) == 33  # the type byte and a fresh X25519 key: nothing else


def test_a_rogue_central_cannot_tell_a_paired_app_from_an_unknown_one(paired, keystore, tmp_path, air):
    # The rogue knows the admin's app id (it crossed the air when the admin paired) and runs the
    # handshake as the real host does, once claiming that id and once a fresh one, each with a
    # pairing key of its own making. It also sends the earlier HELLO (which named the app) for
    # both ids. What the device answers must be the same, record type by record type and byte
    # count by byte count, error messages included.
    import os
    from keyhook.session import ChannelError, open_session, records
    device_id = keystore.list()[0].device_id

    def handshake(app_id):
        ks = rogue(tmp_path, "rogue-" + os.urandom(4).hex(), app_id)
        ks.save(device_id, os.urandom(32))

        async def go():
            async with ble.connect(paired.address, radio=str(paired.radio)) as link:
                try:
                    s = await open_session(link, ks)
                    await s.request("info")
                except ChannelError as e:
                    return type(e).__name__
                return "a session"
        air.clear()
        outcome = run(go())
        return outcome, _records(air)["dev"]

    def v1_hello(app_id):
        async def go():
            async with ble.connect(paired.address, radio=str(paired.radio)) as link:
                await link.send(bytes([records.HELLO]) + records.u8len(records.app_identity(app_id))
                                + os.urandom(32))
                return await link.recv(10)
        return run(go())

    def shape(answers):
        # what tells one answer from another: type and length; an ERROR whole (HELLO_DEV and DATA
        # carry fresh randomness)
        return [(r[0], len(r), bytes(r) if r[0] == records.ERROR else None) for r in answers]

    known, unknown = handshake(keystore.app_id), handshake(os.urandom(16).hex())
    assert known[0] == unknown[0] != "a session"
    assert shape(known[1]) == shape(unknown[1])
    assert [r[0] for r in known[1]] == [records.HELLO_DEV, records.ERROR]  # refused at the key check
    known_v1, unknown_v1 = v1_hello(keystore.app_id), v1_hello(os.urandom(16).hex())
    assert shape([known_v1]) == shape([unknown_v1])

    async def admin():
        async with client(paired, keystore) as d:
            return await d.info()
    assert run(admin())["pairings"] == 1  # the real app is untouched
