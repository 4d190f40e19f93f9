"""A fragment flood that overflows the device's receive ring, then a disconnect: the next
connection must not inherit the loss (issue 9, Medium 3). The radio's IRQs are driven into the
real GATT layer (kh.gatt.service) under the MicroPython unix port, in the order a flood
produces them: the ring overflows, the flooder disconnects, a real app connects and writes."""

from __future__ import annotations

SCRIPT = r"""
import asyncio, json
from kh.gatt.service import GattService

class FakeBLE:
    def __init__(self):
        self.value = b""
        self.sent = []
    def active(self, *a): return True
    def config(self, **kw): pass
    def gatts_register_services(self, s): return ((1, 2),)
    def gatts_set_buffer(self, *a): pass
    def gap_advertise(self, *a, **kw): pass
    def gap_disconnect(self, c): pass
    def irq(self, h): self.handler = h
    def gatts_read(self, h): return self.value
    def gatts_notify(self, conn, h, data): self.sent.append((conn, bytes(data)))

ble = FakeBLE()
got = []
svc = GattService(ble, "t", lambda rec: got.append((svc._conn, bytes(rec))))

def write(conn, frag):
    ble.value = frag
    ble.handler(3, (conn, 2))

async def main():
    task = asyncio.create_task(svc.run())
    ble.handler(1, (7, 0, b"\x00" * 6))          # the flooder connects
    await asyncio.sleep_ms(10)
    for _ in range(200):                          # faster than the task drains: the ring overflows
        write(7, b"\x80\xff\xff" + b"z" * 200)
    ble.handler(2, (7, 0, b"\x00" * 6))           # and disconnects
    await asyncio.sleep_ms(50)
    ble.sent.clear()
    ble.handler(1, (8, 0, b"\x00" * 6))           # a real app connects
    await asyncio.sleep_ms(10)
    write(8, b"\xc0\x00\x03abc")                  # one whole record
    await asyncio.sleep_ms(50)
    task.cancel()
    print(json.dumps({"delivered": [[c, r.decode()] for c, r in got],
                      "errors_to_app": [r.hex() for c, r in ble.sent if c == 8]}))

asyncio.run(main())
"""


def test_a_flood_and_disconnect_leave_nothing_for_the_next_connection(micropython):
    r = micropython.json(SCRIPT)
    assert r["errors_to_app"] == []  # no "receive buffer full" for the new app
    assert r["delivered"] == [[8, "abc"]]  # its record arrived, and nothing of the flood did
