#!/usr/bin/env bash
# Runs `swift test --skip-build ARGS...` under a time limit (SWIFT_TEST_LIMIT seconds, default
# 900). A run that hangs fails at the limit instead of holding CI until its own timeout, and
# says what was still running: the tests that started and never ended, and every thread's stack
# of the test process (with gdb, when installed). A CI run once hung for 90 min with no test
# finished and nothing to tell why.
set -uo pipefail

# At most 12 tests at once (Swift Testing's own limit; TEST_WIDTH to change it, 0 for none).
# Unbounded, all 464 start together: 386 redis-server processes at the peak on 2 cores, and three
# CI runs in a row had a different test's 30-s wait run out (each passed alone). Measured on this
# 2-core VM, 2026-12-06, the suite without the cancellation suites: unbounded 95 s (peak 386
# servers), 12 at once 116 s, 8 at once 152 s (peak 47), 4 at once 255 s.
# Swift Testing takes any value that is not a positive number as no limit: refuse those.
width="${TEST_WIDTH:-12}"
if ! [[ "$width" =~ ^[0-9]+$ ]]; then
  echo "TEST_WIDTH must be a whole number of tests at once (0 for no limit), not '$width'" >&2
  exit 2
fi
if [ "$width" = "0" ]; then
  unset SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH
else
  export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="$width"
fi
limit="${SWIFT_TEST_LIMIT:-900}"
swift="${SWIFT:-swift}"
log="$(mktemp "${TMPDIR:-/tmp}/swift-test.XXXXXX.log")"
trap 'rm -f "$log"' EXIT

# Line-buffered: piped, the test process would hold its lines in a block buffer, and a hung run
# would show nothing of what it was doing.
stdbuf -oL -eL "$swift" test --skip-build "$@" < /dev/null > >(tee "$log") 2>&1 &
runner=$!
deadline=$(( $(date +%s) + limit ))
while kill -0 "$runner" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "swift test did not finish within ${limit} s; still running:"
    # Swift Testing prints '◇ Test NAME started.' and '✔/✘ Test NAME passed/failed ...'.
    grep -o 'Test .* started\.' "$log" | sed 's/ started\.$//' | sort -u > "$log.started"
    grep -oE 'Test .* (passed|failed|skipped)' "$log" | sed -E 's/ (passed|failed|skipped)$//' | sort -u > "$log.ended"
    comm -23 "$log.started" "$log.ended" | sed 's/^/  /'
    rm -f "$log.started" "$log.ended"
    for pid in $(pgrep -f 'PackageTests.xctest' || true); do
      if command -v gdb > /dev/null; then
        echo "== threads of test process $pid"
        timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 25' 2>/dev/null | grep -E '^(Thread|#)' | head -400
      fi
    done
    pkill -KILL -f 'PackageTests.xctest' 2>/dev/null
    kill -KILL "$runner" 2>/dev/null
    wait "$runner" 2>/dev/null
    exit 124
  fi
  sleep 2
done
wait "$runner"
