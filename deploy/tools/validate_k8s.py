#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests for deploy/check.sh.

  validate_k8s.py [--k8s-versions 1.29.0,1.37.0] [--acl users.acl] [--external-secrets README.md]
                  [--bundled-secrets local] LABEL=FILE[,FILE...]...
  validate_k8s.py --self-test LABEL=FILE      (mutates FILE's documents and expects each fault caught)

For every document of every FILE (a `kubectl kustomize` rendering, or a plain manifest):
  1. Built-in kinds: the Kubernetes OpenAPI schemas of each version given, strict (unknown fields
     are errors), with the PyPI package kubernetes-validate.
  2. KEDA kinds (ScaledObject, TriggerAuthentication): a JSON schema derived from the pydantic
     models that the PyPI package cloudcoil-models-keda generates from KEDA's CRDs, made strict
     (unknown fields are errors). Skipped, with the reason printed, when that package is missing.
  3. Cross-references the schemas cannot see: Secret/ConfigMap keys that env, envFrom and volumes
     use; $(VAR) references; probe and Service target ports; Service and PDB selectors; ScaledObject
     and HPA targets; redis-streams and redis-cluster-streams trigger metadata and the
     TriggerAuthentication parameters each scaler reads (the names KEDA 2.16 documents); the
     formula's trigger names; ACL users named by REDIS_USERNAME; each REDIS_URL as the pods will
     see it (ConfigMap values substituted): only the query parameters the application knows,
     database 0 on a cluster; cluster mode the same in every workload and matched by the KEDA
     scaler (redis-cluster-streams on a cluster, redis-streams on one server);
     ORDERSHOP_CONFIRM_REPLICAS and ORDERSHOP_CONFIRM_TIMEOUT_MS whole numbers; OrderShop's
     probes (liveness on /livez, readiness on /healthz), the HTTP services' preStop sleep and a
     grace period that covers it and the 30 s graceful shutdown; no `replicas` on a Deployment
     that a ScaledObject or HPA scales.
  4. Secrets: no rendered Secret may hold a REPLACE-ME placeholder, and only the renderings named
     by --bundled-secrets (the local overlay) may render the Secrets the operator creates (a
     rendered one would overwrite the real one on every `kubectl apply`). Those Secrets, by name
     and key, come from the table in deploy/README.md (--external-secrets): a reference to one
     that the rendering does not contain is checked against that list instead of failing.
Prints one PASS/FAIL/SKIP line per check and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import inspect
import re
import sys
from pathlib import Path

import yaml

KEDA_KINDS = {"ScaledObject", "TriggerAuthentication", "ScaledJob", "ClusterTriggerAuthentication"}

# KEDA 2.16's redis-streams trigger (keda.sh/docs/2.16/scalers/redis-streams) and its
# TriggerAuthentication parameters. A misspelt key is silently ignored by KEDA: catch it here.
REDIS_STREAMS_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "username", "usernameFromEnv", "password", "passwordFromEnv", "databaseIndex",
    "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
    "activationLagCount", "enableTLS", "unsafeSsl",
}
# KEDA 2.16's prometheus trigger (keda.sh/docs/2.16/scalers/prometheus), without authentication.
PROMETHEUS_METADATA = {
    "serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace",
    "customHeaders", "ignoreNullValues", "unsafeSsl", "timeout",
}
REDIS_AUTH_PARAMETERS = {
    "address", "host", "port", "username", "password", "tls", "ca", "cert", "key", "keyPassword",
}
# KEDA 2.16's redis-cluster-streams trigger (keda.sh/docs/2.16/scalers/redis-cluster-streams): a
# list of seed nodes instead of one address (addresses/hosts/ports and their *FromEnv), the same
# stream, group and TLS settings; `username` is read from the metadata too (redis_scaler.go's
# parseRedisClusterAddress), `password` only from the environment or a TriggerAuthentication.
REDIS_CLUSTER_STREAMS_METADATA = {
    "addresses", "addressesFromEnv", "hosts", "hostsFromEnv", "ports", "portsFromEnv",
    "username", "usernameFromEnv", "passwordFromEnv", "databaseIndex",
    "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
    "activationLagCount", "enableTLS", "unsafeSsl",
}
REDIS_CLUSTER_AUTH_PARAMETERS = {
    "addresses", "hosts", "ports", "username", "password", "tls", "ca", "cert", "key", "keyPassword",
}
# Per scaler: its metadata names, the ones naming an environment variable of the scale target, the
# ones that are addresses (one is needed, in the metadata or the TriggerAuthentication), and the
# TriggerAuthentication parameters it reads.
REDIS_SCALERS = {
    "redis-streams": {
        "metadata": REDIS_STREAMS_METADATA,
        "from_env": ("addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv", "passwordFromEnv"),
        "address": ("address", "addressFromEnv", "host", "hostFromEnv"),
        "auth": REDIS_AUTH_PARAMETERS,
    },
    "redis-cluster-streams": {
        "metadata": REDIS_CLUSTER_STREAMS_METADATA,
        "from_env": ("addressesFromEnv", "hostsFromEnv", "portsFromEnv", "usernameFromEnv", "passwordFromEnv"),
        "address": ("addresses", "addressesFromEnv", "hosts", "hostsFromEnv"),
        "auth": REDIS_CLUSTER_AUTH_PARAMETERS,
    },
}
# The query parameters the application's Redis URL parser accepts (RedisClient's RedisURL.swift):
# anything else makes every process refuse to start.
REDIS_URL_PARAMETERS = {
    "db", "client_name", "connect_timeout", "socket_timeout", "ssl_ca_certs", "ssl_certfile",
    "ssl_keyfile", "ssl_server_name", "ssl_cert_reqs", "addr", "cluster", "cluster_retry_window",
}

