# App layer: the operations a paired app may give (firmware/PROTOCOL.md section 6).
# `Commands.handle(app_id, msg)` returns the response dict; it never raises on hostile input.
# The rare operations are in kh/app/admin.py, loaded for one operation at a time.
# Everything the device holds is reached through `ctx`, built by kh/app/main.py:
#   ctx.device  kh.session.device.Device    pairings, setup code, identity
#   ctx.rules   kh.store.rules store        rules, atomic puts, metadata
#   ctx.queue   kh.engine.queue             fires rules in order, with retries
#   ctx.log     kh.engine.log               redacted log ring
#   ctx.config  kh.store.config             Wi-Fi credentials, settings
#   ctx.trust   trust.* edits               DER roots on the store (kh.http.trustedit)
#   ctx.engine  the request engine          prune_tokens() after rules change
#   ctx.net     network adapter (connect(ssid, pw), status())
#   ctx.clock   kh.app.clock
#   ctx.name    the advertised name
import gc
import json

from micropython import const

from kh import VERSION

_TRIGGER_WAIT_MS = const(15000)  # the app waits longer (keyhook.session.device.TRIGGER_TIMEOUT_S)


def _heap():
    # The GC heap in bytes: size, free now, the largest block one allocation can still get
    # (found by trying: MicroPython has no call that returns it; mem_info() only prints it),
    # and the lowest free seen since boot (kh.heap_mark).
    import kh

    kh.heap_mark()
    free = gc.mem_free()
    lo, hi = 0, free
    while hi - lo > 64:
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            b = None
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return {"size": free + gc.mem_alloc(), "free": free, "largest_free": lo, "lowest_free": kh.low_free}


class AppError(Exception):
    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message


def _need(msg, key, kind):
    v = msg.get(key)
    if not isinstance(v, kind):
        raise AppError("bad_request", "field '%s' is missing or has the wrong type" % key)
    return v


