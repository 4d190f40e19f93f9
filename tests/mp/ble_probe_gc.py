# Test device: ble_probe.py with the collector running after every kilobyte allocated
# (gc.threshold), so that collections run while the virtual radio's thread hands messages over
# to the main thread (the unix port runs threads without a GIL).
import gc

gc.threshold(1024)
import ble_probe  # noqa: E402,F401  (runs the probe)
