# Set-up and the two front-door commands. `make demo` and `make test` each create or refresh
# the local virtual environment first, so they work on a fresh machine with only Python.
PYTHON ?= python3
VENV ?= .venv
# torch goes in first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
# GPU users: make test TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124'
TORCH_SPEC ?= torch==2.13.0
# The exact versions that produced the documented numbers (docs/reproducibility.md); `make test-latest`
# empties it to test against the newest releases.
CONSTRAINTS ?= constraints.txt
CONSTRAINT_OPTION = $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
BIN := $(VENV)/bin
# The package alone (what `make demo` needs), and the package with the test tools.
STAMP := $(VENV)/.cf_hf-installed
TEST_STAMP := $(VENV)/.cf_hf-test-installed
# The package and its dependencies go in with uv when it can be had (it downloads and unpacks in
# parallel and compiles no bytecode; README has the timings); pip otherwise. Torch stays with pip,
# which honours pip's own configuration (a local wheel, a CUDA index) and TORCH_SPEC.
# $(1): what to install; $(2): extra uv options.
INSTALL = { $(BIN)/pip install -q $(CONSTRAINT_OPTION) uv \
	  && $(BIN)/uv pip install -q --python $(BIN)/python $(CONSTRAINT_OPTION) -C editable_mode=compat $(2) $(1); } \
	|| $(BIN)/pip install -q $(CONSTRAINT_OPTION) --config-settings editable_mode=compat $(1)

.PHONY: setup demo test test-fast test-latest lint constraints clean

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q --no-compile $(TORCH_SPEC)
	$(call INSTALL,-e .)
	touch $(STAMP)

# The tests start many fresh processes: compile the bytecode of everything installed, once.
$(TEST_STAMP): $(STAMP)
	$(call INSTALL,-e '.[test]',--compile-bytecode)
	touch $(TEST_STAMP)

setup: $(TEST_STAMP)

# One seed from the shipped original CLIP; README's tables: cf-hf demo --seeds 3 --ablations
# Nothing was compiled at install: the demo writes the bytecode of the modules it imports (once; even
# where PYTHONDONTWRITEBYTECODE is set, which would otherwise recompile them in memory at every run).
demo: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/cf-hf demo --output_dir outputs/demo

OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

test: $(TEST_STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q tests
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site -q
	$(BIN)/ruff check .

# The inner loop: every test but those marked slow (the demo, several processes, the Hub server).
test-fast: $(TEST_STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q -m "not slow" tests

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# The whole suite against the newest releases of every dependency (torch: TORCH_SPEC), in an
# environment made afresh each time (an existing one would keep its versions), beside the locked one.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest CONSTRAINTS=

# Rewrite constraints.txt from the environment that just passed `make test` and reproduced the demo.
constraints: $(TEST_STAMP)
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --all --exclude-editable \
	  | grep -viE '^(cf[-_]hf|pip|setuptools|wheel)==' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .venv-latest build dist *.egg-info
