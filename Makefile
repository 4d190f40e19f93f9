# keyhook: everything starts from nothing here. `make test` and `make demo` install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt host/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# A 32-bit build of the same MicroPython unix port (objects the ESP32's size), for `make test32`
# and the 32-bit column of `make bench`: MP32=/path/to/micropython-x86, or KEYHOOK_MICROPYTHON32
# in the environment. MP32_FROZEN: the same with firmware/kh frozen in (bench only).
MP32 ?= $(KEYHOOK_MICROPYTHON32)
MP32_FROZEN ?= $(KEYHOOK_MICROPYTHON32_FROZEN)
# Tests run on both cores (pytest-xdist), at most 2 workers: every test keeps its files, radio and
# ports to itself. `make test JOBS=0` runs them in one process.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 2 ] && n=2; echo $$n)

.PHONY: all install test test32 demo bench hil clean firmware interop interop-ha-runtime mp32-frozen

all: test

install: $(STAMP)

$(STAMP): requirements.txt host/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e host
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

# the whole suite with the firmware on the 32-bit interpreter (KEYHOOK_MICROPYTHON)
test32: $(STAMP)
	@test -n "$(MP32)" && test -x "$(MP32)" || { echo "error: no 32-bit MicroPython interpreter (MP32=$(MP32))"; \
	  echo "hint: make test32 MP32=/path/to/micropython-x86 (the unix port built with CC='gcc -m32')"; exit 2; }
	KEYHOOK_MICROPYTHON=$(abspath $(MP32)) KEYHOOK_MICROPYTHON32=$(abspath $(MP32)) $(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m keyhook.lab.demo

# MICROPY_DIR=/path/to/micropython (a source tree with lib/mbedtls and lib/micropython-lib) builds
# the frozen column's interpreter first, unless MP32_FROZEN names one
bench: $(STAMP) $(if $(and $(MICROPY_DIR),$(if $(MP32_FROZEN),,1)),mp32-frozen)
	KEYHOOK_MICROPYTHON32=$(if $(MP32),$(abspath $(MP32))) \
	KEYHOOK_MICROPYTHON32_FROZEN=$(abspath $(or $(MP32_FROZEN),$(if $(MICROPY_DIR),$(MP32_FROZEN_BIN)))) \
	$(PY) tests/bench/run.py

# The 32-bit unix port with firmware/kh and the board's stand-ins frozen in (boards/unix/manifest.py):
#   make mp32-frozen MICROPY_DIR=/path/to/micropython   ->  build/mp32/micropython-x86-frozen
# Needs a 32-bit C toolchain (Debian: gcc-multilib); CC32 overrides "gcc -m32". Everything it builds,
# mpy-cross too, goes under build/mp32: the MicroPython tree is only read.
MP32_FROZEN_BIN := build/mp32/micropython-x86-frozen
CC32 ?= gcc -m32
mp32-frozen: $(STAMP)
	@test -n "$(MICROPY_DIR)" && test -f "$(MICROPY_DIR)/ports/unix/Makefile" || { \
	  echo "error: no MicroPython source tree (MICROPY_DIR=$(MICROPY_DIR))"; \
	  echo "hint: make mp32-frozen MICROPY_DIR=/path/to/micropython (a clone with its lib/mbedtls and lib/micropython-lib submodules)"; exit 2; }
	@echo 'int main(void){return 0;}' | $(CC32) -x c -o /dev/null - 2>/dev/null || { \
	  echo "error: '$(CC32)' cannot build 32-bit programs"; \
	  echo "hint: apt-get install gcc-multilib (or set CC32, e.g. CC32=i686-linux-gnu-gcc)"; exit 2; }
	$(MAKE) -C "$(MICROPY_DIR)/mpy-cross" -j$(JOBS) BUILD="$(abspath build/mp32/mpy-cross)"
	MICROPY_MPYCROSS="$(abspath build/mp32/mpy-cross/mpy-cross)" \
	$(MAKE) -C "$(MICROPY_DIR)/ports/unix" -j$(JOBS) VARIANT=standard CC="$(CC32)" MICROPY_PY_BTREE=0 \
	  MICROPY_PY_FFI=0 MICROPY_STANDALONE=0 LDFLAGS_EXTRA=-static BUILD="$(abspath build/mp32/build-frozen)" \
	  MICROPY_MPYCROSS="$(abspath build/mp32/mpy-cross/mpy-cross)" FROZEN_MANIFEST="$(abspath boards/unix/manifest.py)"
	cp build/mp32/build-frozen/micropython $(MP32_FROZEN_BIN)
	$(MP32_FROZEN_BIN) -c "import sys, kh, bluetooth; print(sys.implementation.name, sys.maxsize, 'kh', kh.VERSION, 'frozen')"

# The cloud with its existing clients themselves (opt-in, not part of `make test`); each check
# skips, saying why, when its client or runtime is missing:
#   EKEY_SAMPLE_CLIENT=DIR   a checkout of ekey's ekey-bionyx-third-party-api-sample-client
#                            (run unchanged; its one requirement, requests, goes in build/interop)
#   KEYHOOK_HA_ROOT=DIR      a root file system with Home Assistant 2026.2 on Python 3.13 in
#                            /opt/ha (`make interop-ha-runtime` makes build/ha-root; as root)
interop: $(STAMP)
	test -x build/interop/sample-venv/bin/python || { $(PYTHON) -m venv build/interop/sample-venv && \
	  build/interop/sample-venv/bin/pip install -q --disable-pip-version-check 'requests>=2,<3'; }
	$(PY) -m pytest -rs -p no:xdist tests/cloud/test_interop_ekey_sample_client.py tests/cloud/test_interop_home_assistant.py

# Home Assistant needs Python 3.13 or later: a Debian 13 root file system (debootstrap, apt-get
# installs it) with Home Assistant, its test harness and ekey-bionyxpy from PyPI. About 1.6 GB.
HA_VERSION ?= 2026.2.3
HA_HARNESS_VERSION ?= 0.13.316
interop-ha-runtime:
	command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
	test -x build/ha-root/usr/bin/python3.13 || debootstrap --variant=minbase \
	  --include=python3.13,python3.13-venv,python3.13-dev,gcc,g++,ca-certificates trixie build/ha-root http://deb.debian.org/debian
	cp /etc/resolv.conf build/ha-root/etc/resolv.conf
	cp /etc/ssl/certs/ca-certificates.crt build/ha-root/etc/ssl/certs/ca-certificates.crt
	test -f build/ha-root/opt/ha/pyvenv.cfg || chroot build/ha-root python3.13 -m venv /opt/ha
	chroot build/ha-root /opt/ha/bin/pip install -q --disable-pip-version-check "homeassistant==$(HA_VERSION)" \
	  "pytest-homeassistant-custom-component==$(HA_HARNESS_VERSION)" "ekey-bionyxpy==1.0.1"

# Hardware in the loop: make hil PORT=/dev/ttyUSB0 BLE=AA:BB:CC:DD:EE:FF [HIL_HOST=192.0.2.10]
hil: $(STAMP)
	$(PY) -m pytest tests/hil -rs --port="$(PORT)" --ble-address="$(BLE)" --hil-host="$(HIL_HOST)"

# keyhook's MicroPython image (ROMFS partition, TLS 1.3, X25519), built with ESP-IDF (idf.py on PATH):
#   make firmware BOARD=ESP32_GENERIC MICROPY_DIR=/path/to/micropython [CODE=romfs|frozen]
BOARD ?= ESP32_GENERIC
CODE  ?= romfs
firmware: $(STAMP)
	$(PY) -m keyhook firmware --board "$(BOARD)" --code "$(CODE)" $(if $(MICROPY_DIR),--micropython-src "$(MICROPY_DIR)")

clean:
	rm -rf $(VENV) build .pytest_cache
