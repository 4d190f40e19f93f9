# Test device: kh.gatt over the unix board's bluetooth stand-in, echoing every record.
# argv[1]: "1" to advertise as paired. One JSON line per event on stdout.
# Records starting with a control byte:
#   0xF9           -> answers JSON stats (mtu, records, bytes, connects, disconnects, resets)
#   0xFA           -> answers JSON {"sunk": n, "bytes": b} (records swallowed by 0xFB)
#   0xFB ...       -> swallowed (counted), for throughput
#   0xFC cnt(2) size(2) -> sends cnt records of size bytes (0xFC then a counter pattern)
#   0xFE           -> the device disconnects
import json
import sys

import asyncio
import bluetooth
import _vradio

from kh.gatt.service import GattService

stats = {"records": 0, "bytes": 0, "connects": 0, "disconnects": 0, "resets": 0, "sunk": 0, "sunk_bytes": 0}
gatt = None


def emit(event, **kw):
    kw["event"] = event
    print(json.dumps(kw))


def on_connect():
    stats["connects"] += 1
    emit("connect")


def on_disconnect():
    stats["disconnects"] += 1
    emit("disconnect")


def on_reset():
    stats["resets"] += 1
    emit("reset")


async def on_record(record):
    c = record[0]
    if c == 0xFB:
        stats["sunk"] += 1
        stats["sunk_bytes"] += len(record)
        return
    stats["records"] += 1
    stats["bytes"] += len(record)
    emit("record", len=len(record), head=record[:4].hex())
    if c == 0xF9 and len(record) == 1:
        s = dict(stats)
        s["mtu"] = gatt.mtu
        await gatt.send(json.dumps(s).encode())
    elif c == 0xFA and len(record) == 1:
        await gatt.send(json.dumps({"sunk": stats["sunk"], "bytes": stats["sunk_bytes"]}).encode())
    elif c == 0xFC and len(record) == 5:
        cnt = record[1] << 8 | record[2]
        size = record[3] << 8 | record[4]
        body = bytearray(size)
        for i in range(size):
            body[i] = i & 0xFF
        body[0] = 0xFC
        for _ in range(cnt):
            if not await gatt.send(body):
                break
    elif c == 0xFE and len(record) == 1:
        gatt.disconnect()
    else:
        await gatt.send(record)


async def main():
    global gatt
    ble = bluetooth.BLE()
    gatt = GattService(ble, "keyhook-ec0001", on_record, on_connect, on_disconnect, on_reset)
    gatt.advertise(len(sys.argv) > 1 and sys.argv[1] == "1")
    emit("ready", address=_vradio.address_str(_vradio.ble_address()))
    await gatt.run()


asyncio.run(main())
