#!/usr/bin/env bash
# make run: start the whole shop with `ordershop up` (a local redis-server when none is
# configured), run the article's scenario and the CRM catch-up check against it, stop it all.
# Exits with the demo's status.
set -uo pipefail
bin="${1:?usage: scripts/run-demo.sh path/to/ordershop}"
gateway="http://127.0.0.1:${GATEWAY_PORT:-5000}"
log="$(mktemp /tmp/ordershop-up.XXXXXX.log)"
# The demo stops and starts CRM through the gateway's admin routes, which need a token: one per run.
ORDERSHOP_ADMIN_TOKEN="${ORDERSHOP_ADMIN_TOKEN:-$(openssl rand -hex 16)}"
export ORDERSHOP_ADMIN_TOKEN

"$bin" up --gateway-port "${GATEWAY_PORT:-5000}" >"$log" 2>&1 &
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
"$bin" demo --gateway "$gateway"
status=$?
stop
trap - EXIT
exit $status
