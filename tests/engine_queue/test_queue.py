"""The fire queue on the real MicroPython unix port: order, retry and back-off on a fake clock,
give-up, what is never retried, the bounded queue, waiting for the network, and its log."""

from __future__ import annotations

import json

from queuehelp import PRELUDE, SECRETS


def _names(out):
    return [c[0] for c in out["calls"]]


def _short(o):
    """An outcome without its fire details (sent, elapsed_ms)."""
    return None if o is None else {k: o[k] for k in ("name", "status", "error", "attempts")}


def test_events_fire_their_rules_in_order(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("a", ["finger:alice"]), rule("b", ["button:door"]), rule("c", ["finger:alice:2", "button:door"]),
           rule("d")])
q = queue()
n = [q.event("finger:alice:2"), q.event("button:door"), q.event("finger:bob:1")]
t = q.trigger("d")
none = [q.trigger("a"), q.trigger("nope")]   # not bound to "trigger" / unknown
pending = q.pending()
run(q.drain())
report(n=n, pending=pending, none=none, outcome=q.outcome(t), left=q.pending(),
       why=[q.why_not("a"), q.why_not("nope"), q.why_not("d")])
""")
    assert out["why"] == ["not_triggerable", "not_found", None]
    assert out["n"] == [2, 2, 0] and out["pending"] == 5 and out["none"] == [None, None]
    assert _names(out) == ["a", "c", "b", "c", "d"]
    assert out["sleeps"] == [] and out["left"] == 0
    assert out["outcome"] == {"name": "d", "status": 200, "error": None, "attempts": 1, "sent": True,
                              "elapsed_ms": 5}
    assert len(out["log"]) == 5 and all("status=200 attempt=1/4" in l for l in out["log"])
    assert out["log"][0].startswith('+') and '"a" status=200' in out["log"][0]


def test_network_failures_retry_with_exponential_backoff(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("r"), rule("next")])
script["r"] = [{"sent": False, "error": "connect"}, {"sent": False, "error": "dns"},
               {"sent": False, "error": "timeout"}, {"sent": True, "status": 204}]
q = queue(attempts=5, backoff_ms=1000)
q.trigger("r"); q.trigger("next")
run(q.drain())
report(o=q.outcome(1))
""")
    assert _names(out) == ["r"] * 4 + ["next"]  # in order: "next" waits for "r"
    assert out["sleeps"] == [1000, 2000, 4000]
    t = [c[1] for c in out["calls"][:4]]
    assert [b - a for a, b in zip(t, t[1:])] == [1005, 2005, 4005]  # 5 ms per fake fire
    assert _short(out["o"]) == {"name": "r", "status": 204, "error": None, "attempts": 4}
    log = out["log"]
    assert "error=connect attempt=1/5 retry_in_ms=1000" in log[0]
    assert "error=dns attempt=2/5 retry_in_ms=2000" in log[1]
    assert "error=timeout attempt=3/5 retry_in_ms=4000" in log[2]
    assert "status=204 attempt=4/5" in log[3]


def test_gives_up_after_the_last_attempt_and_caps_the_delay(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("r", method="Get")])
script["r"] = [{"sent": True, "error": "reset"}] * 10
q = queue(attempts=4, backoff_ms=1000, backoff_max_ms=1500)
run(q.drain()) if q.trigger("r") else None
report(o=q.outcome(1))
""")
    assert _names(out) == ["r"] * 4
    assert out["sleeps"] == [1000, 1500, 1500]
    assert out["o"]["error"] == "reset" and out["o"]["attempts"] == 4
    assert out["log"][-1].endswith("error=reset attempt=4/4 gave_up")


def test_never_retried(micropython):
    cases = {
        "tls": {"sent": False, "error": "tls_untrusted"},
        "pin": {"sent": False, "error": "tls_pin_mismatch"},
        "remote": {"sent": False, "error": "insecure_remote"},
        "invalid": {"sent": False, "error": "invalid_definition"},
        "token": {"sent": False, "error": "token_endpoint"},
        "s404": {"sent": True, "status": 404},
        "s401": {"sent": True, "status": 401},
        "s429": {"sent": True, "status": 429},
        "s500": {"sent": True, "status": 500},
        "s302": {"sent": True, "status": 302},
        "raise_fire": "FireError",
        "raise_bug": "TypeError",
    }
    out = micropython.json(PRELUDE + """
