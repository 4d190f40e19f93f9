# Engine queue: device events -> rules -> fires, one at a time, in order.
#
#   q = Queue(fire, env)                 # fire: kh.engine.fire.fire (async, (rule, env) -> dict)
#   q.event("finger:alice:3")            # queues every rule bound to the event; returns how many
#   q.trigger("Open garage")             # the app's trigger: queues one rule; returns a ticket
#   asyncio.create_task(q.run())         # the worker, for the device's life
#   await q.wait(ticket, timeout_ms)     # the outcome of a triggered fire (or None)
#
# One fire runs at a time (one TLS connection while BLE is active, docs/design.md, MicroPython facts). The
# queue holds rule names, not definitions (a fire loads its rule when it starts, so a rule
# replaced meanwhile fires as replaced, and a deleted one is skipped); it is bounded, and the
# oldest entry is dropped (with a log line) when a new one arrives at a full queue.
#
# Retries: network failures only (RETRY_CODES: connect, dns, timeout, reset, closed, io, and
# no Wi-Fi), and a fire that ran out of memory (after a collection the next try may fit), with exponential back-off (backoff_ms, doubling, at most backoff_max_ms) and at
# most `attempts` tries. Never retried: TLS verification, insecure_remote, invalid definitions,
# token endpoint failures, any HTTP status but 502/503/504 (a 4xx is the server's answer; a
# 500 may mean the server acted). A POST or PATCH whose request was already sent is not retried
# either (a time-out, reset, 502 or 504 after sending may mean the server acted; a second
# door-open is worse than none); GET, HEAD, PUT and DELETE are, and a 503 always is (the
# server says it did not take the request). Before every attempt the queue waits, at most
# net_wait_ms, for the network to report connected. A fire older than max_age_ms is dropped
# ("stale"): a door must not open minutes after the finger was shown.
#
# A rule whose expiresAt has passed is not fired (when the clock is set; unset, it fires); nor
# one whose expiresAt is not an RFC 3339 date-time (kh.store.rfc3339).
# fire, sleep_ms, ticks_ms, clock, net_up and the rules module are injectable, so tests run on a
# fake clock. Every wait is bounded.
import asyncio
import time
from micropython import const

from kh.engine import log as _log
# expiresAt is an RFC 3339 date-time (the validator refuses other forms); None: unreadable
from kh.store.rfc3339 import days as _days, seconds as iso_seconds

RETRY_CODES = ("connect", "dns", "timeout", "reset", "closed", "io", "no_network", "memory")
RETRY_STATUS = (502, 503, 504)   # 503 always; 502 and 504 like a network failure after sending
_IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
_OUTCOMES = const(8)


def _default_net_up():
    try:
        from kh.engine import wifi
    except ImportError:
        return None
    return wifi.connected


def _now_seconds(clock):
    # UTC seconds since 1970 from the device clock, or None when the clock is not set.
    y, mo, d, h, mi, s = time.gmtime(int(clock()))[:6]
    if y < 2024:
        return None
    return _days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def _code_of(res):
    e = res.get("error")
    if e is None:
        return None
    if isinstance(e, dict):
        e = e.get("code")
    return str(getattr(e, "code", e))


