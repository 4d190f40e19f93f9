# GATT layer: the BLE service over `bluetooth`: advertising, RX/TX, fragments, MTU.
