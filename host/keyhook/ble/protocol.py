"""GATT and fragment constants of the link protocol (firmware/PROTOCOL.md section 1)."""

SERVICE_UUID = "6b657968-6f6f-6b00-a000-000000000000"
RX_UUID = "6b657968-6f6f-6b00-a000-000000000001"  # the app writes
TX_UUID = "6b657968-6f6f-6b00-a000-000000000002"  # the device notifies
COMPANY_ID = 0xFFFF
STATE_PAIRED = 0x01

START = 0x80
END = 0x40
RESERVED = 0x3F

MAX_RECORD = 8256
MTU_DEFAULT = 23
MTU_WANTED = 247