# The HTTP servers' graceful shutdown (stop accepting, finish what is in flight): a pod's grace
# period must cover it after the preStop hook.
APP_SHUTDOWN_SECONDS = 30
PLACEHOLDER = "REPLACE-ME"


class SecretPolicy:
    """The Secrets the operator creates (name -> keys, from deploy/README.md's table) and the
    renderings that may render them (the local overlay, with its local-only values)."""

    def __init__(self, external: dict[str, set[str]] | None = None, bundled: set[str] | None = None) -> None:
        self.external = external or {}
        self.bundled = bundled if bundled is not None else {"local"}


_SECRETS_BEGIN = "<!-- external-secrets -->"
_SECRETS_END = "<!-- /external-secrets -->"


def external_secrets_from(path: str) -> dict[str, set[str]]:
    """The table between the external-secrets markers of `path`: rows `| `secret` | `key` | ...`."""
    text = Path(path).read_text()
    if _SECRETS_BEGIN not in text or _SECRETS_END not in text:
        raise SystemExit(f"{path}: no {_SECRETS_BEGIN} ... {_SECRETS_END} table")
    table = text.split(_SECRETS_BEGIN, 1)[1].split(_SECRETS_END, 1)[0]
    secrets: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[1].startswith("`"):
            secrets.setdefault(cells[0].strip("`"), set()).add(cells[1].strip("`"))
    if not secrets:
        raise SystemExit(f"{path}: the external-secrets table lists no Secret")
    return secrets


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, label: str, what: str) -> None:
        self.passed += 1
        print(f"  PASS {label}: {what}")

    def fail(self, label: str, what: str) -> None:
        self.failed += 1
        print(f"  FAIL {label}: {what}")

    def skip(self, label: str, what: str) -> None:
        self.skipped += 1
        print(f"  SKIP {label}: {what}")


def load_documents(paths: str) -> list[dict]:
    """The documents of one or more files (comma-separated): validated together."""
    docs: list[dict] = []
    for path in paths.split(","):
        with open(path) as handle:
            docs.extend(doc for doc in yaml.safe_load_all(handle) if doc)
    return docs


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- 1. built-in kinds ----------------------------------------------------------------------------

def builtin_errors(doc: dict, version: str) -> list[str] | None:
    """Schema errors of `doc` for Kubernetes `version`; None when kubernetes-validate has no schema."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return []
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        return [f"{path}: {error.message}"]


# --- 2. KEDA kinds --------------------------------------------------------------------------------

_keda_schemas: dict[str, dict] = {}
_keda_unavailable: str | None = None


def _strict(schema: object) -> None:
    """Closes every object schema that lists properties (pydantic leaves them open)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)


def keda_schema(kind: str) -> dict | None:
    global _keda_unavailable
    if kind in _keda_schemas:
        return _keda_schemas[kind]
    try:
        from cloudcoil.models.keda import v1alpha1 as models
    except ImportError as error:
        _keda_unavailable = f"cloudcoil-models-keda is not installed ({error})"
        return None
    model = getattr(models, kind, None)
    if model is None or not inspect.isclass(model):
        return None
    schema = model.model_json_schema(by_alias=True, mode="validation")
    _strict(schema)
    _keda_schemas[kind] = schema
    return schema


