# The two commands of the README are `make demo` and `make test`; everything else here is what they need.
# Environments are (re)built only when their inputs change (stamp files), so both commands are cheap to repeat.
PYTHON ?= python3.11
VENV := .venv
TRITON_VENV := .venv-triton
ORCH_STAMP := $(VENV)/.factory-installed
TRITON_STAMP := $(TRITON_VENV)/.factory-installed
CHROMEDRIVER := /usr/bin/chromedriver
WRK := /usr/bin/wrk
PYTEST_ARGS ?=

.PHONY: demo test test-fast bootstrap lint lock stack-up stack-down benchmarks

demo: bootstrap
	$(VENV)/bin/factory demo $(DEMO_ARGS)

test: bootstrap
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: bootstrap
	$(VENV)/bin/python -m pytest -m "not services and not scheduler and not slow" $(PYTEST_ARGS)

bootstrap: $(ORCH_STAMP) $(TRITON_STAMP) $(CHROMEDRIVER)

# Headless Chromium + chromedriver for the browser tests of the factory view (Debian packages, installed as root).
# A file target: nothing runs when the driver is already there.
$(CHROMEDRIVER):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver

$(ORCH_STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

$(TRITON_STAMP): serving/triton/requirements.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(TRITON_VENV)/bin/python -m pip install --quiet -r serving/triton/requirements.txt
	touch $@

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock: $(ORCH_STAMP)
	(echo "# Exact versions of the orchestration env, verified together on Python 3.11 (regenerate: make lock)."; \
	 $(VENV)/bin/pip freeze --exclude-editable | grep -v "^model-factory" | sed 's/^torch==\(.*\)+cpu/torch==\1/') > constraints.txt

stack-up: bootstrap
	$(VENV)/bin/factory stack up

stack-down:
	$(VENV)/bin/factory stack down

# http_load.py and tcp_forwarder.py are helpers of the serving benchmarks, not benchmarks.
BENCHMARK_SCRIPTS = $(filter-out benchmarks/http_load.py benchmarks/tcp_forwarder.py,$(wildcard benchmarks/*.py))

benchmarks: bootstrap $(WRK)
	for script in $(BENCHMARK_SCRIPTS); do $(VENV)/bin/python $$script || exit 1; done

# The serving benchmarks' load generator (they fall back to a Python client without it).
$(WRK):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk
