"""The device's own checks, run on the host under the MicroPython unix port.

One definition of what a rule is: `keyhook rules push`, `keyhook fire` and `keyhook pin` ask the
firmware itself (`boards/unix/validate.py`, which runs `kh.store.rules` and `kh.store.schema`,
`kh.http.der` and `kh.http.tlsfail` unchanged) instead of keeping a second, hand-written copy of
its rules. One interpreter run answers every question of one command (about 20 ms).
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from keyhook import KeyhookError
from keyhook.boards import mp
from keyhook.paths import UNIX_BOARD

VALIDATE_SCRIPT = UNIX_BOARD / "validate.py"
# The interpreter must hold the whole request as Python objects: a file far over what a device
# takes is refused by the device's own size check, given heap enough to read it.
MIN_HEAP = 2 << 20


def ask_device(*, put: list | None = None, each: list | None = None, certs: list[bytes] = (),
               probe: list[str] = (), timeout: float = 60) -> dict[str, Any]:
    """Run the device's checks; returns the answer of `boards/unix/validate.py` (see there).

    `put`: rules as a `rules.put` would carry them; `each`: rules validated one by one;
    `certs`: DER certificates; `probe`: https URLs to try a TLS handshake with.
    Raises KeyhookError if the interpreter could not answer.
    """
    req = {"put": put, "each": each, "certs": [base64.b64encode(c).decode() for c in certs],
           "probe": list(probe)}
    # ensure_ascii: every character outside the BMP travels as a surrogate pair escape, and a
    # lone surrogate stays one, as integrators' clients send them (the device's reader decides)
    text = json.dumps(req)
    with tempfile.TemporaryDirectory(prefix="keyhook-check-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(text)
        proc = mp.run_micropython(VALIDATE_SCRIPT, [str(path)], heapsize=max(MIN_HEAP, 12 * len(text)),
                                  timeout=timeout, cwd=tmp)
    # split on "\n" only: str.splitlines() also splits inside a JSON string at U+2028, U+0085...
    out = proc.stdout.decode(errors="replace")
    lines = [line for line in out.split("\n") if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        # MicroPython writes an uncaught exception's traceback to stdout
        tail = (out + "\n" + proc.stderr.decode(errors="replace")).strip().split("\n")[-3:]
        raise KeyhookError("the device's validator stopped without an answer:\n  " + "\n  ".join(tail),
                           hint="this is a bug in keyhook; please report it with the file (secrets removed)")
    return json.loads(lines[-1])