def keda_errors(doc: dict) -> list[str] | None:
    import jsonschema

    schema = keda_schema(doc["kind"])
    if schema is None:
        return None
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path)}: {e.message}" for e in errors]


# --- 3. cross-references --------------------------------------------------------------------------

def redis_url_problems(url: str) -> tuple[list[str], bool]:
    """What the application's URL parser (RedisURL.swift) would refuse in `url`, and whether the URL
    asks for a Redis Cluster (cluster=yes). A URL with an unresolved $(VAR) is not judged here."""
    if "$(" in url:
        return [], False
    problems: list[str] = []
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("redis", "rediss", "unix"):
        return [f"has no redis://, rediss:// or unix:// scheme: {url!r}"], False
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    database = 0
    database_in_path = False
    if scheme.lower() in ("redis", "rediss"):
        authority, _, path = rest.partition("/")
        host_port = authority.rpartition("@")[2]
        host = host_port.rpartition(":")[0] if ":" in host_port else host_port
        if not host:
            problems.append(f"has no host: {url!r}")
        db_text = path.lstrip("/")
        database_in_path = bool(db_text)
        if db_text:
            if db_text.isdigit():
                database = int(db_text)
            else:
                problems.append(f"database must be a number, got {db_text!r}")
    cluster = False
    # A parameter given twice is refused (only addr repeats); so is a db= beside a path database.
    seen: set[str] = {"db"} if database_in_path else set()
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if key != "addr" and key in seen:
            problems.append("gives the database twice: in the path and as db=" if key == "db" and database_in_path
                            else f"gives the query parameter {key!r} twice")
        seen.add(key)
        if key not in REDIS_URL_PARAMETERS:
            problems.append(f"has the query parameter {key!r}, which the application refuses "
                            f"(it knows {', '.join(sorted(REDIS_URL_PARAMETERS))})")
        elif key == "cluster":
            if value.lower() not in ("yes", "true", "1", "no", "false", "0", "auto"):
                problems.append(f"cluster must be yes, no or auto, got {value!r}")
            cluster = value.lower() in ("yes", "true", "1")
        elif key == "addr":
            host, colon, port = value.rpartition(":")
            if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                problems.append(f"addr must be host:port, got {value!r}")
        elif key == "db":
            if value.isdigit():
                database = int(value)
            else:
                problems.append(f"db must be a number, got {value!r}")
        elif key in ("connect_timeout", "socket_timeout", "cluster_retry_window"):
            try:
                if float(value) <= 0:
                    raise ValueError
            except ValueError:
                problems.append(f"{key} must be a positive number of seconds, got {value!r}")
    if cluster and database != 0:
        problems.append(f"selects database {database}, but a Redis Cluster has only database 0")
    return problems, cluster


