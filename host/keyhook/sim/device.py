"""A simulated keyhook device: the real firmware (`firmware/main.py`) on the MicroPython unix port,
with only the radio simulated (`boards/unix/`). Its state (a littlefs flash image, its unique id)
lives in a directory, so the same directory boots the same device, with the same address.

Used by `keyhook sim`, `make demo` and the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from keyhook import KeyhookError
from keyhook.boards import mp
from keyhook.paths import FIRMWARE
from keyhook.sim import faults as sim_faults
from keyhook.sim import radio as vradio
from keyhook.sim.code import Code

RESET_EXIT_CODE = 75  # boards/unix/machine.py: machine.reset() ends the process with it
SETUP_CODE_RE = re.compile(r"setup code (\d{8})")
ADVERTISING_RE = re.compile(r"advertising as (\S+)")


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End a simulated device's process: SIGTERM, then SIGKILL if it has not gone in `grace_s`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def private_dir(path: Path) -> None:
    """Create `path` (mode 0700) or make it so; refuse a directory another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & stat.S_ISVTX:  # another user's, or shared like /tmp
        raise KeyhookError(f"{path} is not a directory of your own; a simulated device's state and radio "
                           "must be private", hint="give a new directory (e.g. /tmp/radio, not /tmp)")
    os.chmod(path, 0o700)


class SimDevice:
    """Start, watch, restart and stop one simulated device."""

    def __init__(self, radio: str | os.PathLike, state: str | os.PathLike, *, name: str | None = None,
                 certs: str | os.PathLike | None = None, heapsize: int | None = None,
                 echo: bool = False, firmware: str | os.PathLike | None = None,
                 code: Code | None = None, heap_kib: int | None = None, faults: Sequence[str] = ()) -> None:
        """`firmware`: a tree to run (source, or `.mpy` modules); `code` instead: a prepared code
        form (`keyhook.sim.code.prepare`). `heap_kib`: the GC heap the firmware may use, in KiB;
        with a ROMFS image the image's size is added (it stands for flash). `heapsize`: the raw
        `-X heapsize` in bytes (used when `heap_kib` is not given). `faults`: keyhook.sim.faults
        specs."""
        self.radio = Path(radio)
        self.state = Path(state)
        self.name = name
        self.certs = Path(certs) if certs else None
        self.echo = echo
        self.firmware = Path(firmware) if firmware else FIRMWARE  # e.g. a tree of .mpy modules
        self.code = code or Code("source" if firmware is None else "mpy", self.firmware, self.firmware / "main.py")
        self.firmware = self.code.firmware
        if heap_kib is not None:
            heapsize = heap_kib * 1024 + self.code.image_size
        self.heapsize = heapsize
        self.faults = sim_faults.env_value(faults)  # keyhook.sim.faults specs, checked now
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.boots = 0

    # --- life cycle ---

    def start(self, timeout: float = 30.0) -> "SimDevice":
        """Boot the firmware and wait until it advertises."""
        private_dir(self.radio)  # its sockets: only this user connects, or presses the button
        private_dir(self.state)  # its flash image holds keys
        env = mp.micropython_env(firmware=self.firmware)
        env.update(vradio.device_env(self.radio, self.state))
        env.update(self.code.env())
        env["KEYHOOK_SIM_HOST_PID"] = str(os.getpid())  # the firmware stops when this process is gone
        if self.name:
            env["KEYHOOK_SIM_NAME"] = self.name
        if self.certs:
            env["KEYHOOK_SIM_CERTS"] = str(self.certs)
        if self.faults:
            env[sim_faults.ENV] = self.faults
        start_line = len(self.lines)
        # Its own session: a Ctrl-C at the terminal reaches the host side only, which then stops
        # the firmware (no second KeyboardInterrupt traceback from the interpreter).
        self.proc = subprocess.Popen(mp.micropython_cmd(self.code.entry, heapsize=self.heapsize),
                                     env=env, cwd=self.state, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.boots += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        self.wait_for(ADVERTISING_RE, timeout, since=start_line)
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if self.echo:
                print(line, flush=True)
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern | str, timeout: float = 30.0, since: int = 0) -> re.Match:
        """Wait for a line of the device's console matching `pattern`."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc and self.proc.poll() is not None and self._reader and not self._reader.is_alive():
                    # With echo on, its output is already on the screen: do not print it twice.
                    tail = "; its output is above" if self.echo else ":\n" + "\n".join(self.lines[-20:])
                    if any("MemoryError" in line for line in self.lines[since:]):
                        heap = f"{self.heapsize // 1024} KiB" if self.heapsize else "the interpreter's default"
                        raise KeyhookError(f"the simulated device ran out of memory while it started (GC heap "
                                           f"{heap})" + tail,
                                           hint="give it a larger heap (`keyhook sim --heap KIB`); `make bench` "
                                                "measures the smallest that works")
                    raise KeyhookError(f"the simulated device exited ({self.proc.returncode}) before printing "
                                       f"{rx.pattern!r}" + tail)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KeyhookError(f"the simulated device did not print {rx.pattern!r} within {timeout} s:\n"
                                       + "\n".join(self.lines[-20:]))
                self._cond.wait(min(left, 0.2))

    def stop(self) -> None:
        """Power off (the process is ended; what was written to flash stays)."""
        if self.proc:
            stop_process(self.proc)
        if self._reader:
            self._reader.join(5)

    def power_cycle(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def __enter__(self) -> "SimDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what it shows ---

    @property
    def address(self) -> str:
        addr = vradio.address_for_state(self.state)
        if not addr:
            raise KeyhookError("the simulated device has not booted yet")
        return addr

    @property
    def setup_code(self) -> str | None:
        """The setup code the console printed last (None when it printed none)."""
        with self._cond:
            for line in reversed(self.lines):
                m = SETUP_CODE_RE.search(line)
                if m:
                    return m.group(1)
        return None

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop the simulated device and exit."""


