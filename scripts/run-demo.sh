#!/usr/bin/env bash
# make run: start the whole shop with `ordershop up` (a local redis-server when none is
# configured), run the article's scenario and the CRM catch-up check against it, stop it all.
# CLUSTER=1: `ordershop up --cluster --partitions 6` (an embedded 3-primary, 3-replica Redis
# Cluster, every entity type in 6 partitions: two per primary).
# Exits with the demo's status.
set -uo pipefail
bin="${1:?usage: scripts/run-demo.sh path/to/ordershop}"
gateway="http://127.0.0.1:${GATEWAY_PORT:-5000}"
log="$(mktemp /tmp/ordershop-up.XXXXXX.log)"
# The demo stops and starts CRM through the gateway's admin routes, which need a token: one per run.
ORDERSHOP_ADMIN_TOKEN="${ORDERSHOP_ADMIN_TOKEN:-$(openssl rand -hex 16)}"
export ORDERSHOP_ADMIN_TOKEN

cluster=()
[ "${CLUSTER:-0}" = 1 ] && cluster=(--cluster --partitions 6)
"$bin" up --gateway-port "${GATEWAY_PORT:-5000}" "${cluster[@]}" >"$log" 2>&1 &
up=$!
stop() {
    if kill -0 "$up" 2>/dev/null; then
        kill -INT "$up"
        for _ in $(seq 300); do kill -0 "$up" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$up" 2>/dev/null
    fi
    wait "$up" 2>/dev/null
}
trap stop EXIT

for _ in $(seq 600); do
    if curl -fsS "$gateway/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$up" 2>/dev/null; then echo "ordershop up exited:"; cat "$log"; exit 1; fi
    sleep 0.1
done
echo "ordershop up is serving $gateway (log: $log)"
redis=()
if [ "${CLUSTER:-0}" = 1 ]; then
    # The demo counts mails in the shop's Redis: the cluster's URL, from up's first line.
    url="$(grep -o 'redis://[^ ]*cluster=yes[^ ]*' "$log" | head -1)"
    [ -n "$url" ] || { echo "no cluster URL in the log of ordershop up:"; cat "$log"; exit 1; }
    redis=(--url "$url")
fi
"$bin" demo --gateway "$gateway" "${redis[@]}"
status=$?
stop
trap - EXIT
exit $status
