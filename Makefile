# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv first.
SHELL := bash
VENV ?= .venv
SERVE_VENV ?= .venv-serve
PY := $(VENV)/bin/python
EDGECNN := $(VENV)/bin/edgecnn
STAMP := $(VENV)/.installed

.PHONY: demo test test-serve lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,web,dev]'
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
	$(EDGECNN) export --pretrained --out bundles/imagenet --int8 --force

test: $(STAMP)
	$(PY) -m pytest

# Triton serving needs numpy<2 (nvidia-pytriton 0.7), so its tests run in their own venv and must not skip.
$(SERVE_VENV)/.installed: pyproject.toml
	python3 -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install --quiet -e '.[train,serve,dev]'
	touch $@

test-serve: $(SERVE_VENV)/.installed
	set -o pipefail; $(SERVE_VENV)/bin/python -m pytest -rs tests/runtime/test_serve.py \
		tests/runtime/test_triton_repo.py | tee .test-serve.log
	! grep -q "SKIPPED" .test-serve.log

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs bundles build *.egg-info .venv-serve
