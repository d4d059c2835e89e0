# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv from nothing.
# torch: the CPU build (torch==2.13.0) unless an NVIDIA GPU is visible, then the default CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lpm-installed

.PHONY: demo test bench env clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the CUDA build of torch"; $(PY) -m pip install --quiet "torch>=2.3"; \
	else \
		echo "no GPU: installing the CPU build torch==2.13.0"; $(PY) -m pip install --quiet torch==2.13.0; \
	fi
	$(PY) -m pip install --quiet -e ".[test,bench,embed,llm,calibrate]"
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lpm run default --out runs

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/lpm bench ndlib --sizes 1e4,1e5 --json runs/bench_ndlib.json

clean:
	rm -rf $(VENV) runs .pytest_cache