def semantic_errors(docs: list[dict], acl_users: set[str] | None, label: str = "",
                    secrets: SecretPolicy | None = None) -> list[str]:
    errors: list[str] = []
    secrets = secrets or SecretPolicy()
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    # Secrets: no placeholder anywhere; the operator's Secrets rendered only where allowed.
    for name, doc in by_kind.get("Secret", {}).items():
        values = [str(v) for v in (doc.get("stringData") or {}).values()]
        for v in (doc.get("data") or {}).values():
            try:
                values.append(base64.b64decode(str(v)).decode())
            except (binascii.Error, UnicodeDecodeError):
                pass
        if any(PLACEHOLDER in v for v in values):
            errors.append(f"Secret/{name}: holds a {PLACEHOLDER} placeholder; `kubectl apply -k` would put it in "
                          f"place of the real Secret (pods then fail to authenticate)")
        if name in secrets.external and label not in secrets.bundled:
            errors.append(f"Secret/{name}: rendered by {label or 'this rendering'}, but it is one the operator "
                          f"creates (deploy/README.md, Secrets): every apply would overwrite it")

    def keys_of(kind: str, name: str) -> set[str] | None:
        doc = by_kind.get(kind, {}).get(name)
        if doc is None:
            if kind == "Secret" and name in secrets.external:
                return set(secrets.external[name])  # created by the operator, with these keys
            return None
        return set((doc.get("data") or {}).keys()) | set((doc.get("stringData") or {}).keys()) | set(
            (doc.get("binaryData") or {}).keys())

    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {}), **by_kind.get("Job", {})}

    def container_env_names(container: dict, where: str) -> set[str]:
        defined: set[str] = set()
        for source in container.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    keys = keys_of(kind, source[ref]["name"])
                    if keys is None and not source[ref].get("optional"):
                        errors.append(f"{where}: envFrom {kind} {source[ref]['name']} does not exist")
                    defined |= {(source.get("prefix") or "") + k for k in (keys or set())}
        for var in container.get("env", []):
            for ref in _VAR_REF.findall(var.get("value") or ""):
                if ref not in defined:
                    errors.append(f"{where}: env {var['name']} uses $({ref}), not defined before it")
            value_from = var.get("valueFrom") or {}
            for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if ref in value_from:
                    keys = keys_of(kind, value_from[ref]["name"])
                    if keys is None or value_from[ref]["key"] not in keys:
                        errors.append(f"{where}: env {var['name']} needs {kind} "
                                      f"{value_from[ref]['name']} key {value_from[ref]['key']}")
            defined.add(var["name"])
        return defined

    def data_of(kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's values as the pods get them (Secret data decoded)."""
        doc = by_kind.get(kind, {}).get(name) or {}
        values = {k: str(v) for k, v in (doc.get("data") or {}).items()}
        if kind == "Secret":
            for k, v in list(values.items()):
                try:
                    values[k] = base64.b64decode(v).decode()
                except (binascii.Error, UnicodeDecodeError):
                    values[k] = "x"
        values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
        return values

    def container_env_values(container: dict) -> dict[str, str]:
        """Each variable's value as the pod will see it, $(VAR) expanded as the kubelet does."""
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    prefix = source.get("prefix") or ""
                    values.update({prefix + k: v for k, v in data_of(kind, source[ref]["name"]).items()})
        for var in container.get("env", []):
            value_from = var.get("valueFrom") or {}
            if "value" in var:
                values[var["name"]] = _VAR_REF.sub(lambda m: values.get(m.group(1), m.group(0)), var["value"] or "")
            elif "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
                kind, ref = (("Secret", value_from["secretKeyRef"]) if "secretKeyRef" in value_from
                             else ("ConfigMap", value_from["configMapKeyRef"]))
                values[var["name"]] = data_of(kind, ref["name"]).get(ref["key"], "x")
            else:
                values[var["name"]] = "x"  # fieldRef, resourceFieldRef: some value
        return values

    env_by_workload: dict[str, set[str]] = {}
    # Whether each workload's REDIS_URL asks for a Redis Cluster (cluster=yes).
    cluster_by_workload: dict[str, bool] = {}
    for name, doc in workloads.items():
        pod = doc["spec"]["template"]["spec"]
        where = name_of(doc)
        for volume in pod.get("volumes", []):
            if "secret" in volume and keys_of("Secret", volume["secret"]["secretName"]) is None:
                errors.append(f"{where}: volume {volume['name']} needs Secret {volume['secret']['secretName']}")
            if "configMap" in volume and keys_of("ConfigMap", volume["configMap"]["name"]) is None:
                errors.append(f"{where}: volume {volume['name']} needs ConfigMap {volume['configMap']['name']}")
        volume_names = {v["name"] for v in pod.get("volumes", [])} | {
            t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        for container in pod.get("containers", []):
            cwhere = f"{where} container {container['name']}"
            env = container_env_names(container, cwhere)
            env_by_workload[name] = env
            ports = {p.get("name") for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket"):
                    if handler in probe and probe[handler]["port"] not in ports:
                        errors.append(f"{cwhere}: {probe_name} port {probe[handler]['port']} is not a container port")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volume_names:
                    errors.append(f"{cwhere}: volumeMount {mount['name']} has no volume")
            user = next((v.get("value") for v in container.get("env", []) if v["name"] == "REDIS_USERNAME"), None)
            if acl_users is not None and user and user not in acl_users:
                errors.append(f"{cwhere}: REDIS_USERNAME {user} is not a user of users.acl")
            values = container_env_values(container)
            if "REDIS_URL" in values:
                problems, cluster = redis_url_problems(values["REDIS_URL"])
                errors.extend(f"{cwhere}: REDIS_URL {problem}" for problem in problems)
                cluster_by_workload[name] = cluster
            for key, least in (("ORDERSHOP_CONFIRM_REPLICAS", 0), ("ORDERSHOP_CONFIRM_TIMEOUT_MS", 1)):
                value = values.get(key, "")
                if value and (not value.isdigit() or int(value) < least):
                    errors.append(f"{cwhere}: {key} must be a whole number >= {least} (the application "
                                  f"refuses to start otherwise), got {value!r}")
            security = container.get("securityContext", {})
            if security.get("readOnlyRootFilesystem") is not True or security.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cwhere}: needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            errors.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if doc["kind"] == "Deployment" and pod.get("terminationGracePeriodSeconds", 30) <= 10:
            errors.append(f"{where}: terminationGracePeriodSeconds must exceed the 10 s drain deadline")
        labels = doc["spec"]["template"]["metadata"].get("labels", {})
        if doc["kind"] == "Deployment" and labels.get("app.kubernetes.io/name") == "ordershop":
            for container in pod.get("containers", []):
                cwhere = f"{where} container {container['name']}"
                for probe_name, path in (("livenessProbe", "/livez"), ("readinessProbe", "/healthz")):
                    got = ((container.get(probe_name) or {}).get("httpGet") or {}).get("path")
                    if got != path:
                        errors.append(f"{cwhere}: {probe_name} must GET {path}, got {got!r}"
                                      + (" (/healthz fails while Redis is unreachable: liveness on it restarts every pod "
                                         "in a Redis outage)" if probe_name == "livenessProbe" else ""))

    def pods_matching(selector: dict) -> list[dict]:
        return [w for w in workloads.values()
                if selector and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                                    for k, v in selector.items())]

    for name, doc in by_kind.get("Service", {}).items():
        matches = pods_matching(doc["spec"].get("selector", {}))
        if not matches:
            errors.append(f"Service/{name}: selector matches no pod template")
        for port in doc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for workload in matches:
                names = {p.get("name") for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                if target not in names | numbers:
                    errors.append(f"Service/{name}: targetPort {target} is not a port of {name_of(workload)}")
    for name, doc in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_matching(doc["spec"]["selector"].get("matchLabels", {})):
            errors.append(f"PodDisruptionBudget/{name}: selector matches no pod template")

    # OrderShop's HTTP services (Deployments behind a Service): a preStop sleep, so that the pod
    # leaves every node's endpoints before SIGTERM, and a grace period covering it and the shutdown.
    served = {id(w) for d in by_kind.get("Service", {}).values() for w in pods_matching(d["spec"].get("selector", {}))}
    for name, doc in by_kind.get("Deployment", {}).items():
        if id(doc) not in served or doc["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "ordershop":
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("containers", []):
            command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
            if len(command) != 2 or command[0] != "sleep" or not str(command[1]).isdigit():
                errors.append(f"Deployment/{name} container {container['name']}: an HTTP service needs "
                              f"lifecycle.preStop.exec.command [\"sleep\", \"<seconds>\"], got {command!r}")
                continue
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= APP_SHUTDOWN_SECONDS + int(command[1]):
                errors.append(f"Deployment/{name}: terminationGracePeriodSeconds {grace} must exceed the preStop "
                              f"sleep ({command[1]} s) plus the {APP_SHUTDOWN_SECONDS} s graceful shutdown")

    # An autoscaled Deployment sets no replicas: every apply would reset the autoscaler's count.
    scalers_of: dict[str, str] = {}
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for name, doc in by_kind.get(kind, {}).items():
            scalers_of[doc["spec"]["scaleTargetRef"]["name"]] = f"{kind}/{name}"
    for target, scaler in sorted(scalers_of.items()):
        deployment = by_kind.get("Deployment", {}).get(target)
        if deployment is not None and "replicas" in deployment["spec"]:
            errors.append(f"Deployment/{target}: sets replicas ({deployment['spec']['replicas']}) but {scaler} scales it: "
                          f"every `kubectl apply` would reset the autoscaled count")

    modes = {mode: sorted(n for n, c in cluster_by_workload.items() if c == mode) for mode in (True, False)}
    if modes[True] and modes[False]:
        errors.append(f"REDIS_URL asks for a Redis Cluster in {', '.join(modes[True])} but not in "
                      f"{', '.join(modes[False])}: one Redis, one mode")

    # Which redis scalers use each TriggerAuthentication: it may hold only parameters all of them read.
    scalers_of_auth: dict[str, set[str]] = {}
    for doc in by_kind.get("ScaledObject", {}).values():
        for trigger in doc["spec"]["triggers"]:
            ref = (trigger.get("authenticationRef") or {}).get("name")
            if ref and trigger["type"] in REDIS_SCALERS:
                scalers_of_auth.setdefault(ref, set()).add(trigger["type"])

    scaled_targets: dict[str, str] = {}
    for name, doc in by_kind.get("TriggerAuthentication", {}).items():
        scalers = sorted(scalers_of_auth.get(name, set()))
        readable = (set.intersection(*(REDIS_SCALERS[s]["auth"] for s in scalers)) if scalers
                    else set.union(*(s["auth"] for s in REDIS_SCALERS.values())))
        for ref in doc["spec"].get("secretTargetRef", []):
            if ref["parameter"] not in readable:
                errors.append(f"TriggerAuthentication/{name}: parameter {ref['parameter']} is not one the "
                              + (f"{scalers[0]} scaler reads" if len(scalers) == 1
                                 else f"{' and '.join(scalers) or 'redis'} scalers read"))
            keys = keys_of("Secret", ref["name"])
            if keys is None or ref["key"] not in keys:
                errors.append(f"TriggerAuthentication/{name}: needs Secret {ref['name']} key {ref['key']}")
    for name, doc in by_kind.get("ScaledObject", {}).items():
        target = doc["spec"]["scaleTargetRef"]["name"]
        scaled_targets[target] = f"ScaledObject/{name}"
        if target not in by_kind.get("Deployment", {}):
            errors.append(f"ScaledObject/{name}: target Deployment {target} does not exist")
        trigger_names = []
        for trigger in doc["spec"]["triggers"]:
            label = f"ScaledObject/{name} trigger {trigger.get('name', trigger['type'])}"
            trigger_names.append(trigger.get("name"))
            scaler = REDIS_SCALERS.get(trigger["type"])
            if scaler:
                metadata = trigger.get("metadata", {})
                unknown = set(metadata) - scaler["metadata"]
                if unknown:
                    errors.append(f"{label}: unknown {trigger['type']} metadata {sorted(unknown)}")
                if "stream" not in metadata:
                    errors.append(f"{label}: no stream")
                for key in scaler["from_env"]:
                    if key in metadata and metadata[key] not in env_by_workload.get(target, set()):
                        errors.append(f"{label}: {key} {metadata[key]} is not in {target}'s environment")
                for key in ("lagCount", "activationLagCount", "pendingEntriesCount", "streamLength", "databaseIndex"):
                    if key in metadata and not str(metadata[key]).isdigit():
                        errors.append(f"{label}: {key} must be a whole number, got {metadata[key]!r}")
                auth = by_kind.get("TriggerAuthentication", {}).get((trigger.get("authenticationRef") or {}).get("name"), {})
                auth_parameters = {r["parameter"] for r in (auth.get("spec") or {}).get("secretTargetRef", [])}
                if not (set(metadata) | auth_parameters) & set(scaler["address"]):
                    errors.append(f"{label}: no address ({' or '.join(scaler['address'])})")
                cluster = cluster_by_workload.get(target)
                if trigger["type"] == "redis-streams" and cluster:
                    errors.append(f"{label}: redis-streams reads one server, but {target}'s REDIS_URL asks for "
                                  f"a Redis Cluster: use redis-cluster-streams (deploy/k8s/components/redis-cluster)")
                if trigger["type"] == "redis-cluster-streams":
                    if cluster is False:
                        errors.append(f"{label}: redis-cluster-streams, but {target}'s REDIS_URL has no cluster=yes")
                    if str(metadata.get("databaseIndex", "0")) != "0":
                        errors.append(f"{label}: a Redis Cluster has only database 0, not {metadata['databaseIndex']}")
            if trigger["type"] == "prometheus":
                metadata = trigger.get("metadata", {})
                unknown = set(metadata) - PROMETHEUS_METADATA
                if unknown:
                    errors.append(f"{label}: unknown prometheus metadata {sorted(unknown)}")
                for key in ("serverAddress", "query", "threshold"):
                    if not metadata.get(key):
                        errors.append(f"{label}: no {key}")
                for key in ("threshold", "activationThreshold"):
                    if key in metadata:
                        try:
                            float(metadata[key])
                        except ValueError:
                            errors.append(f"{label}: {key} must be a number, got {metadata[key]!r}")
            ref = (trigger.get("authenticationRef") or {}).get("name")
            if ref and ref not in by_kind.get("TriggerAuthentication", {}):
                errors.append(f"{label}: TriggerAuthentication {ref} does not exist")
        if len(set(trigger_names)) != len(trigger_names):
            errors.append(f"ScaledObject/{name}: trigger names are not unique")
        formula = ((doc["spec"].get("advanced") or {}).get("scalingModifiers") or {}).get("formula")
        if formula:
            unknown = set(_IDENT.findall(formula)) - set(trigger_names)
            if unknown:
                errors.append(f"ScaledObject/{name}: formula names no trigger {sorted(unknown)}")
    for name, doc in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = doc["spec"]["scaleTargetRef"]["name"]
        if target not in by_kind.get("Deployment", {}):
            errors.append(f"HorizontalPodAutoscaler/{name}: target Deployment {target} does not exist")
        if target in scaled_targets:
            errors.append(f"HorizontalPodAutoscaler/{name}: {target} is also scaled by {scaled_targets[target]}")
    return errors


# --- driver ---------------------------------------------------------------------------------------

def validate(label: str, docs: list[dict], versions: list[str], acl_users: set[str] | None, report: Report,
             quiet: bool = False, secrets: SecretPolicy | None = None) -> int:
    before = report.failed
    builtin_count = 0
    keda_count = 0
    for doc in docs:
        where = f"{label} {name_of(doc)}"
        if doc.get("kind") in KEDA_KINDS:
            errors = keda_errors(doc)
            if errors is None:
                report.skip(where, f"no KEDA schema ({_keda_unavailable or 'kind not in cloudcoil-models-keda'})")
                continue
            keda_count += 1
            for error in errors:
                report.fail(where, f"KEDA CRD schema: {error}")
            continue
        for version in versions:
            errors = builtin_errors(doc, version)
            if errors is None:
                report.fail(where, f"no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')}")
                continue
            for error in errors:
                report.fail(where, f"Kubernetes {version} schema: {error}")
        builtin_count += 1
    for error in semantic_errors(docs, acl_users, label, secrets):
        report.fail(label, error)
    if report.failed == before and not quiet:
        keda = f", {keda_count} KEDA resources against the KEDA CRD schema" if keda_count else ""
        report.ok(label, f"{builtin_count} resources against Kubernetes {', '.join(versions)} (strict){keda}, "
                         f"cross-references")
    return report.failed - before


def acl_user_names(path: str | None) -> set[str] | None:
    if not path:
        return None
    return {line.split()[1] for line in Path(path).read_text().splitlines() if line.startswith("user ")}


def self_test(label: str, docs: list[dict], versions: list[str], acl_users: set[str] | None,
              secrets: SecretPolicy | None = None) -> int:
    """Each mutation must make validation fail: the checks above can fail for real."""

    def first(kind: str, predicate=lambda d: True):
        return next(d for d in docs_copy if d["kind"] == kind and predicate(d))

    def env(name: str) -> dict:
        container = first("Deployment")["spec"]["template"]["spec"]["containers"][0]
        return next(v for v in container["env"] if v["name"] == name)

    def config() -> dict:
        return first("ConfigMap", lambda d: d["metadata"]["name"] == "ordershop-config")["data"]

    def cluster_trigger() -> dict | None:
        return next((t for d in docs_copy if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"]
                     if t["type"] == "redis-cluster-streams"), None)

    def flip_cluster_mode() -> None:
        # On one server: ask for a cluster (the redis-streams triggers no longer fit); on a cluster:
        # drop cluster=yes (the redis-cluster-streams triggers no longer fit).
        query = config().get("REDIS_QUERY", "")
        config()["REDIS_QUERY"] = "" if "cluster=yes" in query else "?cluster=yes"

    def misspell_cluster_metadata() -> bool:
        trigger = cluster_trigger()
        if trigger is None:
            return False  # no cluster trigger in this rendering
        metadata = trigger["metadata"]
        metadata["addressFromEnv"] = metadata.pop("addressesFromEnv")  # redis-streams' name
        return True

    def misspell_query() -> None:
        query = config().get("REDIS_QUERY", "")
        config()["REDIS_QUERY"] = query + ("&" if query else "?") + "clsuter_retry_window=30"

    def database_twice() -> None:
        # The URL's path carries $(REDIS_DB) already: a db= in the query gives it twice.
        query = config().get("REDIS_QUERY", "")
        config()["REDIS_QUERY"] = query + ("&" if query else "?") + "db=0"

    def database_on_cluster() -> bool:
        if "cluster=yes" not in config().get("REDIS_QUERY", ""):
            return False  # database 1 is fine on one server
        config()["REDIS_DB"] = "1"
        return True

    def auth_parameter_not_read() -> None:
        # `address` is read by redis-streams only, `addresses` by redis-cluster-streams only.
        parameter = "address" if cluster_trigger() else "addresses"
        first("TriggerAuthentication")["spec"]["secretTargetRef"].append(
            {"parameter": parameter, "name": "ordershop-redis", "key": "scaler-username"})

    def deployment(name: str) -> dict:
        return first("Deployment", lambda d: d["metadata"]["name"] == name)

    def placeholder_secret() -> None:
        # What the base used to render: the operator's Secret with placeholders, in a managed overlay.
        docs_copy.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ordershop-redis", "namespace": "ordershop"},
                          "type": "Opaque", "stringData": {"service-password": PLACEHOLDER}})

    def grace_too_short() -> None:
        deployment("gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30

    mutations = {
        "unknown field in a Deployment": lambda: first("Deployment")["spec"].__setitem__("replica", 2),
        "wrong type in a Service port": lambda: first("Service")["spec"]["ports"][0].__setitem__("port", "http"),
        "unknown field in a ScaledObject": lambda: first("ScaledObject")["spec"].__setitem__("minReplicas", 1),
        "misspelt metadata in a KEDA trigger": lambda: first("ScaledObject")["spec"]["triggers"][0]["metadata"].__setitem__("lagcount", "5"),
        "secretKeyRef to a missing key": lambda: env("REDIS_PASSWORD")["valueFrom"]["secretKeyRef"].__setitem__("key", "nope"),
        "probe on a missing port": lambda: first("Deployment")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].__setitem__("port", "nope"),
        "ACL user that does not exist": lambda: env("REDIS_USERNAME").__setitem__("value", "nobody"),
        "$(VAR) that is not defined": lambda: env("REDIS_URL").__setitem__("value", "redis://$(REDIS_HOSTNAME)"),
        "formula naming no trigger": lambda: first("ScaledObject")["spec"]["advanced"]["scalingModifiers"].__setitem__("formula", "nothing + 1"),
        "REDIS_QUERY with a parameter the application refuses": misspell_query,
        "REDIS_QUERY giving the database a second time": database_twice,
        "database 1 on a Redis Cluster": database_on_cluster,
        "cluster mode the KEDA triggers do not match": flip_cluster_mode,
        "misspelt redis-cluster-streams metadata": misspell_cluster_metadata,
        "TriggerAuthentication parameter its scaler does not read": auth_parameter_not_read,
        "ORDERSHOP_CONFIRM_REPLICAS not a number": lambda: config().__setitem__("ORDERSHOP_CONFIRM_REPLICAS", "one"),
        "a Secret with REPLACE-ME rendered by a managed overlay": placeholder_secret,
        "liveness probe on /healthz": lambda: deployment("crm")["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"].__setitem__("path", "/healthz"),
        "an HTTP service without its preStop sleep": lambda: deployment("msg")["spec"]["template"]["spec"]["containers"][0].pop("lifecycle"),
        "grace period shorter than preStop + graceful shutdown": grace_too_short,
        "replicas on an autoscaled Deployment": lambda: deployment("billing-worker")["spec"].__setitem__("replicas", 2),
        "a key missing from the operator's Secret": lambda: env("REDIS_PASSWORD")["valueFrom"]["secretKeyRef"].__setitem__("key", "service_password"),
    }
    failures = 0
    for what, mutate in mutations.items():
        docs_copy = copy.deepcopy(docs)
        if mutate() is False:
            continue  # does not apply to this rendering
        quiet = Report()
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            caught = validate(label, docs_copy, versions, acl_users, quiet, quiet=True, secrets=secrets)
        if caught:
            print(f"  PASS self-test ({label}): {what} is caught")
        else:
            print(f"  FAIL self-test ({label}): {what} is NOT caught")
            failures += 1
    return failures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k8s-versions", default="1.29.0,1.37.0")
    parser.add_argument("--acl", help="users.acl, to check REDIS_USERNAME values")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--external-secrets", metavar="README.md",
                        help="the file whose external-secrets table lists the Secrets the operator creates")
    parser.add_argument("--bundled-secrets", default="local", metavar="LABELS",
                        help="comma-separated labels of the renderings that may render those Secrets (default: local)")
    parser.add_argument("inputs", nargs="+", metavar="LABEL=FILE")
    args = parser.parse_args(argv)
    versions = [v for v in args.k8s_versions.split(",") if v]
    acl_users = acl_user_names(args.acl)
    secrets = SecretPolicy(external_secrets_from(args.external_secrets) if args.external_secrets else None,
                           {b for b in args.bundled_secrets.split(",") if b})
    report = Report()
    if args.self_test:
        label, path = args.inputs[0].split("=", 1)
        return 1 if self_test(label, load_documents(path), versions, acl_users, secrets) else 0
    if secrets.external:
        listed = ", ".join(f"{n} ({', '.join(sorted(k))})" for n, k in sorted(secrets.external.items()))
        report.ok("external Secrets", f"created by the operator, from {args.external_secrets}: {listed}")
    for item in args.inputs:
        label, path = item.split("=", 1)
        validate(label, load_documents(path), versions, acl_users, report, secrets=secrets)
    print(f"  manifests: {report.passed} passed, {report.failed} failed, {report.skipped} skipped")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
