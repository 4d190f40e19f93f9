"""esptool's output as callbacks: a logger (esptool's documented "custom logger" interface)
that `flash` and `image` install for the duration of an esptool call."""

from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterator


def progress_label(prefix: str) -> str:
    """esptool's progress prefix ("Writing at 0x00012000 ") without the moving address."""
    return re.sub(r"\s+(at|from)\s+0x[0-9a-fA-F]+.*$", "", prefix.strip()) or "writing"


class EsptoolLog:
    """An esptool logger (its documented "custom logger" interface) that forwards to callbacks.

    `on_line(text)` receives every message; `on_progress(done, total, label)` every progress
    step of `write_flash` and `erase_flash`.
    """

    def __init__(self, on_line: Callable[[str], None] | None = None,
                 on_progress: Callable[[int, int, str], None] | None = None) -> None:
        self.on_line = on_line or (lambda s: None)
        self.on_progress = on_progress or (lambda d, t, label: None)
        self.lines: list[str] = []

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if text:
            self.lines.append(text)
            self.on_line(text)

    def template(self):
        """An instance of esptool's `TemplateLogger` bound to this object."""
        from esptool.logger import TemplateLogger

        outer = self

        class _Logger(TemplateLogger):
            def print(self, *args, **kwargs):
                outer._emit(kwargs.get("sep", " ").join(str(a) for a in args))

            def note(self, message):
                outer._emit(f"note: {message}")

            def warning(self, message):
                outer._emit(f"warning: {message}")

            def error(self, message):
                outer._emit(f"error: {message}")

            def stage(self, finish=False):
                pass

            def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
                outer.on_progress(int(cur_iter), int(total_iters), progress_label(str(prefix)))

            def set_verbosity(self, verbosity):
                pass

        return _Logger()


@contextlib.contextmanager
def esptool_logging(sink: EsptoolLog | None) -> Iterator[None]:
    """Route esptool's output to `sink` for the duration of the block."""
    if sink is None:
        yield
        return
    from esp_pylib.logger import EspLog
    from esptool.logger import log as esplog

    previous = EspLog.instance
    esplog.set_logger(sink.template())
    try:
        yield
    finally:
        EspLog.instance = previous
