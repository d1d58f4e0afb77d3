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
# Redis in `make chaos`: single (one server, AOF), replicated (a primary, a replica, failovers) or
# cluster (3 primaries with a replica each: primary kills, failovers, slot migrations).
TOPOLOGY    ?= single
# `make run CLUSTER=1`: the shop on an embedded Redis Cluster (`ordershop up --cluster`).
CLUSTER     ?= 0
# The seed of the replicated run in `make test` (20261127 gave a VOID there: no SIGKILL met an
# entry inside its handler).
SEED_REPLICATED ?= 20261128
# The seed of the cluster run in `make test` (with every entity type in 6 partitions: two per
# primary).
SEED_CLUSTER ?= 20261129
# `make chaos-run`: the shop's partitions (`ordershop-chaos run --partitions`, README "Entities in partitions").
PARTITIONS  ?= 1
# Each planted runtime bug gets a short run with the faults that expose it (bug:faults[:flag...],
# flags separated by colons); it must FAIL with the violation that names the bug (ordershop-chaos run --expect-caught).
# no-lease-refresh: handlers that outlast the 3 s lease, and no fault that may make a settle stale.
# ack-before-handling: handlers that pause up to 1.5 s after their mail, so that a SIGKILL finds
# entries in flight (with the default 250 ms a CI run's three kills met none, 2026-12-07).
# reaper-commits-all and customers-misplaced run in 4 partitions: the reaper ends reservations
# with parts in several stock partitions; misplaced entities exist only in partitions.
# 30 s: every bug was caught in 25-s runs too (2026-12-06: the smallest counts 2 never-applied
# events, 3 stocks, 2 folded malformed entries, 1 zombie), and 35 s held CI past 25 minutes.
PLANTED_DURATION ?= 30
# Planted runs side by side: 16 runs one after another held CI at 27-29 minutes (about 9.6 of
# them the planted runs), over its 25-minute aim; a run uses about one of the two cores.
PLANTED_LANES ?= 2
# The control run keeps its 35 s: it must PASS, and a shorter run is likelier VOID.
CONTROL_DURATION ?= 35
# No chaos run may hold CI longer than its duration plus this many seconds (a run takes its
# duration plus at most its drain timeout, 300 s; SIGTERM makes the harness SIGKILL every process
# it started).
CHAOS_MARGIN ?= 600
PLANTED_BUGS ?= ack-before-handling:kill,malformed:--pause-after-mail=1500 \
  no-idempotency:kill,duplicate \
  no-owner-check:pause,kill \
  no-marker-check:duplicate,kill \
  ack-before-effects:kill,term,reset \
  no-lease-refresh:kill,term:--pause-after-mail=4500 \
  unconfirmed-writes:partition,kill:--topology=replicated \
  unconfirmed-writes:forced-failover,node-partition,kill:--topology=cluster:--fault-interval=3 \
  gateway-drops-idempotency-key:reset,kill \
  reaper-commits-all:order-crash:--fault-interval=2:--partitions=4 \
  reaper-forgets-aborts:order-pause:--fault-interval=10 \
  rebuild-folds-malformed:malformed,rebuild:--fault-interval=2 \
  rebuild-swaps-blindly:rebuild:--fault-interval=2 \
  rebuild-folds-uncreated:rebuild:--fault-interval=2 \
  order-oversells:kill \
  trim-ignores-groups:trim,kill \
  msg-forgets-keys:kill \
  customers-misplaced:kill:--partitions=4
# Suites that assert how soon something ends (a cancelled worker within 1 s, a start-up within
# 2 s) run in a second pass of their own: in the first, ~200 tests with their redis-servers and
# child processes share 2 cores, and a drain that ends in 0.5 s alone took 4 s there.
TIME_BOUND_SUITES := StreamWorkerTests\.(Part)?CancellationTests/
APT_PACKAGES := libhiredis-dev libssl-dev redis-server redis-tools openssl pkg-config chromium

