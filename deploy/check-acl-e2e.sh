#!/usr/bin/env bash
# deploy/check-acl-e2e.sh PATH/TO/ordershop
#
# Runs the whole OrderShop scenario under the least-privilege users of deploy/redis/users.acl, the
# way the deployments run it: every service as ordershop-service, two CRM workers as
# ordershop-worker-crm, two billing workers as ordershop-worker-billing, `ordershop demo` as
# ordershop-admin. Then:
#   - the demo passes, twice: once with everything up, once with CRM stopped (SIGTERM: it must
#     drain and exit 0) and started again afterwards, after which CRM's group catches up fully;
#   - Redis's ACL LOG holds no denial: nothing any role needs is refused;
#   - every key the run created belongs to a key family of users.acl.in (else: adapt it there);
#   - a worker cannot write the keys it does not own, tried on the run's real keys.
# Everything listens on free loopback ports; every process is stopped by its pid.
# Needs redis-server, redis-cli, curl and python3. Exit status 1 on any failure.
set -uo pipefail

bin="${1:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "usage: $0 PATH/TO/ordershop   (an executable ordershop binary)" >&2
    exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d /tmp/ordershop-acl-e2e.XXXXXX)"
timeout_demo="${E2E_DEMO_TIMEOUT:-600}"
declare -A pid_of=()
passed=0; failed=0
pass() { passed=$((passed + 1)); echo "  PASS e2e: $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL e2e: $*"; }