cases = json.loads(%r)
rules.put([rule(n) for n in cases])
for n, res in cases.items():
    script[n] = [FireError("tls_expired", "TOKEN-SECRET in a message") if res == "FireError"
                 else TypeError("TOKEN-SECRET") if res == "TypeError" else res] + [{"sent": True, "status": 200}]
q = queue()
o = {}
for n in cases:
    t = q.trigger(n)
    run(q.drain())
    o[n] = q.outcome(t)
report(o=o)
""" % json.dumps(cases))
    assert sorted(_names(out)) == sorted(cases)  # each fired exactly once
    assert out["sleeps"] == []
    o = out["o"]
    assert o["tls"]["error"] == "tls_untrusted" and o["s404"]["status"] == 404
    assert o["raise_fire"]["error"] == "tls_expired" and o["raise_bug"]["error"] == "internal"
    text = json.dumps(out["log"])
    assert not any(s in text for s in SECRETS)


def test_gateway_errors_retry_but_a_sent_post_is_not_repeated(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("s503"), rule("s504"), rule("s504get", method="Get"), rule("post_sent"), rule("post_unsent"), rule("get_sent", method="Get"),
           rule("put_sent", method="Put")])
script["s503"] = [{"sent": True, "status": 503}]
script["s504"] = [{"sent": True, "status": 504}]
script["s504get"] = [{"sent": True, "status": 504}]
script["post_sent"] = [{"sent": True, "error": "timeout"}]
script["post_unsent"] = [{"sent": False, "error": "timeout"}]
script["get_sent"] = [{"sent": True, "error": "timeout"}]
script["put_sent"] = [{"sent": True, "error": "closed"}]
q = queue()
for n in ("s503", "s504", "s504get", "post_sent", "post_unsent", "get_sent", "put_sent"):
    q.trigger(n)
run(q.drain())
report(post=q.outcome(4))
""")
    assert _names(out) == ["s503", "s503", "s504", "s504get", "s504get", "post_sent", "post_unsent", "post_unsent", "get_sent", "get_sent",
                           "put_sent", "put_sent"]
    assert out["post"] == {"name": "post_sent", "status": None, "error": "timeout", "attempts": 1, "sent": True,
                           "elapsed_ms": 5}
    assert any('"post_sent" error=timeout attempt=1/4 not_retried' in l for l in out["log"])


def test_a_full_queue_drops_the_oldest_with_a_log_line(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("r%d" % i) for i in range(6)])
q = queue(max_len=3)
tickets = [q.trigger("r%d" % i) for i in range(6)]
run(q.drain())
report(dropped=q.dropped, first=q.outcome(tickets[0]), last=q.outcome(tickets[-1]))
""")
    assert _names(out) == ["r3", "r4", "r5"]
    assert out["dropped"] == 3
    assert [l.split(" ", 1)[1] for l in out["log"][:3]] == ['"r0" dropped_queue_full', '"r1" dropped_queue_full',
                                                           '"r2" dropped_queue_full']
    assert out["first"] is None or out["first"]["error"] == "dropped"


def test_waits_for_the_network_bounded(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("comes_up"), rule("stays_down")])
up_at = [clock.t + 1200]
def net_up():
    return clock.t >= up_at[0]
q = queue(net_up=net_up, net_wait_ms=2000, net_poll_ms=250, attempts=2, backoff_ms=500)
a = q.trigger("comes_up")
run(q.drain())
before = list(clock.sleeps)
up_at[0] = 10 ** 9            # Wi-Fi gone for good
b = q.trigger("stays_down")
run(q.drain())
report(before=before, a=q.outcome(a), b=q.outcome(b), waited=sum(clock.sleeps) - sum(before))
""")
    assert out["before"] == [250] * 5 and out["a"]["status"] == 200  # fired once the network came up
    assert out["b"] == {"name": "stays_down", "status": None, "error": "no_network", "attempts": 2, "sent": False,
                        "elapsed_ms": None}
    assert _names(out) == ["comes_up"]  # never fired while down
    assert out["waited"] == 2000 + 500 + 2000  # wait, back-off, wait: bounded
    assert out["log"][-1].endswith("error=no_network attempt=2/2 gave_up")


