#!/usr/bin/env python3
"""Checks what `docker compose config` cannot: that the compose files fit OrderShop.

  check_compose.py BASE.json TLS.json users.acl

BASE.json and TLS.json are `docker compose config --format json` of docker-compose.yml alone and
of docker-compose.yml + docker-compose.tls.yml. Checks:
  - every box of the article's figure is there, CRM and billing workers with several replicas;
  - each OrderShop container's health check probes the port its command listens on, services
    bind 0.0.0.0, the stop grace period exceeds the 10 s drain deadline, Redis has AOF on;
  - with TLS: Redis is TLS-only with client certificates and the ACL file; each role connects
    with rediss:// as its own ACL user, with the password whose sha256 users.acl holds.
Prints PASS/FAIL lines; exits 1 on any failure.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from urllib.parse import unquote, urlsplit

FIGURE = ["redis", "gateway", "customer", "product", "inventory", "order", "billing", "msg", "crm", "billing-worker"]
USERS = {"crm": "ordershop-worker-crm", "billing-worker": "ordershop-worker-billing",
         "demo": "ordershop-admin", "admin": "ordershop-admin"}
SERVICE_USER = "ordershop-service"

failures = 0


def check(condition: bool, what: str) -> None:
    global failures
    print(f"  {'PASS' if condition else 'FAIL'} compose: {what}")
    if not condition:
        failures += 1


def seconds(text: str | None) -> float:
    if not text:
        return 10.0  # compose's default
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(ms|s|m|h)", text):
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def acl_hashes(path: str) -> dict[str, str]:
    hashes = {}
    for line in open(path):
        tokens = line.split()
        if tokens[:1] == ["user"]:
            for token in tokens[2:]:
                if token.startswith("#"):
                    hashes[tokens[1]] = token[1:]
    return hashes


def ordershop_services(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items()
            if svc.get("entrypoint") is None and "ordershop" in (svc.get("image") or "")}


def main(base_path: str, tls_path: str, acl_path: str) -> int:
    base = json.load(open(base_path))
    tls = json.load(open(tls_path))
    services = base["services"]

    missing = [name for name in FIGURE if name not in services]
    check(not missing, f"every box of the figure is a service (missing: {missing or 'none'})")
    for worker in ("crm", "billing-worker"):
        replicas = (services.get(worker, {}).get("deploy") or {}).get("replicas", 1)
        check(replicas >= 2, f"{worker} runs {replicas} replicas (several share the consumer group)")
    redis_command = " ".join(services["redis"].get("command") or [])
    check("--appendonly yes" in redis_command, "redis has AOF on")

    for name, svc in ordershop_services(base).items():
        command = svc.get("command") or []
        if name in ("demo", "admin"):
            continue
        environment = svc.get("environment") or {}
        test = (svc.get("healthcheck") or {}).get("test") or []
        port = None
        if "--port" in command:
            port = command[command.index("--port") + 1]
            check("--host" in command and command[command.index("--host") + 1] == "0.0.0.0",
                  f"{name} listens on 0.0.0.0 inside its container")
        elif "--metrics-port" in command:
            port = command[command.index("--metrics-port") + 1]
        check(port is not None and environment.get("HEALTH_PORT") == port and "ordershop-healthcheck" in test,
              f"{name}'s health check probes /healthz on the port it serves ({port})")
        check(seconds(svc.get("stop_grace_period")) > 10,
              f"{name}'s stop grace period ({svc.get('stop_grace_period', '10s')}) exceeds the 10 s drain deadline")

    published = services["gateway"].get("ports") or []
    check(all(p.get("host_ip") == "127.0.0.1" for p in published) and len(published) == 1,
          "only the gateway is published, on the host's loopback")

    # --- TLS and ACL users ---
    hashes = acl_hashes(acl_path)
    redis = tls["services"]["redis"]
    command = redis.get("command") or []

    def flag(name: str) -> str | None:
        return command[command.index(name) + 1] if name in command else None

    check(flag("--port") == "0" and flag("--tls-port") is not None, "TLS redis has no plain-text port")
    check(flag("--tls-auth-clients") == "yes", "TLS redis requires client certificates (mutual TLS)")
    check(flag("--aclfile") is not None and any(v.get("target") == flag("--aclfile") for v in redis.get("volumes", [])),
          "TLS redis loads the mounted users.acl")
    admin_pw = (redis.get("environment") or {}).get("REDISCLI_AUTH", "")
    check(hashlib.sha256(admin_pw.encode()).hexdigest() == hashes.get("ordershop-admin"),
          "redis health check authenticates as ordershop-admin with its users.acl password")
    for name, svc in ordershop_services(tls).items():
        environment = svc.get("environment") or {}
        url = urlsplit(environment.get("REDIS_URL", ""))
        user = unquote(url.username or "")
        password = unquote(url.password or "")
        expected = USERS.get(name, SERVICE_USER)
        check(url.scheme == "rediss" and user == expected,
              f"{name} connects with rediss:// as {expected} (got {url.scheme}://{user or '-'})")
        check(hashlib.sha256(password.encode()).hexdigest() == hashes.get(user),
              f"{name}'s password matches the hash users.acl holds for {user}")
        tls_files = [environment.get(k) for k in ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE")]
        mounted = any(v.get("target") == "/tls" for v in svc.get("volumes", []))
        check(all(f and f.startswith("/tls/") for f in tls_files) and mounted,
              f"{name} has the CA, client certificate and key mounted")

    print(f"  compose consistency: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
