# The README's commands. Everything installs from nothing into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CI and the quick start pin the CPU build that installs in seconds; the package itself
# accepts any torch>=2.1,<3 (pyproject.toml), so a CUDA install elsewhere works as it is.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint format bench clean

# The nnunet extra lets the nnU-Net trainer tests run (about 40 s more on 2 cores); the fast
# extra (numba) compiles the far-voxel search of 3-D Hausdorff distances. The torch pin rides
# along so that pip keeps the pinned build rather than follow torchvision's pin.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test,nnunet,fast]" "$(TORCH_PIN)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/ctxseg demo --out outputs/demo

test: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q --run-slow

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: install
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_losses.py
	$(BIN)/python benchmarks/bench_gan.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
