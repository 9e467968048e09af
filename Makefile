# Plenary: `make up` runs the embedded stack, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PACKAGES := services/kit services/registration services/ticketing services/notifications services/checkin services/stack
SYSTEM_STAMP := $(VENV)/.system-packages
SYSTEM_PACKAGES := docker-compose chromium fonts-dejavu-core

.PHONY: up test lint install system-deps replay deadletters rebuild-checkin clean

$(STAMP): requirements.lock services/checkin/vendor.json $(addsuffix /pyproject.toml,$(PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(addprefix -e ,$(PACKAGES))
	$(PY) services/checkin/vendor.py
	touch $@

install: $(STAMP)

$(SYSTEM_STAMP): Makefile
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi
	touch $@

system-deps: $(STAMP) $(SYSTEM_STAMP)

up: $(STAMP)
	exec $(PY) -m plenary_stack up

test: system-deps
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check services tests bench
	$(PY) -m mypy

replay: $(STAMP)
	$(PY) -m plenary_kit.replay $(ARGS)

# Dead letters: ARGS="list --topic registration.v1" or ARGS="redrive --topic registration.v1 --consumer ticketing".
deadletters: $(STAMP)
	$(PY) -m plenary_kit.deadletters $(ARGS)

# Rebuild checkin's ticket projection from the ticket and registration topics.
rebuild-checkin: $(STAMP)
	$(PY) -m checkin rebuild

clean:
	rm -rf $(VENV) var

# Every benchmark, each on a stack of its own; JSON per benchmark and bench/results/summary.md.
# make bench ARGS=--quick for smaller sizes, ARGS=--full for the scaling run at 10,000 delegates too.
.PHONY: bench
bench: $(STAMP)
	$(PY) -m bench.all $(ARGS)

# The registration surge alone; options through ARGS, e.g. make bench-surge ARGS="--delegates 2000 --runs 3".
.PHONY: bench-surge
bench-surge: $(STAMP)
	$(PY) -m bench.registration_surge $(ARGS)

# The door: verdict and scan-to-dashboard latency at 100 scans a second; bench/results/scan_latency.json.
.PHONY: bench-scan
bench-scan: $(STAMP)
	$(PY) -m bench.scan_latency $(ARGS)

# Registration to scan-ready per delegate (bench/results/end_to_end.json), and the cost per registration
# and per scan at 100, 1,000 and 10,000 delegates (bench/results/scaling.json); options through ARGS.
.PHONY: bench-e2e bench-scaling
bench-e2e: MODULE := end_to_end
bench-scaling: MODULE := scaling
bench-e2e bench-scaling: $(STAMP)
	$(PY) -m bench.$(MODULE) $(ARGS)
