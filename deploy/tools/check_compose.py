#!/usr/bin/env python3
"""Checks what `docker compose config` cannot: that the compose files fit OrderShop.

  check_compose.py BASE.json TLS.json users.acl [CLUSTER.json]

BASE.json, TLS.json and CLUSTER.json are `docker compose config --format json` of docker-compose.yml
alone, of docker-compose.yml + docker-compose.tls.yml and of docker-compose.yml +
docker-compose.cluster.yml. Checks:
  - every box of the article's figure is there, CRM and billing workers with several replicas;
  - each OrderShop container's health check probes the port its command listens on, services
    bind 0.0.0.0, the stop grace period exceeds the 10 s drain deadline, Redis has AOF on;
  - with TLS: Redis is TLS-only with client certificates and the ACL file; each role connects
    with rediss:// as its own ACL user, with the password whose sha256 users.acl holds;
  - with the cluster: six Redis nodes with cluster mode and AOF on, each announcing its own service
    name as its host name (the name the others resolve) and with a volume of its own; a one-shot
    service creating the cluster from all six with one replica per primary, after every node is
    healthy; every OrderShop container waiting for it to complete, with a REDIS_URL that names
    cluster nodes only, cluster=yes, database 0 and only parameters the application knows, and
    ORDERSHOP_CONFIRM_REPLICAS=1.
Prints PASS/FAIL lines; exits 1 on any failure.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from urllib.parse import parse_qsl, unquote, urlsplit

FIGURE = ["redis", "gateway", "customer", "product", "inventory", "order", "billing", "msg", "crm", "billing-worker"]
USERS = {"gateway": "ordershop-gateway", "msg": "ordershop-msg", "crm": "ordershop-worker-crm", "billing-worker": "ordershop-worker-billing",
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


# The query parameters the application's Redis URL parser accepts (RedisURL.swift).
URL_PARAMETERS = {"db", "client_name", "connect_timeout", "socket_timeout", "ssl_ca_certs", "ssl_certfile",
                  "ssl_keyfile", "ssl_server_name", "ssl_cert_reqs", "addr", "cluster", "cluster_retry_window"}


def check_cluster(config: dict) -> None:
    services = config["services"]

    def command_of(svc: dict) -> list[str]:
        return [str(a) for a in (svc.get("command") or [])]

    def flag(command: list[str], name: str) -> str | None:
        return command[command.index(name) + 1] if name in command else None

    nodes = {name: command_of(svc) for name, svc in services.items()
             if "redis-server" in command_of(svc)[:1] and flag(command_of(svc), "--cluster-enabled") == "yes"}
    check(len(nodes) == 6, f"six Redis Cluster nodes ({', '.join(sorted(nodes)) or 'none'})")
    check("redis" in nodes, "the base file's redis (which every container waits for) is a cluster node")
    for name, command in sorted(nodes.items()):
        port = flag(command, "--port") or "6379"
        check(flag(command, "--cluster-announce-hostname") == name
              and flag(command, "--cluster-preferred-endpoint-type") == "hostname",
              f"{name} announces its service name, and clients are sent to it by that name")
        check(flag(command, "--appendonly") == "yes", f"{name} has AOF on")
        check(port == "6379", f"{name} listens on 6379")
    data = {name: [v.get("source") for v in services[name].get("volumes", []) if v.get("target") == "/data"]
            for name in nodes}
    sources = [s for v in data.values() for s in v]
    check(all(len(v) == 1 and v[0] for v in data.values()) and len(set(sources)) == len(sources),
          "every node keeps /data (nodes.conf, AOF) in a volume of its own")

    creators = {name: " ".join(command_of(svc)) for name, svc in services.items()
                if "--cluster create" in " ".join(command_of(svc))}
    check(len(creators) == 1, f"one service creates the cluster ({', '.join(creators) or 'none'})")
    if len(creators) != 1:
        return
    init, script = next(iter(creators.items()))
    created = re.search(r"--cluster create((?:\s+(?:\\\s*)?[\w.-]+:\d+)+)", script)
    members = {m.split(":")[0] for m in (created.group(1).split() if created else []) if ":" in m}
    check(members == set(nodes), f"{init} creates the cluster from every node ({', '.join(sorted(members))})")
    check(re.search(r"--cluster-replicas\s+1\b", script) is not None and "--cluster-yes" in script,
          f"{init}: one replica per primary (3 primaries, 3 replicas), without asking")
    check(str(services[init].get("restart", "no")) == "no", f"{init} runs once (restart: no)")
    after = services[init].get("depends_on") or {}
    check(all((after.get(n) or {}).get("condition") == "service_healthy" for n in nodes),
          f"{init} starts once every node is healthy")

    for name, svc in ordershop_services(config).items():
        environment = svc.get("environment") or {}
        url = urlsplit(environment.get("REDIS_URL", ""))
        query = parse_qsl(url.query, keep_blank_values=True)
        hosts = {url.hostname} | {v.rpartition(":")[0] for k, v in query if k == "addr"}
        check(url.scheme == "redis" and hosts <= set(nodes) and ("cluster", "yes") in query
              and url.path in ("", "/", "/0") and all(k in URL_PARAMETERS for k, _ in query),
              f"{name}'s REDIS_URL names cluster nodes only, with cluster=yes and database 0 "
              f"({environment.get('REDIS_URL')})")
        check(environment.get("ORDERSHOP_CONFIRM_REPLICAS") == "1",
              f"{name} confirms writes on its shard's replica (ORDERSHOP_CONFIRM_REPLICAS=1)")
        condition = ((svc.get("depends_on") or {}).get(init) or {}).get("condition")
        check(condition == "service_completed_successfully", f"{name} starts after {init} completed successfully")


def main(base_path: str, tls_path: str, acl_path: str, cluster_path: str | None = None) -> int:
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

    if cluster_path:
        check_cluster(json.load(open(cluster_path)))

    print(f"  compose consistency: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
