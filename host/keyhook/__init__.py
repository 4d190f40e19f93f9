"""keyhook host tool: the app side of keyhook devices.

Flash and deploy boards, onboard devices over BLE, push webhook rules, and run the
device firmware itself under the MicroPython unix port.
"""

__version__ = "0.1.0"


class KeyhookError(Exception):
    """Root of every expected failure; the CLI prints it and exits with status 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
