"""expiresAt on the device (security review B): the queue reads exactly the RFC 3339 date-times
the validator accepts, and a rule whose expiresAt it cannot read (stored before the validator
checked it) is not fired, clock set or not."""

from __future__ import annotations

from queuehelp import PRELUDE


def test_rfc3339_forms_and_an_unreadable_stored_expires_at(micropython):
    out = micropython.json(PRELUDE + """
from kh.store import rfc3339, schema
forms = ["2027-01-01T00:00:00Z", "2027-01-01t01:30:00.123+01:30", "2026-12-31T19:00:00-05:00",
         "2024-02-29T00:00:00z", "2027-01-01", "SECRETDATE", "2027-01-01T00:00:00",
         "2025-02-29T00:00:00Z", "2027-01-01T00:00:60Z", "2027-01-01T00:00:00+24:00", "x" * 300]
read = [rfc3339.seconds(s) for s in forms]
took = []
for s in forms:
    r = rule("f"); r["expiresAt"] = s
    try:
        schema.validate(r); took.append(True)
    except Exception:
        took.append(False)
# a rule stored by an older firmware, with a date it cannot read: the validator is bypassed
real = schema.validate
schema.validate = lambda r: real(dict(r, expiresAt=None))
old = rule("old"); old["expiresAt"] = "2020-01-01"; rules.put(old)
schema.validate = real
res = []
for now in (1798761600, 5):     # clock set (2027), clock unset
    q = Queue(fake_fire, log=log, sleep_ms=clock.sleep, ticks_ms=clock.ticks, ticks_diff=clock.diff,
              net_up=None, clock=lambda now=now: now)
    t = q.trigger("old"); run(q.drain()); res.append(q.outcome(t)["error"])
report(read=read, took=took, res=res)
""")
    jan1 = 1798761600  # 2027-01-01T00:00:00Z
    assert out["read"][:4] == [jan1, jan1, jan1, 1709164800]
    assert out["read"][4:8] == [None] * 4
    assert out["read"][8] == jan1 + 60  # a leap second
    assert out["read"][9:] == [None, None]
    assert out["took"] == [r is not None for r in out["read"]]  # the validator takes what the queue reads
    assert out["res"] == ["rule_expired", "rule_expired"]
    assert not [c for c in out["calls"] if c[0] == "old"]
