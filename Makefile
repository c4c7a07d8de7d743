# nearcare: the README's two commands are `make demo` and `make test`.
# Both start by creating .venv/ with the project installed editable and all extras.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv system-deps test demo lint typecheck bench proof clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[agent,backend,embedded,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests drive for real: mosquitto (private brokers), dbus (BlueZoo's
# private bus) and chromium (Playwright, never a browser download).
system-deps:
	bash scripts/system-deps.sh mosquitto mosquitto-clients dbus chromium fonts-dejavu-core

# The same checks CI runs: lint and types first (fast), then the whole suite.
test: venv system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

demo: venv
	$(PY) -m nearcare_cli demo

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

bench: venv
	$(PY) bench/agent.py
	$(PY) bench/ingest.py
	$(PY) bench/alert_latency.py
	$(PY) bench/api.py

# The fault matrix's long variants (a 3-minute broker stop, a broker SIGKILL with readings queued,
# a worker lost for good, ...): about 10 minutes; prints the table and exits 1 on any loss.
proof: venv system-deps
	$(PY) -m tests.faults.harness --proof

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
