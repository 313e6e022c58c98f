# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/modal-tf demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest

# The side-by-side suite (issue #8): every script rewrites its section of BENCHMARKS.md. ~45 min on 2 CPU cores;
# run it on an otherwise idle machine. Peers (x-transformers, HF transformers) come from the bench extra.
BENCHES := core op_breakdown precision compile attention_paths allocator optimizer generation vision scaling data prefetch tokenizer_bpe actions
$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $@

bench: $(VENV)/.bench-installed
	@for name in $(BENCHES); do \
		echo "== benchmarks/$$name.py"; \
		HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python benchmarks/$$name.py --write || exit 1; \
	done

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
