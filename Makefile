# `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTHON ?= python3
WORKDIR ?= workdirs

.PHONY: setup demo test
setup:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)
	$(PYTHON) -m pip install -q -e ".[test]"

demo: setup
	$(PYTHON) -m ls_keras.reproduce --preset=fashion_mnist --root=$(WORKDIR)/reproduce

test: setup
	$(PYTHON) -m pytest -q tests