class Commands:
    def __init__(self, ctx):
        self.ctx = ctx
        self._txn = None          # (txn id, app_id) of an open staged rules transaction
        self._stage = None        # its kh.store.rules.Stage
        self._replaced = False    # whether it replaces stored rules
        self._txn_n = getattr(ctx, "txn_n", 0)  # kept in ctx: Commands may be made per connection
        self.on_unpair = None     # set by main: ends the session of the app that unpaired
        self.on_reset = None      # set by main: restart after a factory reset

    def abort(self):
        # A disconnect: a staged transaction that was not committed is discarded.
        if self._stage is not None:
            self._stage.abort()
        self._stage = None
        self._txn = None

    def _changed(self, result, dropped=False):
        # Rules changed: drop the token state that no rule uses any more; when a rule was
        # replaced or deleted (or a token chain went), overwrite the free blocks that held
        # their secrets (kh.store.files.scrub).
        engine = getattr(self.ctx, "engine", None)
        if engine is not None and engine.prune_tokens():
            dropped = True
        if dropped:
            from kh.store import files

            files.scrub(self.ctx.root)
        return result

    async def handle(self, app_id, msg):
        rid = msg.get("id") if isinstance(msg, dict) else None
        try:
            if not isinstance(msg, dict):
                raise AppError("bad_request", "a request must be a JSON object")
            op = msg.get("op")
            fn = _OPS.get(op) if isinstance(op, str) else None
            if fn is None and op in _ADMIN_OPS:
                return await self._admin_op(op, app_id, msg, rid)
            if fn is None:
                raise AppError("unknown_op", "unknown operation %r; see PROTOCOL.md section 6" % (op,))
            out = await fn(self, app_id, msg)
            out["id"] = rid
            out["ok"] = True
            return out
        except AppError as e:
            return {"id": rid, "ok": False, "error": e.code, "message": e.message}
        except MemoryError:
            gc.collect()
            return {"id": rid, "ok": False, "error": "memory",
                    "message": "the device ran out of memory; try again (a rules change is all or nothing)"}
        except Exception as e:  # a bug must not kill the session task; report its type only
            self.ctx.log.add("app", "internal error " + type(e).__name__)
            return {"id": rid, "ok": False, "error": "internal", "message": type(e).__name__}

    async def _admin_op(self, op, app_id, msg, rid):
        # a rare operation: kh/app/admin.py is loaded for it and unloaded after it
        import kh

        if op.startswith("system."):  # the system key: kh/app/syskey.py
            from kh.app import syskey as admin
        else:
            from kh.app import admin

        try:
            out = await getattr(admin, "op_" + op.replace(".", "_"))(self, app_id, msg)
        finally:
            admin = None
            kh.unload("kh.app.admin", "kh.app.syskey")
        out["id"] = rid
        out["ok"] = True
        return out

    # --- operations -------------------------------------------------------------------

    async def op_info(self, app_id, msg):
        gc.collect()
        ctx = self.ctx
        return {
            "name": ctx.name,
            "firmware": VERSION,
            "device_id": ctx.device.device_id,
            "mem_free": gc.mem_free(),
            "mem_alloc": gc.mem_alloc(),
            "heap": _heap(),
            "clock": ctx.clock.now() if ctx.clock.is_set() else None,
            "wifi": ctx.net.status(),
            "rules": ctx.rules.count(),
            "pairings": len(ctx.device.pairings()),
        }

    def _may_change(self, app_id, rules):
        # A rule belongs to the app that stored it; only that app or the admin replaces or
        # deletes it (a rule stored without an owner is the admin's). PROTOCOL.md section 6.
        # Returns True when a stored rule would be replaced.
        admin = self.ctx.device.is_admin(app_id)
        found = False
        for r in rules:
            name = r.get("functionName") if isinstance(r, dict) else r
            if isinstance(name, str):
                o = self.ctx.rules.owner(name)
                found = found or o is not None
                if o is not None and o != app_id and not admin:
                    raise AppError("forbidden", "rule %s belongs to another app; only it or the admin app "
                                   "may replace or delete it" % json.dumps(name))
        return found

    async def op_rules_put(self, app_id, msg):
        rules = _need(msg, "rules", list)
        replaced = self._may_change(app_id, rules)
        return {"stored": self._changed(_store(self.ctx.rules.put, rules, app_id), replaced)}

    async def op_rules_begin(self, app_id, msg):
        self.abort()
        self._txn_n += 1
        self.ctx.txn_n = self._txn_n
        self._stage = self.ctx.rules.Stage(app_id)
        self._replaced = False
        self._txn = (self._txn_n, app_id)
        return {"txn": self._txn_n}

    def _check_txn(self, app_id, msg):
        txn = _need(msg, "txn", int)
        if self._txn is None or self._txn != (txn, app_id):
            raise AppError("bad_request", "no open transaction %d; start with rules.begin" % txn)

    async def op_rules_stage(self, app_id, msg):
        # Without "txn" a stage opens the transaction itself; with "commit": true it also ends
        # it: a push then costs no round trips beyond its parts.
        if msg.get("txn") is None:
            await self.op_rules_begin(app_id, msg)
        else:
            self._check_txn(app_id, msg)
        rules = _need(msg, "rules", list)
        try:
            self._replaced = self._may_change(app_id, rules) or self._replaced
            staged = _store(self._stage.add, rules)
        except AppError:
            self.abort()  # a refused part ends the transaction; the store is unchanged
            raise
        if msg.get("commit") is True:
            stage, self._stage, self._txn = self._stage, None, None
            return {"stored": self._changed(_store(stage.commit), self._replaced)}
        return {"staged": staged, "txn": self._txn[0]}

    async def op_rules_commit(self, app_id, msg):
        self._check_txn(app_id, msg)
        stage, self._stage, self._txn = self._stage, None, None
        return {"stored": self._changed(_store(stage.commit), self._replaced)}

    async def op_rules_list(self, app_id, msg):
        return {"rules": self.ctx.rules.list_meta()}

    async def op_rules_delete(self, app_id, msg):
        name = _need(msg, "functionName", str)
        if self.ctx.rules.owner(name) is None:
            return {"deleted": False}
        self._may_change(app_id, (name,))
        self._changed(_store(self.ctx.rules.delete, name), True)
        return {"deleted": True}

    async def op_trigger(self, app_id, msg):
        name = _need(msg, "functionName", str)
        ticket = self.ctx.queue.trigger(name)
        if ticket is None:
            if self.ctx.queue.why_not(name) == "not_found":
                raise AppError("not_found", "no rule named %s" % json.dumps(name))
            raise AppError("not_triggerable", "rule %s is not fired by the app: its events lack "
                           "\"trigger\"" % json.dumps(name))
        if msg.get("wait", True) is False:
            return {"result": None, "queued": True}
        # Retries may outlast the wait: then the fire goes on and `log` tells how it ended.
        outcome = await self.ctx.queue.wait(ticket, _TRIGGER_WAIT_MS)
        return {"result": outcome, "queued": outcome is None}


def _store(fn, *args):
    # Store refusals (kh.store.errors.StoreError: invalid_rule, too_many, no_space, not_found)
    # reach the app with their code and message; nothing was changed.
    from kh.store.errors import StoreError

    try:
        return fn(*args)
    except StoreError as e:
        raise AppError(e.code, e.message)


_OPS = {
    "info": Commands.op_info,
    "rules.put": Commands.op_rules_put,
    "rules.begin": Commands.op_rules_begin,
    "rules.stage": Commands.op_rules_stage,
    "rules.commit": Commands.op_rules_commit,
    "rules.list": Commands.op_rules_list,
    "rules.delete": Commands.op_rules_delete,
    "trigger": Commands.op_trigger,
}
# in kh/app/admin.py; system.* in kh/app/syskey.py
_ADMIN_OPS = ("wifi", "time", "trust.add", "trust.remove", "trust.list", "log", "pairing.open", "pairing.list",
              "pairing.remove", "pairing.admin", "unpair", "reset", "system.set", "system.get", "system.remove")
