# counterfeit-detector: `make run` serves the demo model; `make test` runs the suite.
# Everything installs into .venv/ in this folder; re-running a target only redoes what changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
# Stamps record what is installed, so targets re-install only when pyproject.toml changes.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP   := $(VENV)/.installed-dev

HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_DATA := datasets/demo-synth
DEMO_RUN  := runs/demo

.PHONY: help install install-dev browser run test bench bench-evidence bench-real comparator bench-comparator demo-model screenshots clean

help:
	@echo "make run          install the serving dependencies and serve the demo model on http://$(HOST):$(PORT)"
	@echo "make test         install everything (torch included), lint (ruff) and run the tests"
	@echo "make bench        benchmarks: predictor, training throughput, data audit, photo sizes, server under load, memory,"
	@echo "                 pipeline speed vs the previous one, bulk screening (100,000 rows, kill + resume), Ray"
	@echo "make bench-evidence  the evidence store at a year's scale (1,000,000 records, SQLite and PostgreSQL): ~40 min"
	@echo "make bench-real   the default recipe on real photos (../shared/real, when present): about 40 min"
	@echo "make comparator   train the comparator's head on real photo pairs (../shared/real, when present): ~15 min"
	@echo "make bench-comparator  the comparator on real photos of products it never saw, beside the baselines"
	@echo "make demo-model   retrain the committed demo model (inference/demo/) from synthetic data"
	@echo "make screenshots  the README's phone screenshots (docs/inspector-phone-*.png), taken in headless Chromium"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[train,dev]'
	@touch $@ $(SERVE_STAMP)

install: $(SERVE_STAMP)

install-dev: $(DEV_STAMP)

# Headless Chromium for the web page's browser tests (Debian's package; needs root, as CI runs).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium chromium-driver; }

# HOST and PORT reach the server only when given on make's command line (make run PORT=8001): otherwise
# COUNTERFEIT_HOST, COUNTERFEIT_PORT and .env decide, as for `counterfeit serve` itself.
SERVE_ARGS := $(if $(filter command line,$(origin HOST)),--host $(HOST)) \
              $(if $(filter command line,$(origin PORT)),--port $(PORT))

run: install
	@echo "The command line: $(BIN)/counterfeit (or \`source $(VENV)/bin/activate\` first). Ctrl-C stops the server."
	$(BIN)/counterfeit serve $(strip $(SERVE_ARGS))

test: install-dev browser
	$(BIN)/ruff check .
	$(PY) -m pytest -q

bench: install-dev
	$(PY) bench/predictor.py
	$(PY) bench/train_throughput.py
	$(PY) bench/audit.py
	$(PY) bench/photos.py
	$(PY) bench/server.py
	$(PY) bench/similar.py
	$(PY) bench/memory.py
	$(PY) bench/speed.py
	$(PY) bench/bulk.py
	$(PY) bench/ray_screen.py
	$(PY) bench/evidence_scale.py --quick

# The evidence store at the scale of a year at a port (docs/evidence-scale.md); scratch files go to the temp folder.
bench-evidence: install-dev
	$(PY) bench/evidence_scale.py --records 1000000 --json runs/evidence-scale.json

# Real phone photos beside the project (development machines only): build, fit, answer, per product and kind.
bench-real: install-dev
	$(PY) bench/real_photos.py --robustness

# The comparator's head (training/recipes/comparator/head.pt), trained once across the real products beside the
# project (development machines only); the photos' comparisons are cached in runs/comparator/pairs.npz.
REAL_SOURCE := ../shared/real/grocery-packages
COMPARATOR_DATA := runs/comparator/real
$(COMPARATOR_DATA)/manifest.csv:
	$(BIN)/counterfeit data real $(REAL_SOURCE) $(COMPARATOR_DATA) --seed 0

comparator: install-dev $(COMPARATOR_DATA)/manifest.csv
	$(PY) -m training.recipes.comparator.train_head $(COMPARATOR_DATA) --cache runs/comparator/pairs.npz

# Products left out by brand: each fold's head never saw the products it is measured on.
bench-comparator: install-dev
	$(PY) bench/comparator_real.py

# The demo model: fixed seeds end to end, so the same commands rebuild it.
demo-model: install-dev
	rm -rf $(DEMO_DATA) $(DEMO_RUN)
	$(BIN)/counterfeit synth $(DEMO_DATA) --seed 0
	$(BIN)/counterfeit train $(DEMO_DATA) --out $(DEMO_RUN) --seed 0
	# The item rule of POST /v1/items, fitted on val items (metadata only; the graph is the one trained).
	$(BIN)/counterfeit calibrate $(DEMO_RUN)/model.onnx $(DEMO_DATA) --items --out $(DEMO_RUN)/model-items.onnx
	mv $(DEMO_RUN)/model-items.onnx $(DEMO_RUN)/model.onnx
	$(BIN)/counterfeit evaluate $(DEMO_DATA)/test --model $(DEMO_RUN)/model.onnx --report $(DEMO_RUN)/report
	cp $(DEMO_RUN)/model.onnx inference/demo/model.onnx
	$(PY) -m training.model_card $(DEMO_RUN) --demo --out inference/demo/MODEL_CARD.md

# The README's screenshots, taken from the page as it is (the demo model's samples at 390x844), never by hand.
screenshots: install-dev browser
	$(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
