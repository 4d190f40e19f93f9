# keyhook oauth: the Authorization header of a rule (docs/design.md, Authentication).
#   None                      -> no header
#   OAuth2IssuedAccessToken   -> "Bearer " + accessToken (a stray refreshToken is ignored)
#   OAuth2IssuedRefreshToken  -> an access token from tokenEndpoint (kh.oauth.grant, loaded only
#                                to redeem), cached in RAM and in the state dir until shortly
#                                before expiry; a rotated refresh token is stored durably before
#                                the new access token is handed out.
# State is kept per token chain, not per rule: a chain is what the definition's refreshToken,
# tokenEndpoint, clientId and scope and the origin (scheme, host, port) of its request URL
# identify (its fingerprint). Rules that carry the same refresh token to the same origin share one
# chain, so a rotation by one rule does not strand the others; a definition with a new refresh
# token (or another endpoint, another origin, or a weaker way to verify it) starts a new chain,
# and a stored token is never sent to another endpoint, another origin nor over a weaker
# transport. One JSON file per chain, "<state_dir>/oauth-<fingerprint>.json", replaced
# atomically:
#   {"fp": fingerprint, "rt": rotated refresh token (absent until one is issued),
#    "at": access token, "iat": obtained at, "until": use it until (clock seconds)}
# Tokens appear nowhere but in the header value returned to the caller.
from micropython import const
import time
import json
import hashlib
import binascii
import asyncio

from kh.store import files
from kh.http.url import parse
from kh.http.errors import FireError

_ACCESS = "OAuth2IssuedAccessToken"
_REFRESH = "OAuth2IssuedRefreshToken"
_DEFAULT_TTL = const(300)   # seconds, when neither the endpoint nor expiresIn says
_MAX_MARGIN = const(60)     # refresh at most this long before expiry


def _fail(what, args=None):
    from kh.oauth import why
    return why.error(what, args)


def _kind(definition):
    auth = definition.get("authentication")
    if auth is None:
        return None, None
    if not isinstance(auth, dict):
        raise _fail("auth_obj")
    kind = auth.get("apiAuthenticationType")
    if kind is None or kind == "None":
        return None, auth
    if kind == _ACCESS or kind == _REFRESH:
        return kind, auth
    raise _fail("auth_type")


def _hex16(h):
    return binascii.hexlify(h.digest()[:8]).decode()


def _fingerprint(rt, url, auth, d):
    # The chain a stored token belongs to: another definition token, endpoint, client or scope
    # starts a new chain (so a stored token never goes to another endpoint), and so does another
    # way of verifying the servers (level, pin, allowInsecureRemote): a token that a strictly
    # verified chain obtained never travels over a weaker transport. TlsWithCACheck without the
    # opt-out hashes as before that was part of the chain (state kept across the update).
    # The origin of the request URL is part of it too: a rule that knows only a refresh token
    # (one the admin's chain already rotated) but points at its own server starts its own chain
    # and never receives the cached access token of another origin. Raises FireError on a URL
    # the HTTP layer would refuse.
    scheme, host, port = parse(d.get("url"))[:3]
    h = hashlib.sha256(b"kh-oauth-chain1")
    parts = [rt, url, auth.get("clientId"), auth.get("scope"), "%s://%s:%d" % (scheme, host, port)]
    level = d.get("securityLevel") or "TlsWithCACheck"
    if level != "TlsWithCACheck" or d.get("allowInsecureRemote"):
        parts += [level, d.get("pinnedCertificate"), "remote" if d.get("allowInsecureRemote") else None]
    for part in parts:
        h.update(b"\0")
        if part:
            h.update(str(part).encode())
    return _hex16(h)


def visible(tok):
    # A token goes into a header line: visible ASCII only (no space, CR, LF or control).
    if not isinstance(tok, str) or not tok:
        return False
    for c in tok:
        if ord(c) < 33 or ord(c) > 126:
            return False
    return True


