# Two entry points for a fresh machine with only Python 3.11+:
#   make quickstart   — train on built-in synthetic facades (no download), write the results page
#   make test         — run the whole test suite (with the torch, demo, onnx and gcs extras)
# Both install the exact versions of requirements/ (hash-checked): the ones the numbers in docs/
# were measured with. `make lock` regenerates those files from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/quickstart
# Test processes: most of the suite's time is single-threaded XLA compilation, so two workers
# nearly halve it on two cores. Each test module runs whole in one worker (--dist loadfile).
TEST_WORKERS ?= 2
# The torch extra's CPU build is platform-specific: installed beside the lock, at the extra's pin.
TORCH ?= torch==2.13.0

.PHONY: quickstart test install install-test lock clean

$(VENV)/.installed: pyproject.toml requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/cpu.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements/cpu-dev.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/cpu-dev.txt
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pix2pix_jax.export.web_page --fetch_runtime
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

quickstart: $(VENV)/.installed
	$(PY) launch.py --config configs/quickstart.py --workdir $(WORKDIR)
	@echo "Results page: $(abspath $(WORKDIR))/index.html"

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

lock:
	./requirements/lock.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
