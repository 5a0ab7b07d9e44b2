# Two commands set up everything: `make run` starts the app, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# Test processes: on 2 cores, two workers ran the suite in 694 s of pytest and three in
# 693 s (--dist loadfile, one after the other on a clean clone, 2026-12-06): two.
TEST_WORKERS ?= 2
# How tests are spread: each file on one worker, so a module's costly fixtures (a server, a
# Ray cluster, a trained run, exports) are built once; the files go to the next free worker,
# the longest first (tests/conftest.py's LONGEST_FIRST, kept by --no-loadscope-reorder).
DIST ?= loadfile
# Only this machine can reach the app unless told otherwise (make run ADDRESS=0.0.0.0).
ADDRESS ?= localhost
# The shared sample photos, when this checkout has them beside it: the app opens on them.
SAMPLE := $(wildcard ../shared/data/flowers-sample)
STAMP  := $(VENV)/.installed
# The folders the app may read photos from (docs/hosting.md). On this machine
# alone: the sample and your home folder; hosted (any other ADDRESS), only FLOWER_LENS_DATA
# and the app's own downloads and uploads, unless FLOWER_LENS_DATA_ROOTS says more.
ifeq ($(ADDRESS),localhost)
ROOTS ?= $(if $(SAMPLE),$(abspath $(SAMPLE)):)$(HOME)
endif

.PHONY: run test check bench bench-scale lint format browser clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The `flower-lens` command, the library editable in place (its dependencies are above).
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The system Chromium that the browser tests drive (Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "no chromium and no root apt-get: browser tests will be skipped"; fi; }

run: $(STAMP)
	FLOWER_LENS_DATA="$${FLOWER_LENS_DATA:-$(SAMPLE)}" \
	FLOWER_LENS_DATA_ROOTS="$${FLOWER_LENS_DATA_ROOTS:-$(ROOTS)}" \
	$(PY) -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

# The whole suite, as CI runs it: the layers first, then every test (browser ones included).
test: $(STAMP) browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(TEST_WORKERS) --dist $(DIST) --no-loadscope-reorder --durations=25

# The edit-test loop: lint, then the tests that need no browser, server or ResNet50.
check: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist $(DIST) --no-loadscope-reorder -m "not slow and not browser and not resnet"

# Benchmarks, not tests: every figure printed beside its target, then bench/README.md
# written from the two runs' JSON.
bench: $(STAMP) browser
	$(PY) -m bench
	$(PY) -m bench.hosting --out bench/hosting.json
	$(PY) -m bench.cluster
	$(PY) -m bench.tune
	$(PY) -m bench.live
	$(PY) -m bench.readme

# Every stage at 4,000, 20,000 and 100,000 photos (the photos, about 1.6 GB, are generated once
# into bench/work/scale and kept; the run's minutes are in its table), then bench/README.md.
bench-scale: $(STAMP)
	$(PY) -m bench.scale
	$(PY) -m bench.walkthrough --data bench/work/scale/datasets/20000 --home bench/work/scale/home
	$(PY) -m bench.readme

# ruff (style, and public APIs only: pyproject.toml), then the layers and no import circles.
lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
