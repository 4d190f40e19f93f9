# keyhook device start-up: storage, clock, Wi-Fi, BLE service, event sources, rule engine.
# main.py (kept as source on the device, so kept small) calls main(); here the code is
# compiled to .mpy like the rest of kh, and frozen with it in a custom image.
# The layers of docs/design.md meet here and nowhere else: what arrives from the radio climbs up
# gatt -> session -> app through the callbacks wired below.
import asyncio
import gc
import json
import sys
import time

from micropython import const

import kh
from kh import store
from kh.store import files

_BUTTON_DEBOUNCE_MS = const(50)
_UNLOCK_HOLD_MS = const(3000)  # a press held this long lifts a pairing lock-out, and fires nothing
_PAIR_REQ = const(0x01)
_PAIR_B = const(0x03)
# the request engine; kh.http.resolve (with its hooks), url and errors stay
_NTP_RETRY_MS = const(60000)
_RESTART_MS = const(1000)  # a long-lived task that failed starts again after this pause
# NimBLE may discard notifications still queued when the device ends a link: after a last
# answer (unpair, an ERROR) the app reads it and disconnects; the device hangs up only after this
_HANG_UP_MS = const(1500)
_BIG_ID = const(0x3FFFFFFF)
_GC_STEP_MIN = const(1024)  # bytes allocated between collections, at least (main())
_GC_STEP_BELOW = const(524288)  # heaps smaller (every board without PSRAM) collect in steps (main())
# Link time bounds (board.json "link_preauth_ms", "link_idle_ms" override them): from connect
# until a session is authenticated (records, pairing, handshake), and between records of an
# authenticated session while no command runs. Past either the device drops the link.
_PREAUTH_MS = const(60000)
_IDLE_MS = const(120000)
# The longest record a connection may send before its session is authenticated: PAIR_B, the
# largest handshake record, is 98 bytes (PROTOCOL.md section 2); anything longer would only make
# the device reserve its buffer for a central that has proved nothing.
_PREAUTH_RECORD = const(128)
_MAX_RECORD = const(8256)
_ENGINE_MODULES = ("kh.engine.fire", "kh.http.client", "kh.http.conn", "kh.http.response", "kh.http.tlspolicy",
                   "kh.http.tlsfail", "kh.http.der", "kh.http.trust", "kh.oauth.tokens", "kh.oauth.grant",
                   "kh.oauth.why")
# loaded while an app is connected, unloaded when it goes
_CONNECTION_MODULES = ("kh.app.commands", "kh.session.channel", "kh.session.frames", "kh.crypto.aesctr",
                       "kh.crypto.x25519", "kh.crypto.hmac", "kh.crypto.ct")


def board_info():
    # /board.json is written into the image by `keyhook build`; the unix board's start-up
    # module mounts its flash image and answers for it.
    try:
        import keyhook_board

        return keyhook_board.setup()
    except ImportError:
        pass
    info = {}
    raw = files.read("/board.json")
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
    info.setdefault("data", "/data")
    info.setdefault("certs", "/certs")
    return info


class Ctx:
    # What the app layer may reach (kh/app/commands.py lists it).
    pass


class Engine:
    # The request engine (kh.engine.fire and the http layer under it), imported at the first
    # fire rather than at boot; its Env (trust store, keep-alive pool, tokens) made then too.
    def __init__(self, trust_dir, state_dir):
        self._dirs = (trust_dir, state_dir)
        self._env = None

    async def fire(self, rule, _env=None):
        if self._env is None:
            gc.collect()
        from kh.engine.fire import Env, fire

        if self._env is None:
            self._env = Env(trust_dir=self._dirs[0], state_dir=self._dirs[1])
        try:
            return await fire(rule, self._env)
        finally:
            kh.heap_mark()

    def prune_tokens(self):
        # After rules change: the token state of refresh chains that no stored rule uses any
        # more is deleted (a retired refresh token must not linger on flash).
        from kh.store import rules

        loaded = "kh.oauth.tokens" in sys.modules
        try:
            if self._env is not None:
                tokens = self._env.tokens
            else:
                from kh.oauth.tokens import Tokens

                tokens = Tokens(self._dirs[1])
            defs = rules.definitions("OAuth2IssuedRefreshToken")
            try:
                return tokens.prune(defs)  # the number of chains removed
            finally:
                defs.close()  # the rules file closes now, whatever prune did
        except (ImportError, OSError, ValueError, KeyError, TypeError):
            return 0  # best effort: the next change tries again
        finally:
            if not loaded and self._env is None:
                kh.unload("kh.oauth.tokens")

    def close(self):
        # before pairing: the kept connection, the Env and the engine's code all go (the
        # next fire loads them again; token cache and CA hints are on the store)
        if self._env is not None:
            self._env.close()
            self._env = None
            kh.unload(*_ENGINE_MODULES)


