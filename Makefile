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

demo: $(STAMP)
	$(EDGECNN) finetune samples/photos --out runs/demo --force
	$(EDGECNN) export runs/demo/best.pt --out bundles/demo --int8 --force
	$(EDGECNN) export --pretrained --out bundles/imagenet --int8 --force
	$(EDGECNN) camera bundles/imagenet --source samples/videos/cup.mp4 --headless --save runs/demo/cup.mp4 \
		--jsonl runs/demo/cup.jsonl

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