stop_pid() { # stop_pid PID [SECONDS]: SIGTERM, wait, SIGKILL; prints the exit status
    local pid="$1" wait_s="${2:-15}" status
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
    wait "$pid" 2>/dev/null; status=$?
    echo "$status"
}
cleanup() {
    local name
    for name in "${!pid_of[@]}"; do
        [ "$name" = redis ] && continue
        kill -0 "${pid_of[$name]}" 2>/dev/null && stop_pid "${pid_of[$name]}" 15 >/dev/null
    done
    [ -n "${pid_of[redis]:-}" ] && stop_pid "${pid_of[redis]}" 10 >/dev/null
    if [ "$failed" -gt 0 ] || [ -n "${E2E_KEEP:-}" ]; then echo "  logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

for tool in redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { fail "$tool is required"; echo "acl e2e: $passed passed, $failed failed"; exit 1; }
done
for sub in "serve" "work" "demo"; do
    if ! "$bin" "$sub" --help >/dev/null 2>&1; then
        fail "$bin has no '$sub' command yet"
        echo "acl e2e: $passed passed, $failed failed"
        exit 1
    fi
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
log_tail() { echo "    --- last lines of $1.log"; tail -n 15 "$work/$1.log" 2>/dev/null | sed 's/^/    /'; }

# Redis with users.acl plus an observer that only this test has (for ACL LOG and the key scan).
observer_pw="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
cp "$here/redis/users.acl" "$work/users.acl"
echo "user e2e-observer on >$observer_pw ~* &* +@all" >>"$work/users.acl"
redis_port=$(free_port)
mkdir -p "$work/data"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work/data" --appendonly yes --save "" \
    --aclfile "$work/users.acl" --daemonize no --logfile "$work/redis.log" &
pid_of[redis]=$!
observe() { REDISCLI_AUTH="$observer_pw" redis-cli -h 127.0.0.1 -p "$redis_port" --user e2e-observer "$@" 2>&1; }
for _ in $(seq 100); do [ "$(observe ping)" = PONG ] && break; sleep 0.1; done
[ "$(observe ping)" = PONG ] || { fail "redis-server did not start"; log_tail redis; exit 1; }

url_for() { echo "redis://$1:$2@127.0.0.1:$redis_port/0"; }
service_url=$(url_for ordershop-service local-dev-service)
crm_url=$(url_for ordershop-worker-crm local-dev-worker-crm)
billing_url=$(url_for ordershop-worker-billing local-dev-worker-billing)
admin_url=$(url_for ordershop-admin local-dev-admin)

declare -A port=()
for s in gateway customer product inventory order billing msg; do port[$s]=$(free_port); done
export CUSTOMER_SERVICE_URL="http://127.0.0.1:${port[customer]}"
export PRODUCT_SERVICE_URL="http://127.0.0.1:${port[product]}"
export INVENTORY_SERVICE_URL="http://127.0.0.1:${port[inventory]}"
export ORDER_SERVICE_URL="http://127.0.0.1:${port[order]}"
export BILLING_SERVICE_URL="http://127.0.0.1:${port[billing]}"
export MSG_SERVICE_URL="http://127.0.0.1:${port[msg]}"
export GATEWAY_URL="http://127.0.0.1:${port[gateway]}"
unset REDIS_TLS_CA_FILE REDIS_TLS_CERT_FILE REDIS_TLS_KEY_FILE REDIS_TLS_SERVER_NAME

start() { # start NAME REDIS_URL ARGS...
    local name="$1" url="$2"; shift 2
    REDIS_URL="$url" "$bin" "$@" >"$work/$name.log" 2>&1 &
    pid_of[$name]=$!
}
declare -A health=()
for s in msg customer product inventory order billing gateway; do
    start "$s" "$service_url" serve "$s" --host 127.0.0.1 --port "${port[$s]}"
    health[$s]="http://127.0.0.1:${port[$s]}/healthz"
done
start_worker() { # start_worker NAME GROUP URL
    local p; p=$(free_port)
    start "$1" "$3" work "$2" --metrics-port "$p"
    health[$1]="http://127.0.0.1:$p/healthz"
}
start_worker crm-1 crm "$crm_url"; start_worker crm-2 crm "$crm_url"
start_worker billing-1 billing "$billing_url"; start_worker billing-2 billing "$billing_url"

wait_healthy() { # wait_healthy NAME...
    local name ok
    for name in "$@"; do
        ok=0
        for _ in $(seq 300); do
            if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then break; fi
            if curl -fsS -m 2 "${health[$name]}" >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.2
        done
        if [ $ok = 1 ]; then pass "$name is healthy (${health[$name]})"
        else fail "$name did not become healthy"; log_tail "$name"; fi
    done
}
wait_healthy msg customer product inventory order billing gateway crm-1 crm-2 billing-1 billing-2

run_demo() { # run_demo LABEL
    local rc
    REDIS_URL="$admin_url" timeout "$timeout_demo" "$bin" demo --gateway "$GATEWAY_URL" >"$work/demo-$1.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then pass "ordershop demo passes ($1)"
    else fail "ordershop demo exited $rc ($1)"; log_tail "demo-$1"; fi
}
if [ "$failed" -eq 0 ]; then
    run_demo "everything up"

    # CRM down: both workers drain on SIGTERM and exit 0 within the grace period.
    for w in crm-1 crm-2; do
        status=$(stop_pid "${pid_of[$w]}" 30)
        unset "pid_of[$w]"
        if [ "$status" = 0 ]; then pass "$w drains and exits 0 on SIGTERM"; else fail "$w exited $status on SIGTERM"; log_tail "$w"; fi
    done
    run_demo "CRM down"
    start_worker crm-1 crm "$crm_url"; start_worker crm-2 crm "$crm_url"
    wait_healthy crm-1 crm-2

    # CRM catches up: no lag and nothing pending on any of its streams.
    backlog() { # CRM's lag + pending over its streams (a lag Redis cannot compute counts as 1)
        local s
        for s in 'events:{customer}_created' 'events:{customer}_deleted' 'events:{order}_created'; do
            observe --json xinfo groups "$s"
            echo
        done | python3 -c '
import json, sys
total = 0
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("["):
        continue
    for group in json.loads(line):
        if group.get("name") == "crm":
            lag = group.get("lag")
            total += (1 if lag is None else lag) + group.get("pending", 0)
print(total)'
    }
    caught_up=0
    for _ in $(seq 150); do [ "$(backlog)" = 0 ] && { caught_up=1; break; }; sleep 0.4; done
    if [ $caught_up = 1 ]; then pass "CRM caught up after its downtime (lag 0, pending 0 on its streams)"
    else fail "CRM still has a backlog of $(backlog) after its downtime"; fi
fi

# Nothing that any role needs was refused.
acl_log=$(observe --json acl log 128 2>/dev/null)
denials=$(python3 -c '
import json, sys
try:
    entries = json.loads(sys.stdin.read() or "[]")
except ValueError:
    entries = []
for e in entries:
    e = dict(zip(e[0::2], e[1::2])) if isinstance(e, list) else e
    if e.get("username") != "e2e-observer":
        print(f"{e.get(\"username\")}: {e.get(\"reason\")} {e.get(\"object\")} (context {e.get(\"context\")}, count {e.get(\"count\")})")
' <<<"$acl_log")
if [ -z "$denials" ]; then pass "ACL LOG is empty: no role was refused anything"
else fail "ACL denials during the run (adapt deploy/redis/users.acl.in):"; sed 's/^/    /' <<<"$denials"; fi
if grep -lE "NOPERM|no permissions" "$work"/*.log >/dev/null 2>&1; then
    fail "NOPERM in the logs of: $(grep -lE 'NOPERM|no permissions' "$work"/*.log | xargs -n1 basename | tr '\n' ' ')"
else pass "no NOPERM in any process log"; fi

# Every key belongs to a family of users.acl.in.
observe --scan >"$work/keys.txt"
python3 - "$work/keys.txt" >"$work/families.txt" <<'EOF'
import fnmatch, sys
families = {"events:*": "event streams", "rm:*": "read models", "mail:*": "msg",
            "idem:*": "worker markers", "dlq:*": "dead letters"}
counts = {f: 0 for f in families}
unknown = []
for key in open(sys.argv[1]).read().split("\n"):
    if not key:
        continue
    family = next((f for f in families if fnmatch.fnmatchcase(key, f.replace("[", "[[]"))), None)
    if family:
        counts[family] += 1
    else:
        unknown.append(key)
print("counts " + ", ".join(f"{families[f]} {n}" for f, n in counts.items()))
for key in unknown[:20]:
    print("unknown " + key)
EOF
if grep -q '^unknown' "$work/families.txt"; then
    fail "keys outside every ACL key family (adapt users.acl.in): $(grep '^unknown' "$work/families.txt" | cut -d' ' -f2- | head -5 | tr '\n' ' ')"
else pass "every key is in an ACL key family ($(sed -n 's/^counts //p' "$work/families.txt"))"; fi

# A worker cannot write what it does not own: the run's real keys.
as_crm() { REDISCLI_AUTH=local-dev-worker-crm redis-cli -h 127.0.0.1 -p "$redis_port" --user ordershop-worker-crm "$@" 2>&1; }
denied() { grep -qE "NOPERM|no permissions|can't access|can't run" <<<"$1"; }
checked=0
while read -r key; do
    case "$key" in
        events:*) out=$(as_crm xadd "$key" '*' event_id forged entity '{}') ;;
        idem:*:billing:*|dlq:*:billing) out=$(as_crm del "$key") ;;
        idem:*|dlq:*) continue ;;
        *) out=$(as_crm del "$key") ;;
    esac
    if denied "$out"; then checked=$((checked + 1)); else fail "ordershop-worker-crm could write $key: $out"; fi
done < <(grep -vE '^(idem:.*:crm:|dlq:.*:crm$)' "$work/keys.txt" | sort -R 2>/dev/null | head -40)
[ $checked -gt 0 ] && pass "ordershop-worker-crm is refused writing $checked of the run's keys it does not own"

echo "acl e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
