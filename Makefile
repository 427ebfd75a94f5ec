# Two commands do everything on a fresh machine: `make demo` and `make test`; `make docs` builds the docs site.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := examples/fusionseg_depth
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS)) | cksum | cut -d' ' -f1)
# torch CPU build first: an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo pretrain pretrain-gat test docs docs-serve lint bench bench-quick clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q $(addprefix -e ,$(PLUGINS))  # example domain plugins (tests run them)
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: $(STAMP)  # maps a held-out field with the shipped weights (seconds); `fusionseg demo --train` trains first
	$(BIN)/fusionseg demo --config configs/default.yaml --out outputs/demo

# --8<-- [start:pretrain]
# The shipped weights fusionseg/weights/default.ckpt (+ .json record): configs/default.yaml trained on the
# simulator, fixed seed, the config's epoch budget, one thread (README, "Shipped weights").
pretrain: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m fusionseg.pretrain --config configs/default.yaml --threads 1 \
		--out fusionseg/weights/default.ckpt

# The paper's GAT trained to convergence, fusionseg/weights/paper_gat.ckpt (+ .json record): configs/paper_gat.yaml's
# recipe on a GPU when there is one (accelerator: auto); the benchmark scores it beside the default (issue 25).
pretrain-gat: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m fusionseg.pretrain --config configs/paper_gat.yaml --threads 2 \
		--out fusionseg/weights/paper_gat.ckpt
# --8<-- [end:pretrain]

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# The docs tools (pyproject's `docs` extra) go into the same venv on first use, apart from `make demo`'s install.
DOCS_STAMP := $(VENV)/.docs-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[docs]"
	@rm -f $(VENV)/.docs-*
	@touch $@

docs: $(DOCS_STAMP)  # the documentation site into site/; warnings fail (mkdocs.yml: strict)
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(DOCS_STAMP)  # the site at http://127.0.0.1:8000, rebuilt on every edit
	$(BIN)/mkdocs serve

bench: $(STAMP)  # full suite, about 30 min on 2 cores; results in benchmarks/results/
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)  # smoke run of every benchmark, a few minutes
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf outputs runs lightning_logs wandb .pytest_cache site
