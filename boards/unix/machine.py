# keyhook unix board: a stand-in for the parts of MicroPython's `machine` the firmware uses.
#
# Pin: input pins read 1 (pulled up) until a test presses the button wired to them, from
# outside through the virtual radio (keyhook.sim.radio.press) or in-process with
# machine._press(pin_id, down); irq() handlers run as scheduled callbacks, like the ESP32's
# default soft pin IRQs. reset() ends the process with RESET_EXIT_CODE so that the simulator
# can start the firmware again (a reboot). unique_id() is kept in the state directory.
# RTC keeps an offset to the host clock (mbedTLS still reads the host clock).
import sys
import time
from micropython import const

import _vradio as _r

RESET_EXIT_CODE = const(75)

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_levels = {}    # pin id -> level
_irqs = {}      # pin id -> (handler, trigger, Pin)
_hooked = [False]


def unique_id():
    return _r.unique_id()


def reset():
    sys.exit(RESET_EXIT_CODE)


def soft_reset():
    sys.exit(RESET_EXIT_CODE)


def reset_cause():
    import os
    try:
        return int(os.getenv("KEYHOOK_SIM_RESET_CAUSE") or PWRON_RESET)
    except ValueError:
        return PWRON_RESET


def freq(*args):
    return 160000000


def idle():
    time.sleep_ms(1)


def _press(pin_id, down):
    # the button on pin_id goes down (level 0) or up (level 1); fires matching pin IRQs
    level = 0 if down else 1
    if _levels.get(pin_id, 1) == level:
        return
    _levels[pin_id] = level
    h = _irqs.get(pin_id)
    if h and h[0] and h[1] & (Pin.IRQ_FALLING if down else Pin.IRQ_RISING):
        try:
            h[0](h[2])
        except Exception as e:
            print("Uncaught exception in IRQ callback handler")
            sys.print_exception(e)


def _on_radio_press(sock, msg):
    _press(msg[1], msg[2] != 0)
    sock.send(bytes((_r.OP_PRESS_RSP, 1)))


def _hook_radio():
    if not _hooked[0]:
        ep = _r.endpoint()
        if ep:
            ep.on(_r.OP_PRESS, _on_radio_press)
            _hooked[0] = True


class Pin:
    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_UP = const(1)
    PULL_DOWN = const(2)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self._id = id
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        if value is not None:
            _levels[self._id] = 1 if value else 0
        if mode == Pin.IN:
            _hook_radio()
        return None

    def value(self, *args):
        if args:
            _levels[self._id] = 1 if args[0] else 0
            return None
        return _levels.get(self._id, 1)

    def __call__(self, *args):
        return self.value(*args)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, hard=False):
        _hook_radio()
        _irqs[self._id] = (handler, trigger, self)
        return None

    def __repr__(self):
        return "Pin(%d)" % self._id


class WDT:
    def __init__(self, id=0, timeout=5000):
        self._timeout = timeout

    def feed(self):
        pass


_rtc_offset = [0]


class RTC:
    def datetime(self, *args):
        if args:
            y, mo, d, wd, h, mi, s = args[0][:7]
            _rtc_offset[0] = time.mktime((y, mo, d, h, mi, s, wd, 0)) - time.time()
            return None
        t = time.gmtime(time.time() + _rtc_offset[0])
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def init(self, datetime):
        self.datetime(datetime)
