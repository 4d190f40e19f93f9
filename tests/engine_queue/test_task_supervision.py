"""The device's long-lived tasks (GATT service, fire queue, button, clock) survive a failed
allocation: kh.app.main keeps each one, starts it again after a pause and logs it, instead of
leaving a device that still runs but no longer answers (found near the smallest heap, issue 8)."""

from __future__ import annotations


def test_a_task_that_fails_is_started_again_and_logged(micropython):
    out = micropython.json("""
        import asyncio, json
        from kh.app import main as M
        from kh.engine.log import Log

        class App:
            log = Log()

        calls = []

        async def flaky():
            calls.append(len(calls))
            if len(calls) == 1:
                raise MemoryError("memory allocation failed")
            if len(calls) == 2:
                raise KeyError("a bug")
            return "done"

        result = asyncio.run(M.Keyhook._keep(App(), "queue", flaky))
        print(json.dumps({"result": result, "calls": len(calls), "log": App.log.lines()}))
    """)
    assert out["result"] == "done" and out["calls"] == 3
    text = "\\n".join(out["log"])
    assert "restarted" in text and "error=memory" in text and "error=internal" in text
