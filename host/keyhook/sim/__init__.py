"""Simulation: the virtual radio that simulated devices and the host share, and a bleak
backend for it, so the host's BLE code is the same bleak code for a real and a simulated
device."""
