# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
EDGECNN := $(VENV)/bin/edgecnn
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(EDGECNN) finetune samples/photos --out runs/demo --force
	$(EDGECNN) export runs/demo/best.pt --out bundles/demo --int8 --force
	$(EDGECNN) export --pretrained --out bundles/imagenet --int8 --force
	$(EDGECNN) camera bundles/imagenet --source samples/videos/cup.mp4 --headless --save runs/demo/cup.mp4

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs bundles build *.egg-info
