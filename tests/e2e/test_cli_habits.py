"""The `keyhook` command line as its users expect it (esptool and mpremote habits), each habit
checked through the real `keyhook` console script against a simulated device."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from keyhook.ble.backend import live_devices

pytestmark = pytest.mark.timeout(240)

KEYHOOK = str(Path(sys.executable).with_name("keyhook"))  # the console script pip installed


def env_for(radio=None, config=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KEYHOOK_RADIO", "KEYHOOK_CONFIG")}
    if radio is not None:
        env["KEYHOOK_RADIO"] = str(radio)
    if config is not None:
        env["KEYHOOK_CONFIG"] = str(config)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def keyhook(*args: str, radio=None, config=None, input: str | None = None, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([KEYHOOK, *args], env=env or env_for(radio, config), capture_output=True, text=True,
                          timeout=timeout, input=input if input is not None else "")


def hook(name, url, level="AllowHttp", **extra):
    d = {"method": "Post", "url": url, "securityLevel": level, "timeout": 2000,
         "body": {"contentType": "application/json", "content": {"rule": name}}}
    d.update(extra)
    return {"functionName": name, "definition": d}


class Running:
    """A `keyhook` process whose stderr (or stdout) lines are read as they come."""

    def __init__(self, *args: str, env: dict, stream: str = "stderr", new_session: bool = False):
        self.proc = subprocess.Popen([KEYHOOK, *args], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session)
        self._stream = getattr(self.proc, stream)
        self.seen: list[str] = []

    def wait_line(self, pattern: str, timeout: float = 60) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self._stream.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.seen.append(text)
                if rx.search(text):
                    return text
        raise AssertionError(f"no line matching {pattern!r}; saw:\n" + "\n".join(self.seen))

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        other = "\n".join(self.seen)
        if self._stream is self.proc.stderr:
            return self.proc.returncode, out.decode(errors="replace"), other + "\n" + err.decode(errors="replace")
        return self.proc.returncode, other + "\n" + out.decode(errors="replace"), err.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def runtime_dir():
    # The default virtual radio lives in $XDG_RUNTIME_DIR: a short private one per test.
    with tempfile.TemporaryDirectory(prefix="khx-") as d:
        yield Path(d)


# --- global options, the default radio, the simulator's life cycle -----------------------------

def test_global_options_are_accepted_after_the_subcommand(device):
    p = keyhook("scan", "--radio", str(device.radio), "--timeout", "1", "--json", env=env_for())
    assert p.returncode == 0, p.stderr
    assert [r["address"] for r in json.loads(p.stdout)] == [device.address]
    assert f"radio: virtual radio {device.radio}" in p.stderr
    p = keyhook("scan", "--timeout", "1", f"--radio={device.radio}", "-v", env=env_for())
    assert p.returncode == 0 and device.address in p.stdout, p.stderr


def test_the_simulator_and_the_ble_commands_share_one_default_radio_and_say_it(runtime_dir, tmp_path):
    radio = runtime_dir / "keyhook-radio"
    env = env_for(XDG_RUNTIME_DIR=runtime_dir)
    sim = Running("sim", "--state", str(tmp_path / "dev"), env=env, stream="stdout")
    try:
        line = sim.wait_line(r"simulated device \S+ on radio")
        assert f"on radio {radio}" in line
        address = line.split()[2]
        p = keyhook("scan", "--timeout", "1", "--json", env=env)  # no --radio, no KEYHOOK_RADIO
        assert p.returncode == 0, p.stderr
        assert [r["address"] for r in json.loads(p.stdout)] == [address]
        assert f"radio: virtual radio {radio} (the default; a simulated device runs on it)" in p.stderr
    finally:
        sim.proc.terminate()
        rc, out, err = sim.finish()
    assert rc == 0 and "stopped (SIGTERM)" in out
    assert live_devices(radio) == 0  # the firmware went with it: nothing advertises any more
    # with no simulator running, the BLE commands say they use the adapter
    p = keyhook("scan", "--timeout", "1", env=env)
    assert "radio: this host's Bluetooth adapter" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sim_stops_its_firmware_on_a_signal_and_starts_again_cleanly(runtime_dir, tmp_path, sig):
    radio = runtime_dir / "r"
    env = env_for(XDG_RUNTIME_DIR=runtime_dir)
    args = ("sim", "--radio", str(radio), "--state", str(tmp_path / "dev"))
    first = Running(*args, env=env, stream="stdout")
    try:
        first.wait_line(r"simulated device \S+ on radio")
        assert live_devices(radio) == 1
        # a second simulator for the same device is refused at once, without a traceback
        p = keyhook(*args, env=env, timeout=60)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "already runs" in p.stderr and f"kill {first.proc.pid}" in p.stderr
        assert "Traceback" not in p.stdout + p.stderr
        os.kill(first.proc.pid, sig)
        rc, out, err = first.finish()
    finally:
        first.kill()
    assert rc == 0 and "Traceback" not in out + err
    assert live_devices(radio) == 0
    again = Running(*args, env=env, stream="stdout")
    try:
        again.wait_line(r"simulated device \S+ on radio")
    finally:
        again.proc.terminate()
        rc, out, err = again.finish()
    assert rc == 0 and "Traceback" not in out + err


def test_ctrl_c_stops_the_simulator_without_a_traceback(runtime_dir, tmp_path):
    radio = runtime_dir / "r"
    sim = Running("sim", "--radio", str(radio), "--state", str(tmp_path / "dev"),
                  env=env_for(), stream="stdout", new_session=True)
    try:
        sim.wait_line(r"simulated device \S+ on radio")
        os.killpg(sim.proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        rc, out, err = sim.finish()
    finally:
        sim.kill()
    assert rc == 130 and "stopped (Ctrl-C)" in out
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert live_devices(radio) == 0


def test_sim_press_presses_the_simulated_button(paired, keystore, plain, tmp_path):
    dev = paired
    rule = hook("bell", plain.url("/bell"))
    rule["events"] = ["button:boot"]
    f = tmp_path / "bell.json"
    f.write_text(json.dumps(rule))
    assert keyhook("rules", "push", dev.address, str(f), radio=dev.radio, config=keystore.root).returncode == 0
    p = keyhook("sim", "press", dev.address, "--radio", str(dev.radio), env=env_for())
    assert p.returncode == 0 and f"pressed the button of {dev.address}" in p.stdout, p.stderr
    p = keyhook("sim", "press", "--state", str(dev.state), "--json", env=env_for(radio=dev.radio))
    assert p.returncode == 0 and json.loads(p.stdout)["pressed"] == dev.address, p.stderr
    deadline = time.monotonic() + 20
    while len(plain.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.target for r in plain.requests] == ["/bell", "/bell"]
    p = keyhook("sim", "press", "24:6F:28:00:00:99", "--radio", str(dev.radio), env=env_for())
    assert p.returncode == 2 and "cannot reach the simulated device" in p.stderr


# --- addresses, waiting, --timeout ---------------------------------------------------------------

def test_a_malformed_address_is_refused_before_the_radio_is_touched(tmp_path):
    for args in (["info", "24:6F:28"], ["rules", "list", "not-an-address"], ["trigger", "zz:zz:zz:zz:zz:zz", "x"]):
        p = keyhook(*args, radio=tmp_path / "no-radio", config=tmp_path / "cfg")
        assert p.returncode == 2, (args, p.stderr)
        assert "is not a Bluetooth address" in p.stderr and "hint:" in p.stderr
        assert "radio:" not in p.stderr and "connecting" not in p.stderr
    p = keyhook("info", "24:6F:28", "--json", radio=tmp_path / "no-radio")
    assert p.returncode == 2
    assert json.loads(p.stdout)["error"] == "error" and "not a Bluetooth address" in json.loads(p.stdout)["message"]


def test_a_waiting_command_says_what_it_waits_for_at_once_and_honours_timeout(tmp_path):
    radio = tmp_path / "empty-radio"
    radio.mkdir()
    run = Running("info", "24:6F:28:00:00:99", "--timeout", "3", env=env_for(radio, tmp_path / "cfg"))
    try:
        line = run.wait_line(r"connecting to", timeout=30)
        still_waiting = run.proc.poll() is None
        rc, out, err = run.finish(timeout=60)
    finally:
        run.kill()
    assert "connecting to 24:6F:28:00:00:99 (up to 3 s; --timeout)" in line
    assert still_waiting  # said before the wait was over
    assert rc == 2 and "no device with address 24:6F:28:00:00:99" in err


def test_trigger_says_it_waits_for_the_fire(paired, keystore, tmp_path, plain):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(hook("lamp", plain.url("/lamp"))))
    assert keyhook("rules", "push", paired.address, str(f), radio=paired.radio, config=keystore.root).returncode == 0
    p = keyhook("trigger", paired.address, "lamp", "--timeout", "30", radio=paired.radio, config=keystore.root)
    assert p.returncode == 0, p.stderr
    assert "waiting for 'lamp' to fire" in p.stderr and "up to 30 s" in p.stderr


# --- --json, exit codes, stdin, -v ---------------------------------------------------------------

def test_json_everywhere_a_script_may_call(paired, keystore, tmp_path, pki, plain):
    dev, cfg = paired, keystore.root

    def j(*args, code=0):
        p = keyhook(*args, "--json", radio=dev.radio, config=cfg)
        assert p.returncode == code, (args, p.stdout, p.stderr)
        return json.loads(p.stdout)

    clock = j("time", dev.address)
    assert isinstance(clock["clock"], int) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", clock["date"])
    assert j("wifi", dev.address, "--ssid", "lab2", "--password", "pw") == {"ssid": "lab2", "stored": True}
    f = tmp_path / "r.json"
    f.write_text(json.dumps([hook("a", plain.url("/a")), hook("b", plain.url("/b"))]))
    assert j("rules", "push", dev.address, str(f), "--no-check-pins")["stored"] == ["a", "b"]
    assert j("rules", "rm", dev.address, "b") == {"removed": "b"}
    failed = j("rules", "rm", dev.address, "b", code=2)
    assert set(failed) == {"error", "message", "hint"} and "no rule 'b'" in failed["message"]
    added = j("trust", "add", dev.address, str(pki.intermediate.cert_path))  # the root is there already
    listed = j("trust", "list", dev.address)
    [mine] = [r for r in listed if r["added"]]
    assert mine["id"] == added["id"]
    assert "CN=" in mine["subject"] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mine["expires"])
    assert j("trust", "rm", dev.address, added["id"]) == {"removed": added["id"]}
    assert re.fullmatch(r"\d{8}", j("pairing", "open", dev.address, "--seconds", "60")["code"])
    assert j("trigger", dev.address, "a")["status"] == 200
    entries = j("log", dev.address)
    assert any(e.get("name") == "a" and e.get("status") == 200 for e in entries), entries
    assert all(not isinstance(e, str) for e in entries)
    assert j("unpair", dev.address) == {"unpaired": dev.address}
    # the last app left: the device factory-resets and restarts (as `keyhook sim` would, here)
    assert dev.proc.wait(30) == 75
    dev.start()
    refused = j("info", dev.address, code=2)
    assert refused["error"] == "not_paired" and refused["hint"], refused


def test_exit_codes(paired, keystore, tmp_path):
    dev, cfg = paired, keystore.root
    f = tmp_path / "r.json"
    f.write_text(json.dumps(hook("nowhere", "http://127.0.0.1:9/x")))
    assert keyhook("rules", "push", dev.address, str(f), radio=dev.radio, config=cfg).returncode == 0
    assert keyhook("trigger", dev.address, "nowhere", radio=dev.radio, config=cfg).returncode == 1  # no response
    assert keyhook("rules", "push", radio=dev.radio, config=cfg).returncode == 2  # usage
    usage = keyhook("rules", "push", "--json", radio=dev.radio, config=cfg)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"] == "usage"
    declined = keyhook("reset", dev.address, radio=dev.radio, config=cfg, input="n\n")
    assert declined.returncode == 2 and "not confirmed" in declined.stderr
    assert keyhook("info", dev.address, radio=dev.radio, config=cfg).returncode == 0  # nothing was reset
    run = Running("scan", "--timeout", "60", env=env_for(dev.radio, cfg))
    try:
        run.wait_line("listening")
        time.sleep(0.5)  # a person's Ctrl-C comes while it listens
        run.proc.send_signal(signal.SIGINT)
        rc, out, err = run.finish()
    finally:
        run.kill()
    assert rc == 130 and "interrupted" in err and "Traceback" not in err


def test_a_dash_reads_the_file_from_standard_input(paired, keystore, plain):
    text = json.dumps(hook("piped", plain.url("/piped")))
    p = keyhook("rules", "push", paired.address, "-", "--json", radio=paired.radio, config=keystore.root, input=text)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["stored"] == ["piped"]
    p = keyhook("fire", "-", input=json.dumps(hook("piped", plain.url("/fired"))))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == 200, p.stdout + p.stderr
    plain.settle()
    assert [r.target for r in plain.requests] == ["/fired"]


def test_verbose_and_debug_show_what_the_tool_and_the_link_do(paired, keystore):
    for flag in ("-v", "--debug"):
        p = keyhook(flag, "info", paired.address, radio=paired.radio, config=keystore.root)
        assert p.returncode == 0, p.stderr
        for step in ("connecting to " + paired.address, "session open with device", "request info"):
            assert step in p.stderr, (flag, p.stderr)
    p = keyhook("info", paired.address, "--debug", radio=paired.radio, config=keystore.root)
    assert "reply to info: ok" in p.stderr
    quiet = keyhook("info", paired.address, radio=paired.radio, config=keystore.root)
    assert "request info" not in quiet.stderr


# --- the small things --------------------------------------------------------------------------

def test_onboard_again_says_it_is_already_paired(paired, keystore):
    dev = paired
    p = keyhook("onboard", dev.address, "--code", dev.setup_code or "00000000", radio=dev.radio, config=keystore.root)
    assert p.returncode == 0, p.stderr
    assert "already paired with" in p.stdout
    p = keyhook("onboard", dev.address, "--code", "12345678", "--json", radio=dev.radio, config=keystore.root)
    assert json.loads(p.stdout)["already_paired"] is True  # and no wrong guess was spent on the device


def test_trust_add_prints_the_id_that_trust_rm_takes(paired, keystore, pki):
    dev, cfg = paired, keystore.root
    p = keyhook("trust", "add", dev.address, str(pki.intermediate.cert_path), radio=dev.radio, config=cfg)
    assert p.returncode == 0, p.stderr
    m = re.search(r"added root (\S+) \((.+), expires (\S+)\); remove it with `keyhook trust rm (\S+) (\S+)`",
                  p.stdout.replace("\n", " "))
    assert m, p.stdout
    assert m.group(5) == m.group(1) and "CN=" in m.group(2)
    listed = keyhook("trust", "list", dev.address, radio=dev.radio, config=cfg)
    assert m.group(1) in listed.stdout and "subject" in listed.stdout and "expires" in listed.stdout
    assert keyhook("trust", "rm", dev.address, m.group(1), radio=dev.radio, config=cfg).returncode == 0


def test_times_are_dates(paired, keystore):
    p = keyhook("time", paired.address, radio=paired.radio, config=keystore.root)
    assert re.search(r"device clock set to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", p.stdout), p.stdout
    info = keyhook("info", paired.address, radio=paired.radio, config=keystore.root)
    assert re.search(r"clock\s.*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", info.stdout), info.stdout
    assert not re.search(r"\b1[5-9]\d{8}\b", p.stdout + info.stdout)  # no epoch seconds


def test_qr_writes_no_terminal_escapes_into_a_pipe():
    p = keyhook("qr", "1234-5678")
    assert p.returncode == 0 and "\x1b" not in p.stdout
    assert "█" in p.stdout and "setup code 1234-5678" in p.stdout


def _slow_link(radio, cfg):
    # One packet per 300 ms connection event: a push lasts long enough to be interrupted.
    return env_for(radio, cfg, KEYHOOK_RADIO_LINK="interval_ms=300,packets=1")


def test_a_push_interrupted_before_the_commit_says_the_device_keeps_its_rules(paired, keystore, tmp_path, plain):
    dev, cfg = paired, keystore.root
    f = tmp_path / "old.json"
    f.write_text(json.dumps(hook("old", plain.url("/old"))))
    assert keyhook("rules", "push", dev.address, str(f), radio=dev.radio, config=cfg).returncode == 0
    big = [hook(f"big{i}", plain.url("/big"), additionalHttpHeaders={"X-Pad": "p" * 3000}) for i in range(4)]
    f = tmp_path / "big.json"
    f.write_text(json.dumps(big))
    run = Running("-v", "rules", "push", dev.address, str(f), env=_slow_link(dev.radio, cfg))
    try:
        run.wait_line(r"sending part 1 of \d")
        run.proc.send_signal(signal.SIGINT)
        rc, out, err = run.finish(timeout=60)
    finally:
        run.kill()
    assert rc == 130 and "interrupted before the device committed; it keeps the rules it had" in err
    assert "Traceback" not in err
    listed = json.loads(keyhook("rules", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert [r["name"] for r in listed] == ["old"]


def test_a_push_interrupted_after_the_commit_went_out_says_the_device_may_hold_the_new_rules(
        paired, keystore, tmp_path, plain):
    dev, cfg = paired, keystore.root
    f = tmp_path / "new.json"
    f.write_text(json.dumps(hook("new", plain.url("/new"))))
    run = Running("-v", "rules", "push", dev.address, str(f), env=_slow_link(dev.radio, cfg))
    try:
        run.wait_line(r"in one message that commits")
        run.proc.send_signal(signal.SIGINT)
        rc, out, err = run.finish(timeout=60)
    finally:
        run.kill()
    assert rc == 130, err
    assert "interrupted; the device may hold the new rules" in err
    assert f"keyhook rules list {dev.address}" in err and "Traceback" not in err


def test_pairing_list_and_rm_from_the_cli(paired, keystore, tmp_path):
    """The admin can see the guests' ids (to hand over or remove them) from the command line."""
    from keyhook.session.keystore import Keystore
    from e2ekit import run

    dev, cfg = paired, keystore.root
    code = json.loads(keyhook("pairing", "open", dev.address, "--json", radio=dev.radio, config=cfg).stdout)["code"]
    guest = Keystore(tmp_path / "guest")
    from keyhook.session.device import onboard
    run(onboard(dev.address, code, radio=str(dev.radio), keystore=guest))
    listed = json.loads(keyhook("pairing", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert {r["app_id"] for r in listed} == {keystore.app_id, guest.app_id}
    assert [r["this_app"] for r in listed if r["app_id"] == keystore.app_id] == [True]
    as_guest = json.loads(keyhook("pairing", "list", dev.address, "--json", radio=dev.radio,
                                  config=guest.root).stdout)
    assert [r["app_id"] for r in as_guest] == [guest.app_id]  # a guest sees only itself
    assert keyhook("pairing", "rm", dev.address, guest.app_id, radio=dev.radio, config=cfg).returncode == 0
    listed = json.loads(keyhook("pairing", "list", dev.address, "--json", radio=dev.radio, config=cfg).stdout)
    assert [r["app_id"] for r in listed] == [keystore.app_id]
    gone = keyhook("pairing", "rm", dev.address, guest.app_id, radio=dev.radio, config=cfg)
    assert gone.returncode == 2 and "no pairing" in gone.stderr


def test_a_failed_trigger_says_why(paired, keystore, tmp_path):
    """`keyhook trigger` shows the device's message for a failure, not only its code."""
    dev, cfg = paired, keystore.root
    f = tmp_path / "r.json"
    # a CA-checked rule to a local TLS port with nothing listening: the device says what failed
    f.write_text(json.dumps(hook("ca", "https://127.0.0.1:9/x", securityLevel="TlsWithCACheck")))
    assert keyhook("rules", "push", dev.address, str(f), "--no-check-pins", "--no-probe",
                   radio=dev.radio, config=cfg).returncode == 0
    out = keyhook("trigger", dev.address, "ca", "--json", radio=dev.radio, config=cfg)
    r = json.loads(out.stdout)
    assert out.returncode == 1 and r["error"] and r.get("message"), r


def test_the_firmware_stops_when_the_simulator_is_killed(tmp_path, radio):
    """`kill -9` of `keyhook sim` (no chance to stop its firmware, which runs in a session of its
    own) must not leave the firmware running as an orphan that still advertises."""
    state = tmp_path / "state"
    env = dict(os.environ, KEYHOOK_RADIO=str(radio))
    sim = subprocess.Popen([sys.executable, "-m", "keyhook", "sim", "--state", str(state)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in sim.stdout:
        if "advertising as" in line:
            break

    def firmware() -> list[str]:
        return subprocess.run(["pgrep", "-f", str(state / "code")], capture_output=True, text=True).stdout.split()
    assert firmware(), "the firmware runs"
    os.killpg(sim.pid, signal.SIGKILL)
    sim.wait()
    deadline = time.monotonic() + 15
    while firmware() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert firmware() == [], "the firmware outlived its simulator"
