# make figures | make paper | make test | make test-fast | make bench | make notebooks | make book
# The environment is a venv in .venv built from pyproject.toml (torch pinned to 2.13.0).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: env figures paper test test-fast test-paper-start lint bench notebooks book clean-cache

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

figures: $(STAMP)
	$(PY) -m experiments run all --scale quick --jobs 2

# The paper presets, cheapest estimated first, within BUDGET seconds (resumable: current
# references are skipped, an interrupted run resumes from its checkpoints).
BUDGET ?= 3600
DEVICE ?=
paper: $(STAMP)
	$(PY) -m experiments paper --budget $(BUDGET) $(if $(DEVICE),--device $(DEVICE))

test: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --maxschedchunk 1 -m "not paper_start" --durations=25

# Every paper preset planned on CPU, phase by phase (builds its data and models, times the
# first steps of every fit): about 10-15 CPU-minutes on 2 cores. `make test` only starts
# each paper preset (plan --start: its first fit's first steps).
test-paper-start: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m paper_start --durations=30

# The edit loop: units, probes against dense references, the store and CLI contract;
# no recipe claim runs and no paper page (those are in `make test`).
test-fast: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow" --ignore=tests/test_papers.py \
		--ignore-glob='tests/test_recipe_*.py' --durations=10

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) -m experiments bench

# Execute every paper page (jupytext Markdown) at quick scale into .cache/notebooks/
notebooks: $(STAMP)
	$(PY) -m pytest -q tests/test_papers.py

# The pages as a static site in build/book/ (open build/book/index.html). BOOK_EXECUTE=on
# runs every page at quick scale, reading the results store (after `make figures` only the
# pages' own cells run); cache reruns only edited pages; off shows the committed figures.
BOOK_EXECUTE ?= on
book: $(STAMP)
	$(PY) book/build.py --execute $(BOOK_EXECUTE)

clean-cache:
	rm -rf .cache/experiments
