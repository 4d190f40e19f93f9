# MicroPython-side helpers for the oauth unit tests: a scripted token endpoint standing in for
# the http layer's post_form, a clock the test moves, and small conveniences.
import json
import asyncio
import binascii

from kh.http.errors import FireError
from kh.store import files

EVENTS = []  # ordered log of what happened: post, write, used


class Clock:
    def __init__(self, t=1700000000):
        self.t = t

    def __call__(self):
        return self.t


class Endpoint:
    # post_form(url, body, level, pin) -> (status, body). Scripted answers first (a tuple, or an
    # exception to raise), then a valid grant: AT<n>, with RT<n> when rotating.
    def __init__(self, answers=None, rotate=False, ttl=3600, token_type="Bearer"):
        self.calls = []
        self.answers = list(answers or [])
        self.n = 0
        self.rotate = rotate
        self.ttl = ttl
        self.token_type = token_type

    async def __call__(self, url, body, level, pin):
        if isinstance(pin, (bytes, bytearray)):
            pin = "der:" + binascii.hexlify(pin).decode()
        self.calls.append({"url": url, "body": body.decode(), "level": level, "pin": pin})
        EVENTS.append("post")
        if self.answers:
            a = self.answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a
        self.n += 1
        doc = {"access_token": "AT%d" % self.n, "token_type": self.token_type}
        if self.ttl is not None:
            doc["expires_in"] = self.ttl
        if self.rotate:
            doc["refresh_token"] = "RT%d" % self.n
        return 200, json.dumps(doc).encode()


def definition(url="https://api.example.test/hook", level="TlsWithCACheck", pin=None, **auth):
    a = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "RT0",
         "tokenEndpoint": "https://idp.example.test/oauth2/token"}
    a.update(auth)
    d = {"method": "Post", "url": url, "securityLevel": level, "authentication": a}
    if pin:
        d["pinnedCertificate"] = pin
    return d


def trace_writes():
    # Log every atomic write (with the refresh token it stores) into EVENTS.
    real = files.write_atomic

    def write_atomic(path, data, *secret):
        real(path, data, *secret)
        try:
            rt = json.loads(data).get("rt")
        except ValueError:
            rt = None
        EVENTS.append("write:%s" % rt)

    files.write_atomic = write_atomic
    return real


def run(coro):
    return asyncio.run(coro)


def error(coro):
    # {"code", "message"} of the FireError that coro raises, or {"value": result}.
    try:
        return {"value": run(coro)}
    except FireError as e:
        return {"code": e.code, "message": e.message}


def stored(state_dir, d=None):
    # The state of d's token chain, or (without d) of the only chain in state_dir.
    from kh.oauth import tokens
    if d is None:
        names = [n for n in files.listdir(state_dir) if n.endswith(".json")]
        if len(names) != 1:
            return {"files": names}
        return json.loads(files.read(state_dir + "/" + names[0]))
    a = d["authentication"]
    fp = tokens._fingerprint(a["refreshToken"], a.get("tokenEndpoint") or a.get("tokenEndoint"), a, d)
    return tokens.Tokens(state_dir)._load(fp)


def out(obj):
    print(json.dumps(obj))
