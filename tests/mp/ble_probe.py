# Test device: the raw `bluetooth` stand-in, logging every IRQ as one JSON line.
# Characteristics (value handles printed at start):
#   plain  (write, default 20-byte buffer)   big (write, buffer 100)   app (write, append, 64)
#   out    (read + notify + indicate)        cmd (write): b"notify N" notifies N bytes on out,
#                                            b"disconnect" disconnects the central, b"indicate"
#                                            indicates out, b"update" writes out with send_update,
#                                            b"grow" sets plain's buffer to 100 bytes,
#                                            b"raise" raises in the IRQ handler, b"burst N" notifies
#                                            N times without yielding, b"notify-bye N" notifies N
#                                            times then disconnects, b"block MS" holds the CPU in C
import json
import time

import asyncio
import bluetooth

ble = bluetooth.BLE()
ble.active(True)
ble.config(mtu=247)
U = bluetooth.UUID
F = bluetooth
((plain, big, app, out, cmd),) = ble.gatts_register_services((
    (U("6b657968-0000-0000-0000-000000000000"), (
        (U("6b657968-0000-0000-0000-000000000001"), F.FLAG_WRITE | F.FLAG_WRITE_NO_RESPONSE),
        (U("6b657968-0000-0000-0000-000000000002"), F.FLAG_WRITE),
        (U("6b657968-0000-0000-0000-000000000003"), F.FLAG_WRITE),
        (U("6b657968-0000-0000-0000-000000000004"), F.FLAG_READ | F.FLAG_NOTIFY | F.FLAG_INDICATE),
        (U("6b657968-0000-0000-0000-000000000005"), F.FLAG_WRITE),
    )),))
ble.gatts_set_buffer(big, 100)
ble.gatts_set_buffer(app, 64, True)
ble.gatts_write(out, b"initial value")
names = {plain: "plain", big: "big", app: "app", out: "out", cmd: "cmd"}
flag = asyncio.ThreadSafeFlag()
todo = []
kept = []


def plain_data(x):
    if isinstance(x, memoryview):
        return {"mv": bytes(x).hex()}
    if isinstance(x, tuple):
        return [plain_data(v) for v in x]
    return x


def irq(event, data):
    line = {"irq": event, "data": plain_data(data), "types": [type(v).__name__ for v in data]}
    if event in (1, 2):
        kept.append(data[2])  # kept without copying: must not stay valid after the handler
    if event == 2:
        todo.append((None, b"advertise"))
    if event == 3:
        h = data[1]
        line["char"] = names.get(h)
        if h in (plain, big):
            line["value"] = ble.gatts_read(h).hex()
        elif h == cmd:
            v = ble.gatts_read(h)
            if v == b"raise":
                raise ValueError("probe: raised in the handler")
            if v.startswith(b"block "):  # a late handler: no other IRQ runs meanwhile
                t = time.ticks_ms()
                while time.ticks_diff(time.ticks_ms(), t) < int(v[6:]):
                    pass
                line["blocked"] = True
            todo.append((data[0], v))
    print(json.dumps(line))
    flag.set()


ble.irq(irq)


def advertise():
    ble.gap_advertise(100000, b"\x02\x01\x06\x0a\x09ble-probe")


async def main():
    advertise()
    print(json.dumps({"ready": True, "handles": {v: k for k, v in names.items()}}))
    while True:
        await flag.wait()
        while todo:
            conn, c = todo.pop(0)
            if c.startswith(b"notify "):
                n = int(c[7:])
                try:
                    ble.gatts_notify(conn, out, bytes(i & 0xFF for i in range(n)))
                    print(json.dumps({"notified": n}))
                except OSError as e:
                    print(json.dumps({"notify_error": e.errno}))
            elif c.startswith(b"burst "):
                sent, errs = 0, []
                for i in range(int(c[6:])):
                    try:
                        ble.gatts_notify(conn, out, bytes((i & 0xFF,)))
                        sent += 1
                    except OSError as e:
                        errs.append(e.errno)
                print(json.dumps({"burst": sent, "errors": sorted(set(errs))}))
            elif c.startswith(b"notify-bye "):
                for i in range(int(c[11:])):
                    ble.gatts_notify(conn, out, bytes((i,)))
                ble.gap_disconnect(conn)
                print(json.dumps({"bye": True}))
            elif c == b"grow":
                ble.gatts_set_buffer(plain, 100)
                print(json.dumps({"grown": True}))
            elif c == b"indicate":
                ble.gatts_indicate(conn, out)
            elif c == b"update":
                ble.gatts_write(out, b"updated", True)
                print(json.dumps({"updated": True}))
            elif c == b"readapp":
                print(json.dumps({"app": ble.gatts_read(app).hex(), "again": ble.gatts_read(app).hex()}))
            elif c == b"kept":
                print(json.dumps({"kept": [bytes(k).hex() for k in kept]}))
            elif c == b"disconnect":
                print(json.dumps({"disconnect": ble.gap_disconnect(conn), "again": ble.gap_disconnect(conn + 100)}))
            elif c == b"advertise":
                advertise()


asyncio.run(main())