.PHONY: deps build release test test-swift test-deploy chaos chaos-run chaos-planted chaos-control bench run ping clean

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
# deployment files, a 90-second chaos run with a fixed seed and every fault kind on (operations too),
# the same on a replicated Redis with failovers and on a Redis Cluster with failovers and slot
# migrations, and one short run per planted bug, each of which must be caught.
test: deps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	SWIFT=$(SWIFT) scripts/swift-test.sh $(BUILD_FLAGS) --skip '$(TIME_BOUND_SUITES)'
	SWIFT=$(SWIFT) scripts/swift-test.sh $(BUILD_FLAGS) --filter '$(TIME_BOUND_SUITES)'
	ORDERSHOP_BIN="$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop" timeout --kill-after=60 900 deploy/check.sh
	$(MAKE) --no-print-directory chaos-run
	$(MAKE) --no-print-directory chaos-run TOPOLOGY=replicated SEED=$(SEED_REPLICATED)
	$(MAKE) --no-print-directory chaos-run TOPOLOGY=cluster SEED=$(SEED_CLUSTER) PARTITIONS=6
	$(MAKE) --no-print-directory chaos-planted
	$(MAKE) --no-print-directory chaos-control

chaos: deps
	$(SWIFT) build --product ordershop $(BUILD_FLAGS)
	$(SWIFT) build --product ordershop-chaos $(BUILD_FLAGS)
	$(MAKE) --no-print-directory chaos-run

# The chaos run itself, with binaries already built.
chaos-run:
	timeout --kill-after=60 $$(( $(DURATION) + $(CHAOS_MARGIN) )) $$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop-chaos run --duration $(DURATION) --seed $(SEED) \
	  --topology $(TOPOLOGY) --partitions $(PARTITIONS) --ordershop $$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop --report-dir chaos-report/$(TOPOLOGY)

# Every planted bug in a short run; each must FAIL with the violation naming it (a PASS or a VOID
# fails this target). All run even when one is not caught; the summary names those. The runs go
# in PLANTED_LANES lanes side by side (scripts/chaos-planted.sh: each lane its own port range).
chaos-planted:
	scripts/chaos-planted.sh "$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))" $(PLANTED_DURATION) $(SEED) $(CHAOS_MARGIN) $(PLANTED_LANES) $(PLANTED_BUGS)

# The no-lease-refresh run's faults with no bug must PASS: handlers outlast the 3 s lease, and
# no fault cuts a worker off Redis, so one stale settle refused fails it ("lease not kept"). The
# runs with every fault kind cannot judge the real lease refresh (their faults make settles stale
# on their own); a review found it judged nowhere else in CI. `duplicate` makes the marker path run
# (without it the run is VOID: no duplicate suppressed).
chaos-control:
	@bin="$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))"; \
	echo "== control: no bug (faults kill,term,duplicate, $(CONTROL_DURATION) s) --pause-after-mail=4500: must PASS"; \
	timeout --kill-after=60 $$(( $(CONTROL_DURATION) + $(CHAOS_MARGIN) )) $$bin/ordershop-chaos run --duration $(CONTROL_DURATION) --seed $(SEED) \
	  --faults kill,term,duplicate --pause-after-mail=4500 --drain-timeout 120 --ordershop $$bin/ordershop --report-dir chaos-report/control

# The gateway bench drives the shop with wrk: `make bench` installs it with the rest.
bench: APT_PACKAGES += wrk
bench: release
	$$($(SWIFT) build -c release --show-bin-path)/ordershop bench all $(BENCH_FLAGS)

# Starts every service and both workers (and a local redis-server when none is configured),
# runs the article's scenario plus the CRM catch-up check against it, then stops everything.
run: deps
	$(SWIFT) build --product ordershop $(BUILD_FLAGS)
	CLUSTER=$(CLUSTER) scripts/run-demo.sh "$$($(SWIFT) build --show-bin-path $(BUILD_FLAGS))/ordershop"

ping: build
	$(SWIFT) run ordershop ping

clean:
	rm -rf .build .build-* chaos-report
