# keyhook oauth: the Authorization header of a rule (DESIGN.md, Authentication).
#   None                      -> no header
#   OAuth2IssuedAccessToken   -> "Bearer " + accessToken (a stray refreshToken is ignored)
#   OAuth2IssuedRefreshToken  -> an access token from tokenEndpoint, cached in RAM and in the
#                                state dir until shortly before expiry; a rotated refresh token
#                                is stored durably before the new access token is handed out.
# Tokens appear nowhere but in the header value returned to the caller.
from micropython import const
import time
import asyncio

from kh.http.errors import FireError
from kh.oauth import grant, state

_NONE = "None"
_ACCESS = "OAuth2IssuedAccessToken"
_REFRESH = "OAuth2IssuedRefreshToken"
_DEFAULT_TTL = const(300)   # seconds, when neither the endpoint nor expiresIn says
_MAX_MARGIN = const(60)     # refresh at most this long before expiry


def _kind(definition):
    auth = definition.get("authentication") if isinstance(definition, dict) else None
    if auth is None:
        return None, None
    if not isinstance(auth, dict):
        raise FireError("invalid_definition", "authentication must be an object")
    kind = auth.get("apiAuthenticationType")
    if kind is None or kind == _NONE:
        return None, auth
    if kind == _ACCESS or kind == _REFRESH:
        return kind, auth
    raise FireError("invalid_definition",
                    "authentication.apiAuthenticationType must be None, OAuth2IssuedAccessToken "
                    "or OAuth2IssuedRefreshToken")


def _margin(ttl):
    m = ttl // 10
    return m if m < _MAX_MARGIN else _MAX_MARGIN


class Tokens:
    # clock: a function returning seconds (time.time by default); tests inject their own.
    def __init__(self, state_dir, clock=None):
        self._dir = state_dir.rstrip("/") if state_dir else None
        self._clock = clock or time.time
        self._ram = {}
        self._lock = asyncio.Lock()  # one redemption at a time: a rotated token is used once

    async def header(self, definition, key, post_form):
        kind, auth = _kind(definition)
        if kind is None:
            return None
        if kind == _ACCESS:
            tok = auth.get("accessToken")
            if not grant.header_safe(tok):
                raise FireError("invalid_definition",
                                "authentication OAuth2IssuedAccessToken needs accessToken, a "
                                "string of visible ASCII characters")
            return "Bearer " + tok
        return await self._refresh(definition, auth, key, post_form, False)

    async def after_401(self, definition, key, post_form):
        # A fresh access token to retry once with, or None when retrying cannot help.
        kind, auth = _kind(definition)
        if kind != _REFRESH:
            return None
        return await self._refresh(definition, auth, key, post_form, True)

    def forget(self, key):
        # Drop the RAM copy (the rule was deleted or replaced); the file stays until removed.
        self._ram.pop(key, None)

    def _entry(self, key, fp):
        e = self._ram.get(key)
        if e is None:
            e = state.load(self._dir, key)
            if e is not None:
                self._ram[key] = e
        if e is not None and e.get("fp") != fp:
            return None  # the definition changed: a new chain starts from its token
        return e

    def _fresh(self, e, now):
        if e is None or not e.get("at"):
            return False
        iat = e.get("iat")
        until = e.get("until")
        if not isinstance(iat, (int, float)) or not isinstance(until, (int, float)):
            return False
        # A clock that went backwards (a reboot before the time was set) invalidates the cache.
        return iat <= now < until

    async def _refresh(self, definition, auth, key, post_form, force):
        rt0 = auth.get("refreshToken")
        if not rt0 or not isinstance(rt0, str):
            raise FireError("invalid_definition",
                            "authentication OAuth2IssuedRefreshToken needs refreshToken")
        url = grant.endpoint(auth)
        fp = state.fingerprint(rt0, url, auth.get("clientId"), auth.get("scope"))
        if not force:
            e = self._entry(key, fp)
            if self._fresh(e, self._clock()):
                return "Bearer " + e["at"]
        async with self._lock:
            e = self._entry(key, fp)
            now = self._clock()
            if not force and self._fresh(e, now):
                return "Bearer " + e["at"]  # another task refreshed while this one waited
            held = e.get("rt") if e is not None else None
            rt = held or rt0
            at, new_rt, ttl = await grant.redeem(definition, auth, rt, post_form)
            rotated = new_rt is not None and new_rt != rt
            if ttl is None:
                ttl = grant.ttl_seconds(auth.get("expiresIn"))
            if ttl is None:
                ttl = _DEFAULT_TTL
            now = int(now)
            entry = {"fp": fp, "at": at, "iat": now, "until": now + ttl - _margin(ttl)}
            if rotated:
                entry["rt"] = new_rt
            elif held:
                entry["rt"] = held
            try:
                state.save(self._dir, key, entry)
            except OSError as err:
                if rotated:
                    # Keep the new chain in RAM, but do not use a token that is not durable.
                    self._ram[key] = {"fp": fp, "rt": new_rt}
                    raise FireError("storage",
                                    "could not store the rotated refresh token (OSError %s); "
                                    "the request was not sent, free flash space and fire again"
                                    % (err.args[0] if err.args else "?"))
                # Nothing to lose: the access token is only cached in RAM.
            self._ram[key] = entry
            return "Bearer " + at