class Queue:
    def __init__(self, fire, env=None, rules=None, log=None, sleep_ms=None, ticks_ms=None,
                 ticks_diff=None, net_up=0, max_len=8, attempts=4, backoff_ms=1000,
                 backoff_max_ms=30000, net_wait_ms=30000, net_poll_ms=250, max_age_ms=60000,
                 retry_sent=False, clock=None):
        if rules is None:
            from kh.store import rules
        self._fire = fire
        self._env = env
        self._rules = rules
        self._log = log or _log.default()
        self._sleep = sleep_ms or asyncio.sleep_ms
        self._ticks = ticks_ms or time.ticks_ms
        self._diff = ticks_diff or time.ticks_diff
        self._net_up = _default_net_up() if net_up == 0 else net_up
        self.max_len = max_len
        self.attempts = attempts
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.net_wait_ms = net_wait_ms
        self.net_poll_ms = net_poll_ms
        self.max_age_ms = max_age_ms
        self.retry_sent = retry_sent
        self._clock = clock or time.time
        self._items = []            # [ticket, name, queued at (ticks)]
        self._ticket = 0
        self._outcomes = []         # [(ticket, outcome dict)], the last _OUTCOMES
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self.busy = False
        self.dropped = 0

    # ---- queueing (from tasks, not IRQs: these read the rules file) ----

    def pending(self):
        return len(self._items)

    def _push(self, name):
        if len(self._items) >= self.max_len:
            old = self._items.pop(0)
            self.dropped += 1
            self._log.add(old[1], note="dropped_queue_full")
            self._record(old[0], {"name": old[1], "error": "dropped", "status": None, "attempts": 0,
                                  "sent": False, "elapsed_ms": None})
        self._ticket += 1
        self._items.append([self._ticket, name, self._ticks()])
        self._ready.set()
        return self._ticket

    def event(self, ev):
        # A device event ("button:<name>", "finger:<user>:<n>"): queue every rule bound to it.
        try:
            names = self._rules.names_for(ev)
        except OSError:
            self._log.add("event", "store error")  # the flash failed; the event is lost
            return 0
        for n in names:
            self._push(n)
        return len(names)

    def trigger(self, name):
        # The app's `trigger`: a ticket, or None when no such rule accepts "trigger" (why_not).
        try:
            if not self._rules.triggerable(name):
                return None
        except OSError:
            self._log.add(name, "store error")
            return None
        return self._push(name)

    def why_not(self, name):
        # Why trigger(name) refused: "not_found" or "not_triggerable" (its events lack "trigger").
        if self._rules.get(name) is None:
            return "not_found"
        return None if self._rules.triggerable(name) else "not_triggerable"

    # ---- outcomes ----

    def _record(self, ticket, outcome):
        self._outcomes.append((ticket, outcome))
        if len(self._outcomes) > _OUTCOMES:
            self._outcomes.pop(0)
        self._done.set()

    def outcome(self, ticket):
        for t, o in self._outcomes:
            if t == ticket:
                return o
        return None

    async def wait(self, ticket, timeout_ms):
        # The outcome of a ticket, waiting at most timeout_ms; None when it is not done yet.
        t0 = self._ticks()
        while True:
            o = self.outcome(ticket)
            if o is not None:
                return o
            left = timeout_ms - self._diff(self._ticks(), t0)
            if left <= 0:
                return None
            self._done.clear()
            try:
                await asyncio.wait_for_ms(self._done.wait(), left)
            except asyncio.TimeoutError:
                pass

    # ---- the worker ----

    async def run(self):
        # Forever: fire what is queued, in order, then wait for more.
        while True:
            await self.drain()
            self._ready.clear()
            if not self._items:
                await self._ready.wait()

    async def drain(self):
        # Fire everything queued now (and whatever arrives meanwhile); returns when empty.
        while self._items:
            ticket, name, t_queued = self._items.pop(0)
            self.busy = True
            try:
                outcome = await self._one(name, t_queued)
            except Exception as e:  # a bad rule or a flash error must not stop the worker
                self._log.add(name, code="internal", note=type(e).__name__)
                outcome = {"name": name, "status": None, "error": "internal", "attempts": 0,
                           "sent": False, "elapsed_ms": None}
            finally:
                self.busy = False
            self._record(ticket, outcome)

    def _age(self, t_queued):
        return self._diff(self._ticks(), t_queued)

    async def _network(self):
        # True once the network is up, waiting at most net_wait_ms.
        if self._net_up is None:
            return True
        waited = 0
        while not self._net_up():
            if waited >= self.net_wait_ms:
                return False
            step = min(self.net_poll_ms, self.net_wait_ms - waited)
            await self._sleep(step)
            waited += step
        return True

    async def _one(self, name, t_queued):
        # The outcome: what the app's `trigger` answers (no URL, header, body or message).
        out = {"name": name, "status": None, "error": None, "attempts": 0, "sent": False, "elapsed_ms": None}
        rule = self._rules.get(name)
        if rule is None:
            self._log.add(name, note="rule_gone")
            out["error"] = "rule_gone"
            return out
        exp = rule.get("expiresAt")
        if exp:
            # unreadable (a rule stored before the validator checked it): the integrator meant
            # it to expire, so it is not fired
            now, until = _now_seconds(self._clock), iso_seconds(exp)
            if until is None or (now is not None and now >= until):
                self._log.add(name, note="rule_expired")
                out["error"] = "rule_expired"
                return out
        d = rule.get("definition") or {}
        method = str(d.get("method", "")).upper()
        n = 0
        while True:
            if self._age(t_queued) > self.max_age_ms:
                self._log.add(name, attempt=n, of=self.attempts, note="stale")
                out["error"] = "stale"
                return out
            n += 1
            out["attempts"] = n
            if await self._network():
                res = await self._call(rule)
            else:
                res = {"sent": False, "status": None, "error": "no_network"}
            status = res.get("status")
            code = _code_of(res)
            out["status"] = status
            out["error"] = code
            out["sent"] = bool(res.get("sent"))
            out["elapsed_ms"] = res.get("elapsed_ms")
            out.pop("message", None)  # this attempt's, not an earlier one's
            if code and res.get("message"):
                out["message"] = res["message"]  # what went wrong and what to do (no secrets)
            retry = (code in RETRY_CODES) or (code is None and status in RETRY_STATUS)
            if not retry:
                self._log.add(name, status=status, code=code, attempt=n, of=self.attempts,
                              ms=res.get("elapsed_ms"))
                return out
            if (res.get("sent") and method not in _IDEMPOTENT and not self.retry_sent
                    and status != 503):
                self._log.add(name, status=status, code=code, attempt=n, of=self.attempts, note="not_retried")
                return out
            if n >= self.attempts:
                self._log.add(name, status=status, code=code, attempt=n, of=self.attempts, note="gave_up")
                return out
            delay = min(self.backoff_ms << (n - 1), self.backoff_max_ms)
            self._log.add(name, status=status, code=code, attempt=n, of=self.attempts, retry_in_ms=delay)
            await self._sleep(delay)

    async def _call(self, rule):
        try:
            res = await self._fire(rule, self._env)
        except MemoryError:
            import gc
            gc.collect()
            return {"sent": False, "status": None, "error": "memory"}
        except Exception as e:  # a FireError, or a bug below: reported by code, never by text
            return {"sent": False, "status": None, "error": getattr(e, "code", "internal")}
        if not isinstance(res, dict):
            return {"sent": False, "status": None, "error": "internal"}
        return res


def from_settings(fire, env, settings=None, **kw):
    # A Queue tuned by the device settings (kh.store.config: fire_attempts, backoff_ms,
    # queue_len, net_wait_ms); keyword arguments override them (tests).
    if settings is None:
        from kh.store import config
        settings = config.settings()
    args = {"attempts": settings["fire_attempts"], "backoff_ms": settings["backoff_ms"],
            "max_len": settings["queue_len"], "net_wait_ms": settings["net_wait_ms"]}
    args.update(kw)
    return Queue(fire, env, **args)
