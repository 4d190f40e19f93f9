# keyhook firmware: secure webhook device on MicroPython (ESP32 with BLE; unix port in tests).
VERSION = "0.1.0"
