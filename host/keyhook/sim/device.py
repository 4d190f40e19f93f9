"""A simulated keyhook device: the real firmware (`firmware/main.py`) on the MicroPython unix port,
with only the radio simulated (`boards/unix/`). Its state (a littlefs flash image, its unique id)
lives in a directory, so the same directory boots the same device, with the same address.

Used by `keyhook sim`, `make demo` and the end-to-end tests.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

from keyhook import KeyhookError, mp
from keyhook.paths import FIRMWARE
from keyhook.sim import radio as vradio

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
                 echo: bool = False, firmware: str | os.PathLike | None = None) -> None:
        self.radio = Path(radio)
        self.state = Path(state)
        self.name = name
        self.certs = Path(certs) if certs else None
        self.heapsize = heapsize
        self.echo = echo
        self.firmware = Path(firmware) if firmware else FIRMWARE  # e.g. a tree of .mpy modules
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
        if self.name:
            env["KEYHOOK_SIM_NAME"] = self.name
        if self.certs:
            env["KEYHOOK_SIM_CERTS"] = str(self.certs)
        start_line = len(self.lines)
        self.proc = subprocess.Popen(mp.micropython_cmd(self.firmware / "main.py", heapsize=self.heapsize),
                                     env=env, cwd=self.state, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
                    raise KeyhookError(f"the simulated device exited ({self.proc.returncode}) before printing "
                                       f"{rx.pattern!r}:\n" + "\n".join(self.lines[-20:]))
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


def run_forever(radio: str, state: str, name: str | None, certs: str | None) -> int:
    """`keyhook sim`: run in the foreground, echoing the console, rebooting on machine.reset()."""
    dev = SimDevice(radio, state, name=name, certs=certs, echo=True)
    try:
        while True:
            dev.start()
            print(f"simulated device {dev.address} on radio {radio}; Ctrl-C stops it", flush=True)
            code = dev.proc.wait()
            dev._reader.join(5)
            if code != RESET_EXIT_CODE:
                return code
            print("(device restarted)", flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        dev.stop()
