# Test device: a button on GPIO 0 (pulled up, active low) logged through pin IRQs, on the radio.
import json

import asyncio
import machine
import _vradio

flag = asyncio.ThreadSafeFlag()
edges = []
pin = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)


def on_edge(p):
    edges.append(p.value())
    flag.set()


pin.irq(on_edge, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)


async def main():
    print(json.dumps({"ready": True, "address": _vradio.address_str(_vradio.ble_address()), "level": pin.value(),
                      "uid": machine.unique_id().hex()}))
    while True:
        await flag.wait()
        while edges:
            print(json.dumps({"edge": edges.pop(0)}))


asyncio.run(main())
