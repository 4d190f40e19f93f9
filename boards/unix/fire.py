# `keyhook fire` on the unix port: fire one definition with the firmware's own engine and print
# the result as one JSON line.
#   micropython fire.py FILE... [--trust-dir DIR] [--state DIR] [--resolve NAME:ADDR]... [--repeat N]
# Several files fire in order on one keep-alive pool, one JSON line each; --repeat fires each
# N times. --resolve answers for NAME without DNS (like curl). Exit 0 iff the last fire got a
# response.
import sys
import json
import asyncio
from kh.engine.fire import Env, fire
from kh.http import resolve
from kh.store import jsontext
from kh.store import rules
from kh.store.errors import StoreError


def _usage(msg):
    print(json.dumps({"sent": False, "status": None, "error": "usage", "message": msg, "elapsed_ms": 0}))
    sys.exit(2)


def _checked(definition):
    # a full webhook object, or just its "definition" (named "fire" in messages)
    if isinstance(definition, dict) and isinstance(definition.get("definition"), dict):
        rule = definition
    else:
        rule = {"functionName": "fire", "definition": definition}
    rules._check([rule], set())
    return rule


def main(argv):
    paths = []
    trust_dir = None
    state = None
    answers = {}
    repeat = 1
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--trust-dir", "--state", "--resolve", "--repeat"):
            if i + 1 >= len(argv):
                _usage(a + " needs a value")
            v = argv[i + 1]
            i += 2
            if a == "--trust-dir":
                trust_dir = v
            elif a == "--state":
                state = v
            elif a == "--repeat":
                repeat = int(v)
            else:
                k = v.find(":")
                if k <= 0:
                    _usage("--resolve wants NAME:ADDRESS")
                answers[v[:k].lower()] = v[k + 1:].strip("[]")
        else:
            paths.append(a)
            i += 1
    if not paths:
        _usage("no definition file given")
    if answers:
        def answer(host, port):
            if host in answers:
                return [resolve.literal(answers[host], port)]
            return resolve.system(host, port)
        resolve.set_resolver(answer)
    env = Env(trust_dir=trust_dir, state_dir=state)
    ok = False
    try:
        for path in paths:
            try:
                with open(path, "rb") as f:
                    definition = jsontext.loads(f.read())
            except (OSError, ValueError):
                print(json.dumps({"sent": False, "status": None, "error": "invalid_definition",
                                  "message": "cannot read the definition as JSON", "elapsed_ms": 0}))
                ok = False
                continue
            # the device's own validator first (kh.store.rules, as a rules.put): a definition is
            # fired here if and only if the device would store it, and as it would store it
            try:
                definition = _checked(definition)
            except StoreError as e:
                print(json.dumps({"sent": False, "status": None, "error": "invalid_definition",
                                  "message": e.message, "elapsed_ms": 0}))
                ok = False
                continue
            for _ in range(repeat):
                r = asyncio.run(fire(definition, env))
                print(json.dumps(r))
                ok = r["status"] is not None
    finally:
        env.close()
    sys.exit(0 if ok else 1)


main(sys.argv[1:])
