"""The host's BLE layer: scan for keyhook devices and carry records over GATT fragments.

The same bleak code serves a real device (the system adapter) and a simulated one (the virtual
radio, when `radio=` or `KEYHOOK_RADIO` is given).
"""

from keyhook.ble.fragments import FragmentError, Reassembler, fragment
from keyhook.ble.link import BleRecordLink, connect, open_link
from keyhook.ble.protocol import MAX_RECORD, RX_UUID, SERVICE_UUID, TX_UUID
from keyhook.ble.scan import FoundDevice, scan

__all__ = [
    "BleRecordLink", "FoundDevice", "FragmentError", "MAX_RECORD", "RX_UUID", "Reassembler", "SERVICE_UUID",
    "TX_UUID", "connect", "fragment", "open_link", "scan",
]
