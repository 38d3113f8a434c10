# The two commands: `make report` (the main job) and `make test` (every test). Both install what
# is missing (Debian packages, a .venv with the Python packages), configure, build and run.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD := build/default
JOBS ?= $(shell nproc)
PYPATH := PYTHONPATH=$(CURDIR)/bindings/python:$(CURDIR)/$(BUILD)/python
REPORT_DIR ?= report

.PHONY: all deps build test ctest pytest report install wheel-test exhaustive bench peers asan fuzz determinism verify gpu-check clean

all: build

deps: $(VENV)/.installed
	@bash tools/install-deps.sh

$(VENV)/.installed: pyproject.toml tools/requirements-dev.txt
	@bash tools/install-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r tools/requirements-dev.txt
	touch $@

$(BUILD)/build.ninja: $(VENV)/.installed CMakeLists.txt
	cmake --preset default -DFP8LAB_PYTHON=ON -DPython3_EXECUTABLE=$(CURDIR)/$(VPY) \
	  -Dpybind11_DIR=$$($(VPY) -m pybind11 --cmakedir)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

ctest: build
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --timeout 900

pytest: build
	$(PYPATH) $(VPY) -m pytest -q tests/python

test: build
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --timeout 900
	FUZZ_RUNS=$${FUZZ_RUNS:-200000} bash tools/fuzz.sh
	$(PYPATH) $(VPY) -m pytest -q tests/python

# The package as a user gets it (pip install . through scikit-build-core; tuned for this machine,
# which changes speed, never bits), then the main job.
install: deps
	$(VPY) -m pip install -q --no-build-isolation -Cbuild-dir=build/wheel -Ccmake.define.FP8LAB_NATIVE=ON .

# The wheel as a user installs it (pip wheel with pyproject.toml's settings, pip install into a fresh
# venv, build dir build/wheel-user kept): the dispatched kernel variant and its bits. `make test`
# runs the same test with the rest of tests/python.
wheel-test: build
	$(PYPATH) $(VPY) -m pytest -q -s tests/python/test_wheel_install.py

report: install
	$(VENV)/bin/fp8lab report --out $(REPORT_DIR)

exhaustive: build
	$(BUILD)/tests/cpp/exhaustive_casts

bench: build
	@for b in $(BUILD)/bench/bench_*; do echo "== $$b"; $$b || exit 1; done
	@for b in bench/bench_*.py; do echo "== $$b"; $(PYPATH) $(VPY) $$b || exit 1; done

# The peers are part of the dev environment now (tools/requirements-dev.txt); kept as an alias.
peers: deps

asan: deps
	cmake --preset asan -DFP8LAB_PYTHON=OFF
	cmake --build build/asan -j $(JOBS)
	ctest --test-dir build/asan -j $(JOBS) --output-on-failure

# Every golden trace in fixtures/golden plus generated cases per operation, as a CI gate would run it.
verify: build
	$(PYPATH) $(VPY) -m fp8lab verify --junit $(BUILD)/verify.xml

# What a session lent a GPU runs, once: builds gpu/, runs every GPU check, writes logs and traces to $$OUT.
gpu-check: deps
	OUT=$${OUT:-$(CURDIR)/gpu-check-out} bash gpu/check.sh

# libFuzzer on the trace parser (clang): 10^7 executions by default (FUZZ_RUNS changes it; `make
# test` runs a bounded 200000).
fuzz: deps
	FUZZ_RUNS=$${FUZZ_RUNS:-10000000} bash tools/fuzz.sh

# The same GEMM bits from GCC -O3, GCC -O0 and Clang builds.
determinism: deps
	bash tools/determinism.sh

clean:
	rm -rf build
