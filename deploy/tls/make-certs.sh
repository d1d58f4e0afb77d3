#!/usr/bin/env bash
# Makes a private CA, a Redis server certificate and a client certificate for mutual TLS, with
# openssl only. For local use (docker-compose.tls.yml, tests); managed Redis brings its own.
#
#   deploy/tls/make-certs.sh [--force] [OUT_DIR] [EXTRA_NAME...]
#
# OUT_DIR defaults to deploy/tls/out (ignored by git). The server certificate is valid for the
# names `redis` (the compose service), `localhost`, 127.0.0.1 and ::1, plus every EXTRA_NAME
# (a DNS name, or an IP address). Existing files are kept unless --force is given.
#
# Files: ca.crt ca.key redis.crt redis.key client.crt client.key
#
# The private keys are made readable by every user (0644) on purpose: the containers run as
# other uids (redis: 999, ordershop: 10001) and bind-mount these files read-only. That is fine
# for throwaway local keys and wrong for anything else: in Kubernetes, mount keys from a Secret.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/out}"
[ $# -gt 0 ] && shift
days="${CERT_DAYS:-825}"

command -v openssl >/dev/null || { echo "make-certs: openssl is required" >&2; exit 1; }
mkdir -p "$out"
cd "$out"

if [ -s ca.crt ] && [ -s redis.crt ] && [ -s client.crt ] && [ "$force" -eq 0 ]; then
    echo "make-certs: certificates exist in $out (use --force to make new ones)"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Subject alternative names for the server certificate.
san="DNS:redis,DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# 1. The CA.
newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/O=OrderShop/CN=OrderShop local CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out ca.crt

sign() { # sign NAME SUBJECT EXTENSIONS
    local name="$1" subject="$2" extensions="$3"
    newkey "$name.key"
    openssl req -new -key "$name.key" -subj "$subject" -out "$tmp/$name.csr"
    printf '%s\n' "$extensions" > "$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial "$tmp/ca.srl" \
        -sha256 -days "$days" -extfile "$tmp/$name.ext" -out "$name.crt" 2>/dev/null
}

# 2. The server (redis) certificate. Client use too: a Redis node presents it as its client
#    certificate to the nodes it connects to (the cluster bus with `tls-cluster yes`, a replica's
#    link with `tls-replication yes`), which with `tls-auth-clients yes` refuse a certificate not
#    meant for clients. With serverAuth alone `redis-cli --cluster create` waited for ever at
#    "Waiting for the cluster to join" (trial J; the nodes logged "unexpected eof").
sign redis "/O=OrderShop/CN=redis" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
authorityKeyIdentifier=keyid"

# 3. The client certificate every OrderShop process presents (mutual TLS). The Redis ACL user
#    (REDIS_URL's user name) remains what decides what a client may do.
sign client "/O=OrderShop/CN=ordershop-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"

chmod 0644 ./*.crt redis.key client.key
chmod 0600 ca.key
openssl verify -CAfile ca.crt redis.crt client.crt >/dev/null
openssl verify -CAfile ca.crt -purpose sslclient redis.crt >/dev/null
echo "make-certs: wrote CA, server ($san) and client certificates to $out"
