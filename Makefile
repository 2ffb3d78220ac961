# Two entry points: `make app` serves the dashboard, `make test` runs the whole test suite.
# Both create (or reuse) the virtual environment in $(VENV) and install into it first.
VENV ?= .venv
PYTHON ?= python3
# A pinned release: pip takes a CPU build where one is on disk or on CPU-only indexes,
# and the default PyPI build (CUDA on Linux x86_64) elsewhere. Override to pick another.
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 5006
MODELS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test install browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/panel serve app/main.py --address $(HOST) --port $(PORT) \
		--allow-websocket-origin=$(HOST):$(PORT) $(if $(MODELS),--args --models $(MODELS))

browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq chromium; \
		else echo "chromium is missing: install Debian's chromium package (browser tests need /usr/bin/chromium)"; exit 1; fi; }

test: $(STAMP) browser
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(VENV)/bin/pytest