class Tokens:
    # state_dir: where the per-chain files live (None: RAM only); clock: a function returning
    # seconds (time.time by default), injectable for tests.
    def __init__(self, state_dir, clock=None):
        self._dir = state_dir.rstrip("/") if state_dir else None
        self._clock = clock or time.time
        self._ram = {}
        self._lock = asyncio.Lock()  # one redemption at a time: a rotated token is used once

    # key: the rule's stable id (the engine's contract); state is kept per chain (see above).
    async def header(self, definition, key, post_form):
        kind, auth = _kind(definition)
        if kind is None:
            return None
        if kind == _ACCESS:
            tok = auth.get("accessToken")
            if not visible(tok):
                raise _fail("access")
            return "Bearer " + tok
        return await self._refresh(definition, auth, key, post_form, False)

    async def after_401(self, definition, key, post_form):
        # A fresh access token to retry once with, or None when retrying cannot help.
        kind, auth = _kind(definition)
        if kind != _REFRESH:
            return None
        return await self._refresh(definition, auth, key, post_form, True)

    def prune(self, definitions):
        # Remove the state of every chain that none of `definitions` uses any more (call it
        # after rules change); returns how many files went.
        keep = {}
        for d in definitions:
            a = d.get("authentication") if isinstance(d, dict) else None
            if isinstance(a, dict) and a.get("apiAuthenticationType") == _REFRESH:
                url = a.get("tokenEndpoint") or a.get("tokenEndoint")
                try:
                    keep[_fingerprint(a.get("refreshToken"), url, a, d)] = True
                except FireError:
                    pass  # a request URL it cannot fire to: no chain to keep
        for fp in list(self._ram):
            if fp not in keep:
                del self._ram[fp]
        n = 0
        if self._dir:
            for name in files.listdir(self._dir):
                if name.startswith("oauth-") and name[6:-5] not in keep and \
                        files.remove(self._dir + "/" + name):
                    n += 1
        return n

    def path(self, fp):
        return "%s/oauth-%s.json" % (self._dir, fp)

    def _load(self, fp):
        if not self._dir:
            return None
        data = files.read(self.path(fp))
        if not data:
            return None
        try:
            e = json.loads(data)
        except ValueError:
            return None
        return e if isinstance(e, dict) and e.get("fp") == fp else None

    def _save(self, entry):
        # Durable once this returns; raises OSError when the file system refuses.
        if self._dir:
            if not files.exists(self._dir):
                files.makedirs(self._dir)
            files.write_atomic(self.path(entry["fp"]), json.dumps(entry), True)

    def _entry(self, fp):
        e = self._ram.get(fp)
        if e is None:
            e = self._load(fp)
            if e is not None:
                self._ram[fp] = e
        return e

    def _cached(self, e, now):
        # "Bearer ..." while the entry's access token is fresh, else None. A clock that went
        # backwards (a reboot before the time was set) invalidates it.
        if e is None or not e.get("at"):
            return None
        iat = e.get("iat")
        until = e.get("until")
        if not isinstance(iat, int) or not isinstance(until, int):
            return None
        if iat <= now < until:
            return "Bearer " + e["at"]
        return None

    async def _refresh(self, definition, auth, key, post_form, force):
        rt0 = auth.get("refreshToken")
        if not rt0 or not isinstance(rt0, str):
            raise _fail("refresh")
        url = auth.get("tokenEndpoint") or auth.get("tokenEndoint")  # one client's spelling
        if not url or not isinstance(url, str):
            raise _fail("endpoint")
        fp = _fingerprint(rt0, url, auth, definition)
        if not force:
            h = self._cached(self._entry(fp), self._clock())
            if h:
                return h
        async with self._lock:
            e = self._entry(fp)
            now = int(self._clock())
            if not force:
                h = self._cached(e, now)
                if h:
                    return h  # another task refreshed while this one waited
            from kh.oauth import grant
            held = e.get("rt") if e is not None else None
            rt = held or rt0
            at, new_rt, ttl = await grant.redeem(definition, auth, url, rt, post_form)
            rotated = new_rt is not None and new_rt != rt
            if ttl is None:
                ttl = grant.ttl_seconds(auth.get("expiresIn"))
            if ttl is None:
                ttl = _DEFAULT_TTL
            m = ttl // 10
            entry = {"fp": fp, "at": at, "iat": now,
                     "until": now + ttl - (m if m < _MAX_MARGIN else _MAX_MARGIN)}
            if rotated:
                entry["rt"] = new_rt
            elif held:
                entry["rt"] = held
            try:
                try:
                    self._save(entry)
                except MemoryError:
                    # a rotated token must reach flash: collect and write once more
                    import gc

                    gc.collect()
                    self._save(entry)
            except MemoryError:
                if rotated:
                    self._ram[fp] = {"fp": fp, "rt": new_rt}  # the next fire redeems it
                raise
            except OSError as err:
                if rotated:
                    # Keep the new chain in RAM, but do not use a token that is not durable.
                    self._ram[fp] = {"fp": fp, "rt": new_rt}
                    raise _fail("store", err.args[0] if err.args else "?")
                # Nothing to lose: the access token is then only cached in RAM.
            self._ram[fp] = entry
            return "Bearer " + at
