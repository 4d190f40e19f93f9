"""The virtual radio survives a failed allocation in the main thread (review of issue 8, 2026-11-30).

The firmware lives through a MemoryError (its long-lived tasks start again after a collection),
and a real ESP32's NimBLE bindings take nothing from the GC heap to queue a notification or to
hand over a received packet. The simulated controller must not turn one failed allocation into
a device that hangs or stops listening for good:

- notify() built its pool entry while it held the lock it shares with the radio's thread: a
  MemoryError there left the lock taken, and the next notify() (main thread) and the radio's
  thread (every packet, every connection event) waited for it forever.
- a scheduled drain that met the lock taken scheduled itself again through a new bound method:
  a MemoryError there left "a drain is scheduled" set with none scheduled, and every packet the
  central sent after it waited in the radio, undelivered, for good.
"""

from __future__ import annotations

# Each snippet starts a real Endpoint in a radio directory of its own, connects to it as a
# central would (a SOCK_SEQPACKET Unix socket) and reports what a user of the radio sees.
PRELUDE = """
import json, micropython, os, socket, sys, time
import _vradio as vr

radio = sys.argv[1]
ep = vr.Endpoint(radio, b"\\x24\\x6f\\x28\\x00\\x00\\x07")
got = []
ep.on(vr.OP_WRITE_REQ, lambda s, msg: got.append(bytes(msg[3:])))

def central():
    c = socket.socket(1, 5)  # AF_UNIX, SOCK_SEQPACKET
    c.connect(vr.sockaddr(ep.path))
    return c

def wait_for(pred, ms):
    t = time.ticks_ms()
    while not pred() and time.ticks_diff(time.ticks_ms(), t) < ms:
        time.sleep_ms(5)
    return pred()
"""


def test_a_notify_that_runs_out_of_memory_leaves_the_radio_working(micropython, tmp_path):
    out = micropython.json(PRELUDE + """
c = central()
micropython.heap_lock()
try:
    ep.notify(c, b"\\x90\\x00\\x10hello")
    failed = None
except MemoryError:
    failed = "MemoryError"
micropython.heap_unlock()
free = ep._lock.acquire(0)  # the lock the radio's thread needs for every packet and event
if free:
    ep._lock.release()
# what the central sees: a write still reaches the device
c.send(b"\\x04\\x00\\x10after")
delivered = wait_for(lambda: got, 3000)
ep.stop()
print(json.dumps({"failed": failed, "lock_free": free, "delivered": [g.decode() for g in got]}))
""", args=[str(tmp_path / "radio")], timeout=60)
    assert out["failed"] == "MemoryError"  # the allocation did fail
    assert out["delivered"] == ["after"], out  # the radio still hands packets over
    assert out["lock_free"] is True, "the radio's lock stayed taken after the MemoryError"


def test_a_drain_that_cannot_reschedule_for_lack_of_memory_does_not_deafen_the_radio(micropython, tmp_path):
    # A drain scheduled by the radio's thread runs inside the main thread's own notify() (which
    # holds the lock): it must come back later, and it must, even with the heap exhausted.
    out = micropython.json(PRELUDE + """
c = central()
ep._lock.acquire()  # as inside notify()
ep._sched = True    # the radio's thread scheduled this drain
micropython.heap_lock()
try:
    ep._drain(None)
    failed = None
except MemoryError:
    failed = "MemoryError"
micropython.heap_unlock()
ep._lock.release()
c.send(b"\\x04\\x00\\x10first")
c.send(b"\\x04\\x00\\x10second")
delivered = wait_for(lambda: len(got) == 2, 3000)
ep.stop()
print(json.dumps({"failed": failed, "delivered": [g.decode() for g in got]}))
""", args=[str(tmp_path / "radio")], timeout=60)
    assert out["delivered"] == ["first", "second"], out  # the radio still hands packets over
    assert out["failed"] is None, "the drain raised MemoryError while it scheduled itself again"


def test_a_full_hand_over_ring_gets_a_drain_even_when_the_last_one_could_not_be_scheduled(micropython, tmp_path):
    # A central that sends without waiting fills the hand-over ring while the main thread is
    # busy (a TLS handshake holds it in C for a second on an ESP32); the radio's thread then
    # waits for room. If the drain that met the lock taken could not schedule itself again
    # (the schedule queue was full), it says so (_sched False), and the waiting radio thread
    # must schedule the next one: otherwise neither thread ever moves again.
    # (write requests past the receive pool are dropped, as a controller drops ACL data it has no
    # buffer for; MTU requests are not counted there, so a rogue central fills the ring with them)
    out = micropython.json(PRELUDE + """
got = []
ep.on(vr.OP_MTU_REQ, lambda s, msg: got.append(bytes(msg[3:])))
c = central()
ep._sched = True  # a drain is on its way, but the main thread is busy
for i in range(80):
    c.send(b"\\x03\\x00\\xf7" + str(i).encode())
full = wait_for(lambda: (ep._in_w + 1) % len(ep._inq) == ep._in_r, 3000)
ep._sched = False  # that drain met the lock taken, and the schedule queue was full
delivered = wait_for(lambda: len(got) == 80, 5000)
ep.stop()
print(json.dumps({"full": full, "delivered": len(got), "in_order": got == [str(i).encode() for i in range(len(got))]}))
""", args=[str(tmp_path / "radio")], timeout=60)
    assert out["full"] is True  # the ring did fill
    assert out["delivered"] == 80 and out["in_order"], out
