# `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
# Everything Python goes into a virtual environment inside the checkout ($(VENV), reused when
# present), so a stock machine whose python3 is the system's (PEP 668) works as well.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs

.PHONY: setup demo test quick-test
setup: $(VENV)/.installed
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

# Debian's python3 needs python3-venv for `python3 -m venv`; install it where it is missing.
$(PY):
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.py | $(PY)
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

demo: setup
	$(PY) -m ls_keras.reproduce --preset=fashion_mnist --root=$(WORKDIR)/reproduce

# The tests run in parallel processes (pytest-xdist), one per core up to 4: most of a test's
# time is TensorFlow's start-up, tracing and subprocesses, which one core leaves idle.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses=4 --durations=10

test: setup
	$(PYTEST) tests

quick-test: setup
	$(PYTEST) -m "not slow" tests
