# tincoso: two commands for a fresh Debian 12 machine (as root, or with sudo available).
#   make demo   installs what is missing, then runs the demo on local services
#   make test   installs what is missing, then runs every check and test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := mosquitto influxdb nodejs npm
PYTEST_ARGS ?= -n 2 --durations=10

.PHONY: demo test lint typecheck pytest deps system-deps bench bench-quick clean help dist

help:
	@echo "make demo   - install what is missing, run the demo (simulated district on local services)"
	@echo "make test   - install what is missing, run lint, type checks and every test"

demo: deps
	$(BIN)/tincoso demo

test: deps lint typecheck pytest

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: deps
	$(BIN)/mypy protocols backend agent dashboards hil_tests bench
	$(BIN)/python -m agent.mcu_build typecheck

pytest: deps
	$(BIN)/pytest $(PYTEST_ARGS)

deps: system-deps $(VENV)/.installed node_modules/.installed

# Debian packages: the broker, the database and Node.js (runs MicroPython for the tests).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null || missing="$$missing influxdb"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	command -v arecord >/dev/null || missing="$$missing alsa-utils"; \
	command -v Xvfb >/dev/null || missing="$$missing xvfb"; \
	command -v xdotool >/dev/null || missing="$$missing xdotool"; \
	command -v display >/dev/null || missing="$$missing imagemagick"; \
	for pkg in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core; do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Debian's packages start their own services; tincoso runs its own on free ports instead.
	@-$(SUDO) systemctl disable --now mosquitto influxdb >/dev/null 2>&1 || true

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The agent's wheel (agent/ + protocols/, three dependencies): dist/tincoso_agent-*.whl, and
# the MicroPython agent as .mpy files for an ESP32 (docs/mcu.md: flashing with mpremote).
.PHONY: dist-wheel dist-mpy
dist: dist-wheel dist-mpy
dist-wheel: deps
	$(BIN)/python packaging/build_agent_wheel.py dist
dist-mpy: deps
	$(BIN)/python -m agent.mcu_build mpy dist/mcu

bench: deps
	$(BIN)/python -m bench

bench-quick: deps
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) node_modules var dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
