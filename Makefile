# keyhook: everything starts from nothing here. `make test` and `make demo` install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt host/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: all install test demo bench hil clean firmware

all: test

install: $(STAMP)

$(STAMP): requirements.txt host/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e host
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m keyhook.demo

bench: $(STAMP)
	$(PY) tests/bench/run.py

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