def test_stale_gone_replaced_and_expired_rules(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("slow"), rule("gone"), rule("changed"), rule("old")])
script["slow"] = [{"sent": False, "error": "connect"}] * 10
q = queue(attempts=10, backoff_ms=20000, backoff_max_ms=20000, max_age_ms=60000)
t_gone = q.trigger("gone"); t_changed = q.trigger("changed"); t_slow = q.trigger("slow")
rules.delete("gone")
rules.put(rule("changed", url="https://h.example/v2"))
run(q.drain())
# expiresAt: passed (clock set) -> skipped; clock unset -> fired
exp = rule("old"); exp["expiresAt"] = "2025-01-01T00:00:00Z"; rules.put(exp)
q2 = Queue(fake_fire, log=log, sleep_ms=clock.sleep, ticks_ms=clock.ticks, ticks_diff=clock.diff, net_up=None,
           clock=lambda: 1798761600)
t_exp = q2.trigger("old"); run(q2.drain())
q3 = Queue(fake_fire, log=log, sleep_ms=clock.sleep, ticks_ms=clock.ticks, ticks_diff=clock.diff, net_up=None,
           clock=lambda: 5)
t_unset = q3.trigger("old"); run(q3.drain())
report(slow=q.outcome(t_slow), gone=q.outcome(t_gone), changed=q.outcome(t_changed),
       exp=q2.outcome(t_exp), unset=q3.outcome(t_unset))
""")
    # tries at 0, 20 and 40 s; at 60 s plus the fires' own time it is older than max_age_ms
    assert out["slow"]["error"] == "stale" and out["slow"]["attempts"] == 3
    assert out["gone"]["error"] == "rule_gone"
    assert out["changed"]["status"] == 200
    assert [c[2] for c in out["calls"] if c[0] == "changed"] == ["https://h.example/v2"]
    assert out["exp"]["error"] == "rule_expired" and out["unset"]["status"] == 200
    assert [c[0] for c in out["calls"]].count("old") == 1


def test_worker_task_and_waiting_for_a_trigger(micropython):
    out = micropython.json(PRELUDE + """
rules.put([rule("a"), rule("b", ["button:x"])])
q = Queue(fake_fire, log=log, net_up=None)        # real clock and sleep
async def main():
    task = asyncio.create_task(q.run())
    t = q.trigger("a")
    o = await q.wait(t, 2000)
    q.event("button:x")
    await asyncio.sleep_ms(20)
    none = await q.wait(999, 30)                   # unknown ticket: bounded wait, None
    task.cancel()
    return o, none
o, none = run(main())
report(o=o, none=none)
""")
    assert _short(out["o"]) == {"name": "a", "status": 200, "error": None, "attempts": 1}
    assert out["none"] is None
    assert _names(out) == ["a", "b"]


def test_queue_from_device_settings(micropython):
    out = micropython.json(PRELUDE + """
from kh.store import config
from kh.engine.queue import from_settings
config.update_settings({"fire_attempts": 2, "backoff_ms": 700, "queue_len": 3})
rules.put([rule("r")])
script["r"] = [{"sent": False, "error": "dns"}] * 5
q = from_settings(fake_fire, None, log=log, sleep_ms=clock.sleep, ticks_ms=clock.ticks, ticks_diff=clock.diff,
                  net_up=None)
t = q.trigger("r")
run(q.drain())
report(o=q.outcome(t), max_len=q.max_len, net_wait=q.net_wait_ms)
""")
    assert out["o"]["attempts"] == 2 and out["sleeps"] == [700]
    assert out["max_len"] == 3 and out["net_wait"] == 30000


def test_the_worker_survives_bad_rules_and_flash_errors(micropython):
    out = micropython.json(PRELUDE + """
class BrokenStore:
    def names_for(self, ev):
        raise OSError(5)
    def triggerable(self, name):
        return True
    def get(self, name):
        if name == "flash":
            raise OSError(5)
        return {"functionName": name, "definition": "not an object"} if name == "odd" else rule(name)
q = queue(rules=BrokenStore())
n = q.event("button:x")
tickets = [q.trigger(x) for x in ("flash", "odd", "fine")]
run(q.drain())
report(n=n, o=[q.outcome(t) for t in tickets])
""")
    assert out["n"] == 0
    assert [o["error"] for o in out["o"]] == ["internal", "internal", None]
    assert out["o"][2]["status"] == 200 and _names(out) == ["fine"]
    assert out["log"][0].endswith('"event" store error')
    assert out["log"][1].endswith('"flash" error=internal OSError')