class TrustEdits:
    # kh.http.trustedit for the app's trust.* operations, loaded for each and then dropped
    def __init__(self, trust_dir, data_root):
        self._dirs = (trust_dir, data_root)

    def _call(self, name, *args):
        import kh
        from kh.http.trustedit import TrustEditor

        try:
            return getattr(TrustEditor(*self._dirs), name)(*args)
        finally:
            kh.unload("kh.http.trustedit")
            if "kh.engine.fire" not in sys.modules:  # else the engine shares them
                kh.unload("kh.http.der", "kh.http.trust")

    def add(self, der):
        return self._call("add", der)

    def remove(self, rid):
        return self._call("remove", rid)

    def list(self):
        return self._call("list")

    def clear_added(self):
        return self._call("clear_added")


class Keyhook:
    def __init__(self, info):
        import bluetooth

        from kh.app import clock
        from kh.engine import wifi
        from kh.engine.log import Log
        from kh.engine import queue as _queue
        from kh.gatt.service import GattService
        from kh.session.device import Device
        from kh.store import config, rules

        root = store.use(info.get("data"))
        self.info = info
        self.device = Device(root)  # prints the setup code while unpaired
        self.log = Log()
        self.env = Engine(info["certs"], root)
        self.queue = _queue.from_settings(self.env.fire, None, log=self.log, net_up=wifi.connected)
        ctx = Ctx()
        ctx.root = root
        ctx.device = self.device
        ctx.rules = rules
        ctx.queue = self.queue
        ctx.log = self.log
        ctx.config = config
        ctx.trust = TrustEdits(info["certs"], root)
        ctx.engine = self.env
        ctx.net = wifi
        ctx.clock = clock
        ctx.name = info.get("device_name") or (info.get("name_prefix") or "keyhook-") + self.device.device_id[-6:]
        self.name = ctx.name
        self.ctx = ctx
        self.commands = None  # made for a connection's first message (_commands)
        self._end = False
        self._reset = False
        self.channel = None
        self._bounds = (info.get("link_preauth_ms") or _PREAUTH_MS, info.get("link_idle_ms") or _IDLE_MS)
        self._since = 0  # ticks_ms of the connect, then of the last record handled
        self._link = -1  # gatt.links at the connect that _since counts from
        self._authed = False  # the connection's channel has an authenticated session
        self._busy = False
        # GATT assembles each record in a buffer of its own length; the session decrypts it there
        self.gatt = GattService(bluetooth.BLE(), self.name, self._on_record, self._on_connect, self._on_disconnect)
        creds = config.wifi()
        if creds:
            wifi.connect(creds["ssid"], creds.get("password", ""))

    # ---- link events (called from the GATT task, never from an IRQ) ----

    def _on_connect(self):
        from kh.session.channel import Channel

        self.channel = Channel(self.device)
        self.gatt.limit = _PREAUTH_RECORD
        if self._link != self.gatt.links or self._authed:
            # a new connection, or one whose session had authenticated: the bound starts now. A
            # rejected fragment that starts an unauthenticated channel again on the same
            # connection must not start it again (or a central that sends a bad fragment now and
            # then would hold the one connection for ever)
            self._link = self.gatt.links
            self._since = time.ticks_ms()
        self._authed = False

    def _on_disconnect(self):
        if self.channel:
            self.channel.close()
        self.channel = None
        if self.commands:
            self.commands.abort()  # a staged rules transaction dies with its connection
        self.commands = None
        # the session's code is needed again only by the next connection
        kh.unload(*_CONNECTION_MODULES)
        self.gatt.advertise(self.device.paired())

    async def _on_record(self, record):
        kh.heap_mark()
        ch = self.channel
        if ch is None:
            return
        self._busy = True
        try:
            await self._handle(ch, record)
        finally:
            self._busy = False
            if ch.app_id is not None:  # the pre-authentication bound counts from the connect
                self._since = time.ticks_ms()
                self._authed = ch is self.channel
            if ch is self.channel:
                self.gatt.limit = _MAX_RECORD if ch.app_id is not None else _PREAUTH_RECORD

    async def _handle(self, ch, record):
        t = record[0] if record else 0
        if (t == _PAIR_REQ and self.device.pairing_code()[0] is not None and not self.device.limit.check()[0]) \
                or (t == _PAIR_B and ch.pairing):
            # Pairing crypto and a TLS connection do not fit in RAM together (docs/design.md, MicroPython facts);
            # a PAIR_REQ that will be refused costs the engine nothing
            self.env.close()
            gc.collect()
        replies, msg = await ch.receive(record)
        for r in replies:
            await self.gatt.send(r)
        if msg is not None:
            response = await self._commands().handle(ch.app_id, msg)
            try:
                sealed = ch.seal(response)
            except ValueError:  # larger than one message (MAX_PAYLOAD)
                rid = response.get("id")  # echoed only when small: a huge id made the answer too large
                sealed = ch.seal({"id": rid if isinstance(rid, int) and -_BIG_ID < rid < _BIG_ID else None,
                                  "ok": False, "error": "too_large",
                                  "message": "the answer does not fit one message; ask for less"})
            await self.gatt.send(sealed)
        kh.heap_mark()
        if ch.closed or self._end:
            self._end = False
            ch.close()  # nothing more is accepted on this connection
            asyncio.create_task(self._hang_up(self.gatt.links))
        if self._reset:
            await asyncio.sleep_ms(200)  # let the last notification leave
            import machine

            machine.reset()

    async def _hang_up(self, link):
        await asyncio.sleep_ms(_HANG_UP_MS)
        if self.gatt.links == link:  # the same connection is still up
            self.gatt.disconnect()

    def _commands(self):
        if self.commands is None:
            from kh.app.commands import Commands

            self.commands = Commands(self.ctx)
            self.commands.on_unpair = self._end_session
            self.commands.on_reset = self._restart
        return self.commands

    def _end_session(self, app_id):
        self._end = True

    def _restart(self):
        self._reset = True

    # ---- event sources ----

    async def button(self):
        # The boot button: a press fires "button:boot" rules; a press held for 3 s lifts a
        # pairing lock-out and fires nothing (a deliberate local act; a press does not).
        import machine

        pin_no = ((self.info.get("pins") or {}).get("button") or {}).get("gpio", 0)
        flag = asyncio.ThreadSafeFlag()
        pin = machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
        pin.irq(lambda p: flag.set(), machine.Pin.IRQ_FALLING)
        while True:
            await flag.wait()
            await asyncio.sleep_ms(_BUTTON_DEBOUNCE_MS)
            held = _BUTTON_DEBOUNCE_MS
            while not pin.value() and held < _UNLOCK_HOLD_MS:
                await asyncio.sleep_ms(_BUTTON_DEBOUNCE_MS)
                held += _BUTTON_DEBOUNCE_MS
            if held >= _UNLOCK_HOLD_MS:
                self.device.button_pressed()
                self.log.add("button", note="pairing_unlocked")
                continue
            n = self.queue.event("button:boot")
            self.log.add("button", note="pressed") if n == 0 else None

    async def clock(self):
        # TLS needs the date. Until an app sets the clock (`time`), try NTP once Wi-Fi is up,
        # at most once a minute. A port whose clock is already right (unix) never gets here.
        from kh.app import clock
        from kh.engine import wifi

        while not clock.is_set():
            if wifi.connected():
                try:
                    import ntptime  # ESP32 firmware ships it; blocking, with its own 1 s time-out

                    ntptime.settime()
                    self.log.add("clock", note="ntp_set")
                except ImportError:
                    return
                except (OSError, OverflowError):
                    pass
            await asyncio.sleep_ms(_NTP_RETRY_MS)

    async def heap_watch(self):
        while True:
            kh.heap_mark()
            await asyncio.sleep_ms(1000)

    async def _keep(self, name, fn):
        # A long-lived task that must not die of one failed allocation (or a bug): it is
        # started again after a pause, with a line in the log; a MemoryError first frees what
        # the failed attempt left.
        while True:
            try:
                return await fn()
            except MemoryError:
                gc.collect()
                why = "memory"
            except Exception:
                why = "internal"
            try:
                self.log.add(name, note="restarted", code=why)
            except MemoryError:
                pass
            await asyncio.sleep_ms(_RESTART_MS)

    async def watch_link(self):
        # Drops a link that has not authenticated within the pre-authentication bound, or whose
        # session has been idle past the idle bound (an app holding the one connection).
        while True:
            await asyncio.sleep_ms(min(self._bounds) // 4)
            ch = self.channel
            if ch is None or self._busy or not self.gatt.connected:
                continue
            bound = self._bounds[0] if ch.app_id is None else self._bounds[1]
            if time.ticks_diff(time.ticks_ms(), self._since) > bound:
                self.log.add("link", note="idle" if ch.app_id else "no_auth")
                self._since = time.ticks_ms()  # once per bound, until the disconnect arrives
                self.gatt.disconnect()

    async def run(self):
        self.gatt.advertise(self.device.paired())
        print("keyhook %s (%s) advertising as %s" % (kh.VERSION, self.device.device_id, self.name))
        asyncio.create_task(self._keep("queue", self.queue.run))
        asyncio.create_task(self._keep("button", self.button))
        asyncio.create_task(self._keep("clock", self.clock))
        asyncio.create_task(self._keep("heap", self.heap_watch))
        asyncio.create_task(self._keep("link", self.watch_link))
        await self._keep("gatt", self.gatt.run)


# Code run in place (ROMFS) or loaded from .mpy files interns its names (qstrs) at a module's
# first import, into a pool that MicroPython grows by doubling: one allocation of several KiB.
# Made late, in a fragmented heap, that allocation can fail with plenty free in total (a fire
# refused for memory at a heap where a smaller one worked). So each module that a session, a
# push or a fire loads later is imported once at boot, while the heap is young, and dropped
# again at once: its names stay interned, its code and objects go. Frozen code's names are in
# the firmware image, and source compiled on the device (tests) interns as it goes: neither
# needs this.
_LATER = ("kh.session.channel", "kh.app.commands", "kh.crypto.spake2", "kh.store.schema", "kh.engine.fire",
          "kh.oauth.grant", "kh.oauth.why", "kh.http.tlsfail", "kh.app.admin", "kh.app.syskey", "kh.http.trustedit")


def intern_later():
    if not __file__.endswith(".mpy"):
        return
    resident = set(sys.modules)
    for name in _LATER:
        try:
            __import__(name)
        except MemoryError:
            pass  # a heap this small fails later anyway, where it says what failed
        kh.unload(*[m for m in sys.modules if m not in resident])
        gc.collect()


def main():
    app = Keyhook(board_info())
    intern_later()
    gc.collect()
    # By default MicroPython collects only when an allocation fails: garbage has then filled the
    # whole heap, and whatever must live on (a session's keys, a rule's state, the kept TLS
    # connection) was placed anywhere in it, to stay between the holes the collection leaves. A
    # fire then fails to find 1.8 KiB in one piece (its TLS context) with 12 KiB free. In a small
    # heap, a collection after every sixteenth of the free heap allocated keeps the live objects
    # low and the free space whole: on the 32-bit build, frozen, the smallest heap for the bench's
    # OAuth run fell from 76 to 64 KiB, for about a third more CPU in a run (pure-Python key
    # exchanges make the most garbage). A large heap (PSRAM) does not fragment that far, and is
    # left to collect when full.
    free = gc.mem_free()
    if free + gc.mem_alloc() < _GC_STEP_BELOW:
        gc.threshold(max(_GC_STEP_MIN, free // 16))
    asyncio.run(app.run())
