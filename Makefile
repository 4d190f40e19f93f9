# keyhook: everything starts from nothing here. `make test` and `make demo` install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt host/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# Tests run on both cores (pytest-xdist), at most 2 workers: every test keeps its files, radio and
# ports to itself. `make test JOBS=0` runs them in one process.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 2 ] && n=2; echo $$n)

.PHONY: all install test demo bench hil clean

all: test

install: $(STAMP)

$(STAMP): requirements.txt host/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e host
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m keyhook.lab.demo

bench: $(STAMP)
	$(PY) tests/bench/run.py

# Hardware in the loop: make hil PORT=/dev/ttyUSB0 BLE=AA:BB:CC:DD:EE:FF [HIL_HOST=192.0.2.10]
hil: $(STAMP)
	$(PY) -m pytest tests/hil -rs --port="$(PORT)" --ble-address="$(BLE)" --hil-host="$(HIL_HOST)"

clean:
	rm -rf $(VENV) build .pytest_cache
