#!/bin/bash
# Container health check for every ordershop role, without curl.
#
#   HEALTH_PORT set   -> GET http://127.0.0.1:$HEALTH_PORT/healthz must answer 200
#                        (services: their HTTP port; workers: their --metrics-port).
#                        /healthz answers 503 when Redis cannot be reached.
#   HEALTH_PORT unset -> `ordershop ping`: the container's Redis settings (REDIS_URL, TLS files)
#                        connect, authenticate and PING.
#
# Uses bash's /dev/tcp and coreutils' timeout only (both in debian:bookworm-slim).
# Kubernetes ignores Docker HEALTHCHECKs; the manifests probe for themselves (readiness /healthz,
# liveness /livez). This script is a liveness check nowhere: Docker restarts no container for being
# unhealthy, its status gates compose's depends_on and shows in `ps`, so /healthz (Redis usable) is
# the right question here; /livez (the process answers) would hide a Redis outage.
set -u

deadline="${HEALTH_TIMEOUT:-4}"

if [ -z "${HEALTH_PORT:-}" ]; then
    exec timeout "$deadline" ordershop ping >/dev/null
fi

exec timeout "$deadline" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
    IFS= read -r status <&3 || exit 1
    case "$status" in
        "HTTP/1."?" 200"*) exit 0 ;;
        *) echo "healthz: ${status%$'\''\r'\''}" >&2; exit 1 ;;
    esac
' healthcheck "$HEALTH_PORT"
