#!/usr/bin/env bash
# Runs every planted bug's short chaos run (`make chaos-planted`); each must FAIL with the
# violation that names its bug (`ordershop-chaos run --expect-caught`: a PASS or a VOID is a
# miss). All run even when one is missed; the summary names the misses and the exit is 1.
#
#   scripts/chaos-planted.sh BIN_DIR DURATION SEED MARGIN LANES SPEC...
#
# SPEC is bug:faults[:flag...] (flags separated by colons). The runs are dealt round-robin to
# LANES lanes that run side by side, each lane's runs one after another. A run uses about one
# core (a 30-s run: 26 s user + 9 s system in 36 s of wall time, 2026-12-07), so two lanes keep
# a 2-core machine busy without starving either. Each lane takes its ports from a range of its
# own (LOCAL_REDIS_PORT_RANGE): a port one lane has chosen and not yet bound is never another's.
# A lane's output goes to chaos-report/planted-lane-<n>.log and is printed whole when every lane
# is done, so that the runs' reports do not interleave.
set -uo pipefail

if [ $# -lt 6 ]; then
  echo "usage: $0 BIN_DIR DURATION SEED MARGIN LANES SPEC..." >&2
  exit 2
fi
bin=$1 duration=$2 seed=$3 margin=$4 lanes=$5
shift 5
if ! [[ "$lanes" =~ ^[1-9][0-9]?$ ]]; then
  echo "PLANTED_LANES must be a whole number from 1 to 99, not '$lanes'" >&2
  exit 2
fi
# Ranges below the kernel's ephemeral ports (32768 on Linux by default), 2,000 ports each. One
# lane needs none: its runs take free ports as they always did.
first_port=12000
ports_per_lane=2000
ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
if [ "$lanes" -gt 1 ] && [ $((first_port + lanes * ports_per_lane)) -gt "$ephemeral_low" ]; then
  echo "$lanes lanes of $ports_per_lane ports from $first_port reach the ephemeral range (from $ephemeral_low): use fewer lanes (PLANTED_LANES=1 needs no range)" >&2
  exit 2
fi

mkdir -p chaos-report
specs=("$@")
missed_file=$(mktemp)
done_file=$(mktemp)
trap 'rm -f "$missed_file" "$done_file"' EXIT

# Lane $1 runs specs $1, $1 + lanes, ...
run_lane() {
  local lane=$1 i spec bug rest faults extra
  local from=$((first_port + lane * ports_per_lane)) ports="any free"
  if [ "$lanes" -gt 1 ]; then
    export LOCAL_REDIS_PORT_RANGE="$from-$((from + ports_per_lane - 1))"
    ports=$LOCAL_REDIS_PORT_RANGE
  fi
  for ((i = lane; i < ${#specs[@]}; i += lanes)); do
    spec=${specs[$i]}
    bug=${spec%%:*}; rest=${spec#*:}; faults=${rest%%:*}; extra=""
    if [ "$rest" != "$faults" ]; then extra=$(echo "${rest#*:}" | tr ':' ' '); fi
    echo "== planted bug $bug (faults $faults, $duration s) $extra [lane $lane, ports $ports, $(date -u +%H:%M:%S)]"
    # $extra is a list of flags: split on purpose.
    # shellcheck disable=SC2086
    timeout --kill-after=60 $((duration + margin)) "$bin/ordershop-chaos" run --duration "$duration" --seed "$seed" \
      --faults "$faults" --plant-bug "$bug" --expect-caught $extra \
      --drain-timeout 120 --ordershop "$bin/ordershop" --report-dir "chaos-report/planted-$((i + 1))-$bug" \
      || echo "$bug($faults)" >> "$missed_file"
    echo "$spec" >> "$done_file"
  done
}

print_lanes() {
  for ((lane = 0; lane < lanes; lane++)); do cat "chaos-report/planted-lane-$lane.log"; done
}

pids=()
for ((lane = 0; lane < lanes; lane++)); do
  run_lane "$lane" > "chaos-report/planted-lane-$lane.log" 2>&1 &
  pids+=($!)
done
# SIGINT/SIGTERM (CI's timeout, Ctrl-C) end every lane's runs, which stop what they started.
# Their children first: a lane killed first leaves its run to init, where -P no longer finds it.
# What the lanes printed is printed then too: a CI timeout shows which run hung.
stop_lanes() {
  pkill -TERM -P "$(echo "${pids[@]}" | tr " " ,)" 2>/dev/null
  kill "${pids[@]}" 2>/dev/null
  wait
  print_lanes
  echo "planted runs stopped by a signal"
  exit "$1"
}
trap 'stop_lanes 130' INT
trap 'stop_lanes 143' TERM
lanes_failed=0
for pid in "${pids[@]}"; do wait "$pid" || lanes_failed=$((lanes_failed + 1)); done
trap - INT TERM
print_lanes

missed=$(tr '\n' ' ' < "$missed_file")
finished=$(wc -l < "$done_file")
# A lane that died (killed, out of memory) left its remaining runs unrun: each is a miss.
if [ "$lanes_failed" -gt 0 ] || [ "$finished" -ne "${#specs[@]}" ]; then
  echo "planted runs NOT all run: $finished of ${#specs[@]} finished, $lanes_failed lanes ended abnormally"
  exit 1
fi
if [ -n "$missed" ]; then
  echo "planted bugs NOT caught: $missed"
  exit 1
fi
echo "every planted bug was caught (${#specs[@]} runs, $lanes at a time)"
