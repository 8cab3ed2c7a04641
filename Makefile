# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Experiments at once, each pinned to its share of the cores. Most use about 1.5 cores at their
# default size; two at a time cut the wall time of nine of them from 491 s to 342 s on two cores
# (README), and pinning cut six of them from 348-361 s to 310-319 s. Timing experiments run alone.
JOBS ?= 2
# The pip that installs the lock is pinned too, so a new pip release cannot change the build.
PIP_VERSION := 26.3

.PHONY: reproduce test bench lint venv clean

venv: $(STAMP)

# Rebuilt only when the lock or the package metadata changes (idempotent).
# pip byte-compiles on one core; compileall -j 0 does the same files on all of them (the lock
# installed and compiled in 30.6 s instead of 40.9 s on two cores). The .pyc files matter where
# PYTHONDONTWRITEBYTECODE is set: without them each process imports the stack in about 10 s, not 4.
$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --no-compile -r requirements.lock
	$(PY) -m pip install --quiet --no-compile --no-deps --require-hashes -r requirements-nodeps.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m experiments --all --jobs $(JOBS)
	@echo "wrote results/REPORT.md"

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(PY) -m ruff check diffusionlab experiments benchmarks tests

clean:
	rm -rf results benchmarks/results
