"""The whole system, end to end: the real firmware as a simulated device (radio simulated only),
the host's bleak code over the virtual radio, the `keyhook` command line, real TLS receivers.

What a user checks: the receiver got exactly the defined request; state survives a reboot;
a wrong code, a stranger, an oversized or half-finished push change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib

import pytest

from keyhook import ble
from keyhook.session.keystore import Keystore
from keyhook.session import NotPaired, RequestFailed, WrongCode, open_session, pair
from keyhook.sim import radio as vradio

from e2ekit import cli, client, run

pytestmark = pytest.mark.timeout(240)


def hook(name, url, level, **extra):
    d = {"method": "Post", "url": url, "securityLevel": level,
         "body": {"contentType": "application/json", "content": {"rule": name}},
         "additionalHttpHeaders": {"X-Rule": name}, "timeout": 5000}
    d.update(extra)
    return {"functionName": name, "definition": d}


def test_onboard_push_and_trigger_every_level(paired, keystore, tmp_path, pki, https, selfsigned, plain):
    dev = paired
    rules = [
        hook("ca", https.url("/ca"), "TlsWithCACheck",
             authentication={"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "tok-ca-123"}),
        hook("pin-leaf", https.url("/pin-leaf"), "TlsPinnedCertificate", pinnedCertificate=pki.leaf.pem),
        hook("pin-ca", https.url("/pin-ca"), "TlsPinnedCertificate",
             pinnedCertificate=base64.b64encode(pki.intermediate.der).decode()),
        hook("self", selfsigned.url("/self"), "TlsAllowSelfSigned"),
        hook("http", plain.url("/http"), "AllowHttp"),
    ]
    f = tmp_path / "rules.json"
    f.write_text(json.dumps(rules))
    cfg = keystore.root
    pushed = cli("rules", "push", dev.address, str(f), "--json", radio=dev.radio, config=cfg)
    assert json.loads(pushed.stdout)["stored"] == [r["functionName"] for r in rules]
    assert "AllowHttp is not recommended" in pushed.stderr  # warned at push time

    listed = json.loads(cli("rules", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert [r["name"] for r in listed] == [r["functionName"] for r in rules]
    assert "tok-ca-123" not in json.dumps(listed)  # metadata only

    for r in rules:
        out = cli("trigger", dev.address, r["functionName"], "--json", radio=dev.radio, config=cfg)
        result = json.loads(out.stdout)
        assert result["status"] == 200 and result["error"] is None, result
    by_path = {req.target: req for rx in (https, selfsigned, plain) for req in rx.requests}
    assert set(by_path) == {"/ca", "/pin-leaf", "/pin-ca", "/self", "/http"}
    for r in rules:
        req = by_path["/" + r["functionName"]]
        assert req.method == "POST"
        assert req.header("X-Rule") == r["functionName"]
        assert req.header("Content-Type") == "application/json"
        assert json.loads(req.body) == {"rule": r["functionName"]}
    assert by_path["/ca"].header("Authorization") == "Bearer tok-ca-123"
    assert by_path["/http"].header("Authorization") is None

    log = cli("log", dev.address, "--json", radio=dev.radio, config=cfg)
    assert "tok-ca-123" not in log.stdout and any(e.get("status") == 200 for e in json.loads(log.stdout))


def test_state_survives_a_reboot(paired, keystore, tmp_path, plain):
    dev = paired

    async def push():
        async with client(dev, keystore) as d:
            await d.put_rules([hook("door", plain.url("/door"), "AllowHttp")])
    run(push())
    dev.power_cycle()
    assert "setup code" not in dev.output().split("advertising as")[-1]  # paired: the code is not shown

    async def after():
        async with client(dev, keystore) as d:
            names = [r["name"] for r in await d.list_rules()]
            result = await d.trigger("door")
            return names, result
    names, result = run(after())
    assert names == ["door"]
    assert result["status"] == 200
    assert [r.target for r in plain.requests] == ["/door"]


def test_wrong_code_changes_nothing(device, keystore):
    right = device.setup_code
    wrong = "%08d" % ((int(right) + 1) % 10**8)

    async def attempt(code):
        async with ble.connect(device.address, radio=str(device.radio)) as link:
            return await pair(link, code, keystore)
    with pytest.raises(WrongCode):
        run(attempt(wrong))
    assert keystore.list() == []
    found = run(ble.scan(radio=str(device.radio), timeout=1.0))
    assert [d.paired for d in found if d.address == device.address] == [False]
    # a later attempt with the right code works once the delay has passed
    import time
    time.sleep(1.2)
    run(attempt(right))
    assert [p.device_id for p in keystore.list()] != []


def test_commands_without_pairing_are_refused(device, keystore, tmp_path):
    async def session():
        async with ble.connect(device.address, radio=str(device.radio)) as link:
            await open_session(link, keystore)
    with pytest.raises(NotPaired):
        run(session())
    f = tmp_path / "r.json"
    f.write_text(json.dumps(hook("x", "http://127.0.0.1:9/x", "AllowHttp")))
    for args in (["info"], ["rules", "list"], ["rules", "push", None, str(f)], ["rules", "rm", None, "x"],
                 ["trigger", None, "x"], ["wifi", None, "--ssid", "s", "--password", "p"], ["time"], ["log"],
                 ["unpair"], ["trust", "list"], ["pairing", "open"], ["reset", None, "--yes"]):
        argv = [a if a is not None else device.address for a in args]
        if None not in args:
            argv.append(device.address)
        proc = cli(*argv, radio=device.radio, config=keystore.root, check=False)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert "not paired" in proc.stderr and "hint:" in proc.stderr, argv

    async def data_before_handshake():
        async with ble.connect(device.address, radio=str(device.radio)) as link:
            await link.send(b"\x20" + bytes(8) + b"x" * 40 + bytes(32))
            return await link.recv(5)
    reply = run(data_before_handshake())
    assert reply[0] == 0x7F  # ERROR, and nothing was acted on


def test_second_app_and_unpair(paired, keystore, tmp_path):
    dev = paired
    other = Keystore(tmp_path / "other-app")

    async def open_window():
        async with client(dev, keystore) as d:
            return await d.open_pairing(60)
    code = run(open_window())

    async def pair_other():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await pair(link, code, other)
        async with client(dev, other) as d:
            info = await d.info()
            with pytest.raises(RequestFailed) as e:
                await d.open_pairing(60)  # only the admin app may
            assert e.value.code == "forbidden"
            await d.unpair()
            return info
    info = run(pair_other())
    assert info["pairings"] == 2
    assert other.list() == []

    async def other_again():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            s = await open_session(link, Keystore(tmp_path / "other-app-copy"))
            await s.request("info")  # the device does not accept the removed pairing's key
    with pytest.raises(NotPaired):
        run(other_again())

    async def first_still_works():
        async with client(dev, keystore) as d:
            return (await d.info())["pairings"]
    assert run(first_still_works()) == 1


def test_disconnect_in_the_middle_of_a_push_stores_nothing(paired, keystore, plain):
    dev = paired
    old = [hook("keep", plain.url("/keep"), "AllowHttp")]
    big = [hook("r%02d" % i, plain.url("/r%d" % i), "AllowHttp",
                additionalHttpHeaders={"X-Pad": "p" * 900}) for i in range(20)]

    async def go():
        async with client(dev, keystore) as d:
            await d.put_rules(old)
            txn = (await d.request("rules.begin"))["txn"]
            await d.request("rules.stage", txn=txn, rules=big[:5])
            await d.request("rules.stage", txn=txn, rules=big[5:10])
        # the link dropped before rules.commit
        async with client(dev, keystore) as d:
            names = [r["name"] for r in await d.list_rules()]
            with pytest.raises(RequestFailed) as e:
                await d.request("rules.commit", txn=txn)
            return names, e.value.code
    names, code = run(go())
    assert names == ["keep"]
    assert code == "bad_request"

    async def whole():
        async with client(dev, keystore) as d:
            stored = await d.put_rules(big)  # larger than one message: staged, then committed
            return stored, [r["name"] for r in await d.list_rules()]
    stored, names = run(whole())
    assert stored == [r["functionName"] for r in big]
    assert names == ["keep"] + stored


def test_messages_bigger_than_the_cap_are_refused(paired, keystore):
    dev = paired

    async def oversized_record():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            # a START fragment announcing 9000 bytes (> MAX_RECORD 8256)
            await link.client.write_gatt_char(link._rx, bytes([0x80, 9000 >> 8, 9000 & 0xFF]) + b"x" * 17,
                                              response=False)
            return await link.recv(5)
    reply = run(oversized_record())
    assert reply[0] == 0x7F and reply[1] == 1  # ERROR bad_record

    async def bomb():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            s = await open_session(link, keystore)
            payload = b"\x01" + zlib.compress(b'{"id": 1, "op": "info", "pad": "' + b" " * 60000 + b'"}')
            await link.send(s._out.seal(payload))
            return await link.recv(5)
    reply = run(bomb())
    assert reply[0] == 0x7F and reply[1] == 8  # ERROR too_large; the session is closed

    async def still_fine():
        async with client(dev, keystore) as d:
            return (await d.info())["rules"]
    assert run(still_fine()) == 0


def test_reset_returns_to_factory_state(paired, keystore, plain):
    dev = paired
    code = dev.setup_code

    async def go():
        async with client(dev, keystore) as d:
            await d.put_rules([hook("x", plain.url("/x"), "AllowHttp")])
            await d.reset()
    run(go())
    assert keystore.list() == []  # the host forgot the key the device no longer has
    dev.proc.wait(10)
    assert dev.proc.returncode == 75  # machine.reset(): the simulator boots it again
    dev.start()
    assert dev.setup_code == code  # the label's code stays
    found = run(ble.scan(radio=str(dev.radio), timeout=1.0))
    assert [d.paired for d in found if d.address == dev.address] == [False]
    fresh = Keystore(keystore.root.parent / "fresh-app")

    async def again():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await pair(link, code, fresh)
        async with client(dev, fresh) as d:
            return await d.list_rules(), await d.info()
    rules, info = run(again())
    assert rules == [] and info["wifi"]["ssid"] is None


def test_scan_json(device):
    proc = cli("scan", "--timeout", "1", "--json", radio=device.radio, config=device.state / "cfg")
    rows = json.loads(proc.stdout)
    assert rows == [{"address": device.address, "name": rows[0]["name"], "paired": False, "rssi": -55}]
    assert rows[0]["name"].startswith("keyhook-")


def test_button_fires_the_rules_bound_to_it(paired, keystore, plain):
    dev = paired
    rule = hook("bell", plain.url("/bell"), "AllowHttp")
    rule["events"] = ["button:boot"]

    async def push():
        async with client(dev, keystore) as d:
            await d.put_rules([rule])
            with pytest.raises(RequestFailed) as e:
                await d.trigger("bell")  # bound to the button only
            return e.value.code
    assert run(push()) == "not_triggerable"
    run(vradio.press(str(dev.radio), dev.address, pin=0))
    import time
    deadline = time.monotonic() + 10
    while not plain.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.target for r in plain.requests] == ["/bell"]


def test_push_warns_when_a_pin_does_not_match_the_server(paired, keystore, tmp_path, pki, https):
    dev = paired
    f = tmp_path / "pins.json"
    f.write_text(json.dumps([
        hook("good", https.url("/good", host="localhost"), "TlsPinnedCertificate", pinnedCertificate=pki.intermediate.pem),
        hook("stale", https.url("/stale", host="localhost"), "TlsPinnedCertificate", pinnedCertificate=pki.sibling.pem),
    ]))
    proc = cli("rules", "push", dev.address, str(f), radio=dev.radio, config=keystore.root)
    assert "stale: the pinned certificate is not in the chain" in proc.stderr.replace("\n", " ")
    assert "good:" not in proc.stderr


def test_time_and_trust_store_commands(paired, keystore, tmp_path, pki, https):
    dev = paired
    cfg = keystore.root
    out = cli("time", dev.address, radio=dev.radio, config=cfg)
    assert "device clock set" in out.stdout
    rule = hook("ca2", https.url("/ca2", host="localhost"), "TlsWithCACheck")
    f = tmp_path / "ca2.json"
    f.write_text(json.dumps(rule))
    cli("rules", "push", dev.address, str(f), radio=dev.radio, config=cfg)
    # the device's store has the test root (fixture `certs`); remove it: the CA check must fail
    roots = json.loads(cli("trust", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert len(roots) == 1 and not roots[0]["added"]
    cli("trust", "rm", dev.address, roots[0]["id"], radio=dev.radio, config=cfg)
    refused = json.loads(cli("trigger", dev.address, "ca2", "--json", radio=dev.radio, config=cfg,
                             check=False).stdout)
    assert refused["error"] == "tls_untrusted" and refused["sent"] is False
    # an app adds it back: accepted again
    cli("trust", "add", dev.address, str(pki.root.cert_path), radio=dev.radio, config=cfg)
    roots = json.loads(cli("trust", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert [r["added"] for r in roots] == [True]
    ok = json.loads(cli("trigger", dev.address, "ca2", "--json", radio=dev.radio, config=cfg).stdout)
    assert ok["status"] == 200
    assert [r.target for r in https.requests] == ["/ca2"]


def _flash_files(state) -> dict[str, bytes]:
    """Every file in the simulated device's littlefs flash image, read by littlefs-python."""
    from littlefs import LittleFS
    from littlefs.context import UserContext

    from keyhook.boards.build import lfs_config

    img = (state / "flash.img").read_bytes()
    ctx = UserContext(len(img))
    ctx.buffer[:] = img
    fs = LittleFS(context=ctx, mount=True, **lfs_config(len(img), 4096))
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            path = root.rstrip("/") + "/" + n
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def test_refresh_token_rule_rotates_and_its_state_goes_with_the_rule(paired, keystore, pki):
    from keyhook.lab.tokenserver import TokenServer

    dev = paired
    with TokenServer(refresh_token="rt-first", rotate=True, expires_in=3600,
                     certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as idp:
        rule = hook("oauth", idp.resource_url, "TlsPinnedCertificate", pinnedCertificate=pki.intermediate.pem,
                    authentication={"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "rt-first",
                                    "tokenEndpoint": idp.token_url, "clientId": "keyhook-e2e"})

        async def push_fire():
            async with client(dev, keystore) as d:
                await d.put_rules([rule])
                return await d.trigger("oauth"), await d.log(5)
        result, log = run(push_fire())
        assert result["status"] == 200
        assert "rt-first" not in json.dumps(log)
        rotated = idp.issued_refresh_tokens[-1]
        assert rotated != "rt-first"
        dev.stop()
        state = [v for k, v in _flash_files(dev.state).items() if "/oauth-" in k]
        assert len(state) == 1 and rotated.encode() in state[0]  # stored durably, on flash
        dev.start()

        async def unrelated_change():
            async with client(dev, keystore) as d:
                await d.put_rules([hook("other", "http://127.0.0.1:9/x", "AllowHttp")])
        run(unrelated_change())
        dev.stop()
        state = [v for k, v in _flash_files(dev.state).items() if "/oauth-" in k]
        assert len(state) == 1 and rotated.encode() in state[0]  # a rule still uses it: kept
        dev.start()

        async def delete():
            async with client(dev, keystore) as d:
                return await d.delete_rule("oauth")
        assert run(delete())
        dev.stop()
        assert not [k for k in _flash_files(dev.state) if "/oauth-" in k]  # the retired chain is gone


def test_the_unpair_check_tells_a_removed_pairing_from_a_live_one(paired, keystore, tmp_path):
    # after an unanswered unpair the host asks the device with a new session (PROTOCOL.md 7):
    # a device that does not accept the app's key has dropped the pairing; one that answers
    # still holds it. HELLO names no app, so the answer comes at the key check.
    from keyhook.session.device import DeviceClient
    guest = Keystore(tmp_path / "guest")

    async def setup():
        async with client(paired, keystore) as d:
            code = await d.open_pairing(60)
        async with ble.connect(paired.address, radio=str(paired.radio)) as link:
            await pair(link, code, guest)
        async with client(paired, keystore) as d:
            assert (await d.info())["pairings"] == 2
            await d.request("pairing.remove", app_id=guest.app_id)
    run(setup())
    asked_guest = DeviceClient(paired.address, radio=str(paired.radio), keystore=guest)
    asked_admin = DeviceClient(paired.address, radio=str(paired.radio), keystore=keystore)
    assert run(asked_guest._still_paired()) is False
    assert run(asked_admin._still_paired()) is True
