# Every target sets itself up: a .venv with the build, the dependencies and
# the compiled extension, so a fresh clone needs nothing but python3 and gcc.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXT_SOURCES := matching/_engine.pyx matching/_engine.pxd matching/_book_feed.pyx $(wildcard matching/*.pxi) replication/native/_fast.pyx \
	replication/native/_reports.pyx \
	replication/protocol/_client_fast.pyx \
	setup.py pyproject.toml

.PHONY: all venv build test test-long test-faults golden sim demo bench lint wheel clean

all: test

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=77" wheel "Cython>=3.0" "numpy>=1.24"
	$(PY) -m pip install -q --no-build-isolation -e ".[test,bench,dev]"
	touch $(STAMP)

venv: $(STAMP)

# Rebuild the extension in place whenever its sources change.
matching/.built: $(STAMP) $(EXT_SOURCES)
	$(PY) setup.py -q build_ext --inplace
	touch matching/.built

build: matching/.built

test: build
	$(PY) -m pytest -q -p no:cacheprovider tests

test-long: build
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests

# The fault suite on real processes at full size (forged messages, full disks, flipped
# bytes, partitions, floods); `make test` runs the same tests at scale 1.
test-faults: build
	MATCHCORE_FAULT_SCALE=20 $(PY) -m pytest -q -p no:cacheprovider tests/faults

# Every golden trace (8,000 simulator schedules: sync/async, faults overlapping or not); `make test`
# runs the first 25 seeds of each. A restructuring of the protocol code must reproduce them all.
golden: build
	$(PY) -m replication.testing.golden --check --jobs 2

# The fault simulator's long run: seeds 1..10,000, faults overlapping, up to 10 per schedule
# (add --mode async for the async half; `python -m replication.testing.sim --help`).
SIM_ARGS ?= --schedules 10000 --seed 1 --jobs 2 --overlap on --max-faults 10
sim: build
	$(PY) -m replication.testing.sim $(SIM_ARGS)

demo: build
	$(VENV)/bin/matchcore demo

bench: build
	$(VENV)/bin/matchcore bench all --quick

# The wheel in dist/, then the proof that it installs into a clean venv (dependencies from
# PyPI) and runs `matchcore replay` and a short demo there (tests/packaging/test_wheel_install.py).
wheel: build
	rm -rf dist build/lib.* build/bdist.*  # a stale build/lib would put old modules in the wheel
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .
	MATCHCORE_WHEEL="$$(ls dist/matchcore-*.whl)" $(PY) -m pytest -q -p no:cacheprovider tests/packaging/test_wheel_install.py

# Ruff (lint and format), cython-lint, and mypy on the layers below the drivers (replication's
# native, protocol and storage: files and options in pyproject.toml's [tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check matching replication benchmarks tests examples
	$(VENV)/bin/ruff format --check matching replication benchmarks tests examples
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cython-lint --max-line-length 110 matching/_engine.pyx matching/_engine.pxd matching/*.pxi \
		replication/native/_fast.pyx replication/native/_reports.pyx replication/protocol/_client_fast.pyx
	$(VENV)/bin/python -m mypy

clean:
	rm -rf $(VENV) build dist matching/.built matching/*.so matching/_engine.c replication/native/*.so replication/protocol/*.so replication/native/_fast.c replication/native/_reports.c replication/protocol/_client_fast.c