PID_FILE = "sim.pid"


def already_running(radio: str | os.PathLike, state: str | os.PathLike) -> str | None:
    """The address of the device with `state` if it already answers on `radio`, else None."""
    addr = vradio.address_for_state(state)
    if not addr:
        return None
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(str(vradio.socket_path(radio, addr)))
        return addr
    except (OSError, vradio.RadioError):
        return None
    finally:
        s.close()


def run_forever(radio: str, state: str, name: str | None, certs: str | None, faults: Sequence[str] = (), *,
                code: str = "source", heap_kib: int | None = None) -> int:
    """`keyhook sim`: run in the foreground, echoing the console, rebooting on machine.reset().

    Stops the firmware on Ctrl-C (exit status 130), SIGTERM and SIGHUP (0); refuses to start a
    second process for a device that already runs. `faults` (keyhook.sim.faults specs) hold for
    the first boot only: a restart is a clean boot. `code` is a form of `keyhook.sim.code.FORMS`,
    prepared under `state/code`; `heap_kib` the GC heap the firmware may use (KiB; the
    interpreter's default when None).
    """
    from keyhook.sim.code import prepare

    running = already_running(radio, state)
    if running:
        pid = (Path(state) / PID_FILE).read_text().strip() if (Path(state) / PID_FILE).exists() else None
        raise KeyhookError(f"the simulated device {running} (state {state}) already runs on radio {radio}",
                           hint=(f"stop it first (`kill {pid}`)" if pid else "stop it first")
                           + ", or start another device with another --state DIR")

    def on_signal(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    prepared = prepare(code, Path(state) / "code")
    dev = SimDevice(radio, state, name=name, certs=certs, echo=True, code=prepared, heap_kib=heap_kib,
                    faults=faults)
    if heap_kib is not None:
        extra = f" + {prepared.image_size} B ROMFS image" if prepared.romfs else ""
        print(f"firmware as {code} on {mp.micropython_binary()}, GC heap {heap_kib} KiB{extra}", flush=True)
    pid_file = Path(state) / PID_FILE
    try:
        while True:
            dev.start()
            pid_file.write_text(f"{os.getpid()}\n")
            print(f"simulated device {dev.address} on radio {radio}; Ctrl-C stops it", flush=True)
            rc = dev.proc.wait()
            dev._reader.join(5)
            if rc != RESET_EXIT_CODE:
                return rc
            print("(device restarted)", flush=True)
            dev.faults = ""
    except KeyboardInterrupt:
        print("stopped (Ctrl-C)", flush=True)
        return 130
    except Stopped as e:
        print(f"stopped ({e})", flush=True)
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        # Ctrl-C or a signal while stopping must not leave the firmware running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            dev.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            pid_file.unlink()
