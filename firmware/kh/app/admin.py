# App layer: the operations apps give rarely (Wi-Fi, time, trust store, log, pairings, unpair,
# reset), loaded by kh/app/commands.py for one operation and unloaded after it. Each is
# op_<name with "." as "_">(commands, app_id, msg) -> the response dict.
from micropython import const

from kh.app.commands import AppError, _need, _store
from kh.store import files

_MAX_LOG_LINES = const(100)


async def op_wifi(c, app_id, msg):
    _admin(c, app_id, "set Wi-Fi credentials")
    ssid = _need(msg, "ssid", str)
    pw = msg.get("password", "")
    if not isinstance(pw, str) or not 0 < len(ssid) <= 32 or len(pw) > 64:
        raise AppError("bad_request", "ssid must be 1-32 characters and password at most 64")
    old = c.ctx.config.wifi()
    _store(c.ctx.config.set_wifi, ssid, pw)
    if old and old["password"]:
        files.scrub(c.ctx.root)  # the former password's blocks
    c.ctx.net.connect(ssid, pw)
    return {"stored": True}


async def op_time(c, app_id, msg):
    _admin(c, app_id, "set the clock")
    unix = _need(msg, "unix", int)
    if unix < 1700000000:
        raise AppError("bad_request", "unix time %d is before 2023; send the current time" % unix)
    c.ctx.clock.set(unix)
    return {"clock": c.ctx.clock.now()}


async def op_trust_add(c, app_id, msg):
    _admin(c, app_id, "add a trusted root")
    import binascii
    try:
        der = binascii.a2b_base64(_need(msg, "der", str))
        return {"root": c.ctx.trust.add(der)}  # not "id": the envelope carries the request id
    except ValueError as e:
        raise AppError("bad_request", "der: refused: %s" % e)


async def op_trust_remove(c, app_id, msg):
    _admin(c, app_id, "remove a trusted root")
    return {"removed": c.ctx.trust.remove(_need(msg, "root", str))}


async def op_trust_list(c, app_id, msg):
    return {"roots": c.ctx.trust.list()}


async def op_log(c, app_id, msg):
    n = msg.get("lines", 20)
    if not isinstance(n, int) or n < 1:
        n = 20
    return {"lines": c.ctx.log.tail(min(n, _MAX_LOG_LINES))}


def _admin(c, app_id, what):
    if not c.ctx.device.is_admin(app_id):
        raise AppError("forbidden", "only the admin app (the one paired with the setup code) may " + what)


async def op_pairing_open(c, app_id, msg):
    _admin(c, app_id, "let another app pair")
    secs = msg.get("seconds", 300)
    if not isinstance(secs, int) or not 10 <= secs <= 3600:
        raise AppError("bad_request", "seconds must be from 10 to 3600")
    return {"code": c.ctx.device.open_pairing_window(secs), "seconds": secs}


async def op_pairing_list(c, app_id, msg):
    # a guest learns only its own identity
    apps = c.ctx.device.pairings() if c.ctx.device.is_admin(app_id) else [app_id]
    return {"apps": apps, "you": app_id}


async def op_pairing_remove(c, app_id, msg):
    target = _need(msg, "app_id", str)
    if target == app_id:
        _leave(c, app_id)
        return {"removed": True}
    _admin(c, app_id, "remove another app's pairing")
    removed = c.ctx.device.remove_pairing(target)
    if removed:
        files.scrub(c.ctx.root)  # the former pairing key's blocks
    return {"removed": removed}


async def op_unpair(c, app_id, msg):
    _leave(c, app_id)
    return {}


async def op_pairing_admin(c, app_id, msg):
    # hand the admin role to another paired app; the caller becomes a guest
    target = _need(msg, "app_id", str)
    _admin(c, app_id, "hand over the admin role")
    if target == app_id or not c.ctx.device.hand_over_admin(app_id, target):
        raise AppError("not_found", "no other paired app %s; `pairing.list` shows them" % target[:32])
    c.ctx.log.add("app", "admin handed over")
    return {"admin": target}


def _leave(c, app_id):
    # The admin leaves only after handing its role over (else the guests are left without one);
    # the last app to leave returns the device to factory state, so that whoever pairs next
    # with the setup code inherits no rules, tokens or Wi-Fi password.
    dev = c.ctx.device
    others = len([a for a in dev.pairings() if a != app_id])
    if others and dev.is_admin(app_id):
        raise AppError("forbidden", "the admin app cannot leave while %d other app(s) are paired: hand the "
                       "admin role to one of them first (pairing.admin), or remove them" % others)
    if not others:
        _wipe(c)
        return
    dev.remove_pairing(app_id)
    files.scrub(c.ctx.root)  # the former pairing key's blocks
    c.ctx.log.add("app", "unpaired")
    if c.on_unpair:
        c.on_unpair(app_id)


async def op_reset(c, app_id, msg):
    if msg.get("confirm") != "reset":
        raise AppError("bad_request", "a factory reset needs confirm: \"reset\"")
    _admin(c, app_id, "reset the device")
    _wipe(c)
    return {}


def _wipe(c):
    c.abort()
    c.ctx.trust.clear_added()
    c.ctx.device.factory_reset()
    # Everything under the data root goes (rules, tokens, Wi-Fi, pairings, settings), the root
    # directory too (littlefs keeps small files inside it), then every free block is
    # overwritten: no byte of a former secret stays on flash. The identity file is written
    # again: the id and the setup code are printed on the device's label.
    root = c.ctx.root
    for name in files.listdir(root):
        files.rmtree(root + "/" + name)
    if root != "/":
        files.rmtree(root)
    files.makedirs(root)
    files.scrub(root)
    c.ctx.device.save_identity()
    c.ctx.log.add("app", "factory reset")
    if c.on_reset:
        c.on_reset()
