# OrderShop on Redis Streams, in Swift.
#
#   make run      start everything (ordershop up) and run the demo scenario against it
#   make test     the whole test suite, as CI runs it
#   make deps     install missing system packages (as root, with apt-get)

SWIFT       ?= swift
CONFIG      ?= debug
BUILD_FLAGS ?=
DURATION    ?= 90
SEED        ?= 20261127
APT_PACKAGES := libhiredis-dev libssl-dev redis-server redis-tools openssl pkg-config

.PHONY: deps build release test test-swift test-deploy chaos chaos-run bench run ping clean

# Installs what is missing. As root it runs apt-get; otherwise it prints the command to run.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "missing system packages:$$missing"; echo "install them with: sudo apt-get install -y$$missing"; exit 1; fi

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

release: deps
	$(SWIFT) build -c release --product ordershop $(BUILD_FLAGS)

# Everything CI checks: unit and integration tests against real redis-server processes, the
# deployment files, and a 90-second chaos run with a fixed seed and every fault kind on.
test: deps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build $(BUILD_FLAGS)
	ORDERSHOP_BIN="$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop" deploy/check.sh
	$(MAKE) --no-print-directory chaos-run

chaos: deps
	$(SWIFT) build --product ordershop $(BUILD_FLAGS)
	$(SWIFT) build --product ordershop-chaos $(BUILD_FLAGS)
	$(MAKE) --no-print-directory chaos-run

# The chaos run itself, with binaries already built.
chaos-run:
	$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop-chaos run --duration $(DURATION) --seed $(SEED) \
	  --ordershop $$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop --report-dir chaos-report

bench: release
	$$($(SWIFT) build -c release --show-bin-path)/ordershop bench all $(BENCH_FLAGS)

# Starts every service and both workers (and a local redis-server when none is configured),
# runs the article's scenario plus the CRM catch-up check against it, then stops everything.
run: deps
	$(SWIFT) build --product ordershop $(BUILD_FLAGS)
	scripts/run-demo.sh "$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop"

ping: build
	$(SWIFT) run ordershop ping

clean:
	rm -rf .build .build-* chaos-report
