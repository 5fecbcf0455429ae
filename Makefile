# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv first.
SHELL := bash
VENV ?= .venv
SERVE_VENV ?= .venv-serve
PY := $(VENV)/bin/python
EDGECNN := $(VENV)/bin/edgecnn
STAMP := $(VENV)/.installed

.PHONY: demo test test-serve readme dist check-wheel check-aarch64 lint clean

# pip install with five tries, 30 s more wait before each: one cut-off download (a CI run: opencv-python
# stopped at 70.5 of 72.9 MB, and pip's six resumes got no more bytes) otherwise fails the whole set-up; a
# new try downloads afresh. Three tries 20 s apart were not enough once (stop 35: nvidia-pytriton stopped
# at 52.2 of 55.4 MB on every try, a minute of outage; the same URL downloaded whole minutes later).
# $(call pip,PYTHON,ARGUMENTS)
# PYTHONWARNINGS: setuptools' editable build warns that a folder named like the package is in the working
# directory; that is this repository's layout, and the 10-line box would be the demo's only noise.
pip = for try in 1 2 3 4 5; do PYTHONWARNINGS=ignore::UserWarning $(1) -m pip install --quiet $(2) && exit 0; \
	echo "pip install failed (try $$try of 5; a network hiccup?)" >&2; [ $$try = 5 ] || sleep $$((30 * try)); \
	done; exit 1
TRAIN_EXTRAS := '.[train,web,box,dev]'
SERVE_EXTRAS := '.[train,serve,dev]'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(call pip,$(PY),--upgrade pip)
	$(call pip,$(PY),-e $(TRAIN_EXTRAS))
	touch $(STAMP)

# The whole loop with your own model: frames captured from the first part of each clip become two new
# classes beside the sample photos; the fine-tuned INT8 bundle then watches the parts it has not seen.
DEMO_DATA := runs/demo-data
demo: $(STAMP)
	rm -rf $(DEMO_DATA) runs/demo-camera && mkdir -p runs/demo-camera && cp -r samples/photos $(DEMO_DATA)
	$(EDGECNN) capture samples/videos/cup.mp4 --out $(DEMO_DATA) --label cup --duration 5 --count 30 \
		--min-change 0.03 --headless
	$(EDGECNN) capture samples/videos/box.mp4 --out $(DEMO_DATA) --label box --duration 9 --count 30 \
		--min-change 0.03 --headless
	$(EDGECNN) finetune $(DEMO_DATA) --out runs/demo --force
	$(EDGECNN) export runs/demo/best.pt --out bundles/demo --int8 --force
	$(EDGECNN) camera bundles/demo --source samples/videos/cup.mp4 --start 5 --headless --precision int8 \
		--save runs/demo-camera/cup.mp4 --jsonl runs/demo-camera/cup.jsonl
	$(EDGECNN) camera bundles/demo --source samples/videos/box.mp4 --start 9 --headless --precision int8 \
		--save runs/demo-camera/box.mp4 --jsonl runs/demo-camera/box.jsonl

test: $(STAMP)
	$(PY) -m pytest

# Triton serving needs numpy<2 (nvidia-pytriton 0.7), so its tests run in their own venv and must not skip.
$(SERVE_VENV)/.installed: pyproject.toml
	python3 -m venv $(SERVE_VENV)
	$(call pip,$(SERVE_VENV)/bin/python,--upgrade pip)
	$(call pip,$(SERVE_VENV)/bin/python,-e $(SERVE_EXTRAS))
	touch $@

test-serve: $(SERVE_VENV)/.installed
	set -o pipefail; $(SERVE_VENV)/bin/python -m pytest -rs tests/runtime/test_serve.py \
		tests/runtime/test_triton_repo.py tests/runtime/test_triton_backend.py | tee .test-serve.log
	! grep -q "SKIPPED" .test-serve.log

# The README tour's output blocks, from a real run of each `$ edgecnn ...` command (docs/tour.py).
readme: $(STAMP)
	$(PY) docs/tour.py

# A wheel and an sdist (dist/); the wheel installs into a fresh venv and runs outside the clone,
# on a bundle exported here (FP32 ONNX only: seconds).
WHEEL_VENV ?= .venv-wheel
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

check-wheel: dist
	rm -rf $(WHEEL_VENV) build/wheel-check
	python3 -m venv $(WHEEL_VENV)
	$(call pip,$(WHEEL_VENV)/bin/python,dist/edgecnn-*.whl)
	$(EDGECNN) export --pretrained --format onnx --out build/wheel-check --calibration-size 8
	cd /tmp && $(abspath $(WHEEL_VENV))/bin/edgecnn --help > /dev/null
	cd /tmp && $(abspath $(WHEEL_VENV))/bin/edgecnn predict $(CURDIR)/build/wheel-check \
		$(CURDIR)/samples/photos/fishes/fish1.webp --json | tee $(CURDIR)/build/wheel-check.jsonl
	grep -q '"predictions": \[{"index": 392, "label": "rock beauty"' build/wheel-check.jsonl  # a fish
	$(WHEEL_VENV)/bin/python -c "import sys, edgecnn.runtime; assert 'torch' not in sys.modules"
	$(WHEEL_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall dist/edgecnn-*.tar.gz

# The runtime's wheels exist for 64-bit ARM boards (Raspberry Pi 4/5, Jetson): resolved, not downloaded.
check-aarch64: $(STAMP)
	$(PY) .ci/check_aarch64.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs bundles build dist *.egg-info .venv-serve .venv-wheel
