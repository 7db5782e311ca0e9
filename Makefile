# Two entry points for a fresh machine with only Python 3.11+:
#   make quickstart   — train on built-in synthetic facades (no download), write the results page
#   make test         — run the whole test suite (with the torch, demo, onnx and gcs extras)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/quickstart
# Test processes: most of the suite's time is single-threaded XLA compilation, so two workers
# nearly halve it on two cores. Each test module runs whole in one worker (--dist loadfile).
TEST_WORKERS ?= 2

.PHONY: quickstart test install install-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test,torch,demo,onnx,gcs]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

quickstart: $(VENV)/.installed
	$(PY) launch.py --config configs/quickstart.py --workdir $(WORKDIR)
	@echo "Results page: $(abspath $(WORKDIR))/index.html"

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) runs .pytest_cache
