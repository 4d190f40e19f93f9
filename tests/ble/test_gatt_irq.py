"""kh.gatt's IRQ side, in process under the MicroPython unix port, driven through the IRQ
interface the real `bluetooth` module calls (event number, data tuple)."""

from __future__ import annotations


def test_ring_put_allocates_nothing_even_when_it_wraps(micropython):
    # The IRQ handler runs on the NimBLE task on an ESP32; kh.gatt.ring says put never allocates.
    r = micropython.json("""
        import json, micropython
        from kh.gatt.ring import Ring
        ring = Ring(64)
        data = bytes(range(40))
        dst = bytearray(64)
        out = []
        def put():  # in a function: a module-level assignment may grow the globals dict
            micropython.heap_lock()
            try:
                ok = 1 if ring.put(0x81, 7, 40, data) else 0
            except MemoryError:
                ok = -1  # it allocated
            micropython.heap_unlock()
            return ok
        for i in range(6):  # 45-byte entries in a 64-byte ring: every other one wraps
            ok = put()
            kind, conn, n = ring.get(dst)
            out.append([ok, kind, conn, n, dst[:n] == data])
        print(json.dumps(out))
    """)
    assert r == [[1, 0x81, 7, 40, True]] * 6


def _gatt_script(body: str) -> str:
    return """
        import json, asyncio, bluetooth
        from kh.gatt.service import GattService
        ble = bluetooth.BLE()
        seen = {"records": [], "resets": 0, "connects": 0}
        def on_record(rec):
            seen["records"].append(bytes(rec).decode())
        def on_connect():
            seen["connects"] += 1
        def on_reset():
            seen["resets"] += 1
        gatt = GattService(ble, "kh-test", on_record, on_connect, None, on_reset)
        addr = memoryview(bytes(6))
        def write(conn, data):
            ble.gatts_write(gatt._rx, data)
            gatt._irq(3, (conn, gatt._rx))
        async def settle():
            for _ in range(20):
                await asyncio.sleep_ms(5)
        async def main():
            task = asyncio.create_task(gatt.run())
""" + body + """
            task.cancel()
        asyncio.run(main())
        print(json.dumps(seen))
    """


def test_overflow_flag_does_not_outlive_its_connection(micropython):
    # A write lost at the end of one connection (ring full) must not make the next app's first
    # record fail with "busy": connection handles are reused, so only the flag can tell.
    r = micropython.json(_gatt_script("""
            gatt._irq(1, (1, 0, addr))
            await settle()
            for _ in range(40):  # no task runs in between: the ring (2 KiB) overflows
                write(1, b"\\x80\\x10\\x00" + bytes(200))
            gatt._irq(2, (1, 0, addr))
            await settle()
            seen["resets_before"] = seen["resets"]
            gatt._irq(1, (1, 0, addr))  # the next app gets the same handle
            await settle()
            write(1, b"\\xc0\\x00\\x05hello")
            await settle()
    """))
    assert r["records"] == ["hello"] and r["resets"] == r["resets_before"] and r["connects"] == 2


def test_a_raising_gatts_read_is_a_lost_fragment_not_a_dead_handler(micropython):
    r = micropython.json(_gatt_script("""
            gatt._irq(1, (1, 0, addr))
            await settle()
            real = ble.gatts_read
            def boom(h):
                raise MemoryError("test")
            ble.gatts_read = boom
            try:
                gatt._irq(3, (1, gatt._rx))  # must not raise
                seen["raised"] = False
            except Exception:
                seen["raised"] = True
            ble.gatts_read = real
            await settle()
            write(1, b"\\xc0\\x00\\x05again")
            await settle()
            # extra IRQs an ESP32 sends are ignored: read request, connection and encryption updates
            seen["extra"] = [gatt._irq(4, (1, gatt._rx)), gatt._irq(27, (1, 24, 0, 400, 0)),
                             gatt._irq(28, (1, 1, 0, 0, 16))]
    """))
    assert r["raised"] is False and r["resets"] == 1 and r["records"] == ["again"]
    assert r["extra"] == [None, None, None]


def test_a_record_longer_than_any_free_block_is_refused_busy_and_the_link_goes_on(micropython):
    # Records are assembled in a buffer of their announced length, allocated at START. In a heap
    # cut into 1 KiB holes, a central announcing a record of 8000 bytes gets ERROR busy (no
    # MemoryError reaches the event loop), the rest of that record is skipped, and the next
    # record that fits is delivered.
    r = micropython.json(_gatt_script("""
            gatt._irq(1, (1, 0, addr))
            await settle()
            sent = []
            real_notify = ble.gatts_notify
            def notify(conn, h, data=None):
                sent.append(bytes(data).hex())
                return real_notify(conn, h, data)
            ble.gatts_notify = notify
            blocks = []
            try:
                while True:
                    blocks.append(bytearray(1024))
            except MemoryError:
                pass
            for i in range(0, len(blocks), 2):  # free every other block: 1 KiB holes, none of 8000 bytes
                blocks[i] = None
            import gc
            gc.collect()
            write(1, b"\\x80\\x1f\\x40" + bytes(17))  # START of an 8000-byte record
            await settle()
            write(1, b"\\x00" + bytes(17))  # its continuation: skipped
            await settle()
            write(1, b"\\x80\\x02\\x58" + b"a" * 17)  # a 600-byte record, in 20-byte fragments
            await settle()
            for i in range(32):
                write(1, b"\\x00" + b"a" * 18)
            write(1, b"\\x40" + b"a" * 7)
            await settle()
            seen["sent"] = sent
            blocks = None
    """), heapsize=96 * 1024)
    assert [len(x) for x in r["records"]] == [600] and r["resets"] == 1
    # the ERROR record's first notification (no central here takes the rest off the air)
    first = bytes.fromhex(r["sent"][0])
    message = b"no memory for a record this long; send shorter ones"
    assert first[0] == 0x80 and int.from_bytes(first[1:3], "big") == 4 + len(message)
    assert first[3] == 0x7F and first[4] == 9  # ERROR busy
    assert first[7:] == message[:len(first) - 7]
