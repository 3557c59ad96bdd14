#!/usr/bin/env python3
"""Validates deploy/: run by scripts/check-deploy.sh, which installs the tools and Python packages it needs.

Static checks: every kustomization (and the operator components) renders and validates against the Kubernetes
schemas and the operators' CRDs; the rendered objects hang together (every ConfigMap, Secret key, ServiceAccount,
Service port and ingress backend they name exists); every container is locked down; the NetworkPolicies allow
exactly the architecture's flows; the production ingress lets nothing through unauthenticated; the
programs' configuration files are accepted by `gomon` itself; Grafana's provisioning files, the dashboards, the
vmalert rules, the scrape configuration, Filebeat/Logstash, Terraform and the ArgoCD applications parse and say
what they must. Kafka's brokers require client certificates and ACLs, each client has its own certificate and
exactly the ACLs it needs; the alerting service reaches PostgreSQL as a non-superuser role over verify-full TLS,
proved against a PostgreSQL set up from the rendered settings (check_kafka_security, check_postgres_security).

Live check: VictoriaMetrics, fed by scraping the real `gomon alerting`, `gomon agent` and (when the binary has it)
`gomon aggregator`, which remote-writes what the agent publishes through a Kafka-protocol broker (tansu), runs
every PromQL expression of the dashboards and rules; each must succeed and every metric it names must exist.
Grafana's Alertmanager datasource, as provisioned, lists alerts and sets and expires a silence in `gomon alerting`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
KUSTOMIZATIONS = ["deploy/k8s/infra", "deploy/k8s/overlays/local", "deploy/k8s/overlays/production",
                  "deploy/k8s/overlays/kube-prometheus-stack"]
# The operators' components: rendered on top of the production overlay. Their rule objects are generated from
# deploy/vmalert/rules.yml (BLESS=1 rewrites them).
COMPONENTS = {
    "deploy/k8s/components/prometheus-operator":
        ("prometheusrule.yaml", "monitoring.coreos.com/v1", "PrometheusRule"),
    "deploy/k8s/components/victoria-metrics-operator":
        ("vmrule.yaml", "operator.victoriametrics.com/v1beta1", "VMRule"),
}
CRDS = ROOT / "third_party" / "crds"
# node_exporter's port, which kube-prometheus-stack's node-exporter DaemonSet holds on every node's network.
NODE_EXPORTER_PORT = 9100
GOMON_ROLES = ("alerting", "agent", "aggregator")
# What the issue fixes for each of our workloads: memory request/limit, CPU request.
RESOURCES = {"agent": ("256Mi", "200m"), "aggregator": ("512Mi", "200m"), "alerting": ("256Mi", "100m")}
INGRESS_HOSTS = {"alerting.local", "grafana.local", "victoria.local", "jaeger.local", "kibana.local"}
THRESHOLD_TYPES = {"gt", "lt", "within_range", "outside_range"}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.passed = 0

    def check(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)
            print(f"FAIL {message}", flush=True)
        return ok

    def fail(self, message: str) -> None:
        self.check(False, message)

    def note(self, message: str) -> None:
        self.notes.append(message)
        print(f"  {message}", flush=True)


R = Report()


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


# ---------------------------------------------------------------------------------------------------------------
# PromQL: the metric names an expression references.

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "inf", "nan", "start", "end",
}


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression: identifiers that are not functions, keywords, label names
    (inside {...} or a grouping) or durations."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)", s):
        if re.match(r"\s*\(", s[m.end():]) or m.group(1).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def self_test() -> None:
    cases = {
        "rate(alerting_alerts_created_total[5m]) > 0.05": {"alerting_alerts_created_total"},
        'histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{a="b(c)"}[$__rate_interval])))': {"x_bucket"},
        "time() - max by (host) (max_over_time(node_time_seconds[1h])) > 120": {"node_time_seconds"},
        "a / on (instance) group_left (node) b offset 5m and c": {"a", "b", "c"},
        "sum(x{cpu=\"\"}) * 1e3 unless y": {"x", "y"},
    }
    for expr, want in cases.items():
        got = metric_names(expr)
        assert got == want, f"metric_names({expr!r}) = {got}, want {want}"


# ---------------------------------------------------------------------------------------------------------------
# Rendering and Kubernetes validation.

def render(path: str) -> list[dict]:
    result = run(["kubectl", "kustomize", str(ROOT / path)])
    if not R.check(result.returncode == 0, f"kubectl kustomize {path}: {result.stderr.strip()[:2000]}"):
        return []
    return load_yaml_docs(result.stdout)


def render_component(component: str, tmp: Path) -> list[dict]:
    """The production overlay with `component` added, as a user of that operator would render it."""
    root = tmp / ("with-" + Path(component).name)
    root.mkdir()
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "monitoring",
        "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays/production", root)],
        "components": [os.path.relpath(ROOT / component, root)]}))
    result = run(["kubectl", "kustomize", str(root)])
    if not R.check(result.returncode == 0, f"kubectl kustomize (production + {component}): {result.stderr[:2000]}"):
        return []
    return load_yaml_docs(result.stdout)


def operator_rules(api_version: str, kind: str) -> str:
    """The rule object of an operator component: deploy/vmalert/rules.yml's groups, unchanged."""
    groups = yaml.safe_load((DEPLOY / "vmalert" / "rules.yml").read_text())["groups"]
    doc = {"apiVersion": api_version, "kind": kind,
           "metadata": {"name": "gomon", "labels": {"app.kubernetes.io/name": "gomon"}}, "spec": {"groups": groups}}
    return ("# Generated from deploy/vmalert/rules.yml by scripts/check_deploy.py: do not edit; after changing the rules,\n"
            "# run `BLESS=1 scripts/check-deploy.sh`.\n" + yaml.safe_dump(doc, sort_keys=False, width=120))


def bless_operator_rules() -> None:
    for component, (file, api_version, kind) in COMPONENTS.items():
        (ROOT / component / file).write_text(operator_rules(api_version, kind))


def check_operator_rules() -> None:
    for component, (file, api_version, kind) in COMPONENTS.items():
        path = ROOT / component / file
        R.check(path.exists() and path.read_text() == operator_rules(api_version, kind),
                f"{component}/{file} differs from deploy/vmalert/rules.yml: run BLESS=1 scripts/check-deploy.sh")


def custom_resource_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, from the CRDs in third_party/crds."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = \
                version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(value, schema: dict, where: str) -> list[str]:
    """Fields the API server would prune (or refuse, with strict field validation): not in the schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            elif where or key != "metadata":
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{i}]")
    return found


def validate_custom_resources(label: str, docs: list[dict]) -> None:
    """Every object of an operator's kind against its CRD's published schema: types, required fields, enums,
    patterns, and no field the schema does not know."""
    import jsonschema
    schemas = custom_resource_schemas()
    for d in docs:
        if (d["apiVersion"], d["kind"]) not in schemas:
            continue
        name = f"{label}: {d['kind']}/{d['metadata']['name']}"
        schema = schemas[(d["apiVersion"], d["kind"])]
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(schema).iter_errors(d)]
        R.check(not errors, f"{name} does not validate against its CRD: {errors[:5]}")
        unknown = unknown_fields(d, schema, "")
        R.check(not unknown, f"{name}: fields unknown to its CRD: {unknown[:10]}")


def is_custom_resource(d: dict) -> bool:
    return d["apiVersion"].split("/")[0].endswith((".coreos.com", ".victoriametrics.com"))


def kubernetes_validate(label: str, docs: list[dict], tmp: Path) -> None:
    validate_custom_resources(label, docs)
    docs = [d for d in docs if not is_custom_resource(d)]
    path = tmp / (label.replace("/", "_") + ".yaml")
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = run(["kubernetes-validate", "--strict", "--quiet", "-k", K8S_VERSION, str(path)])
    output = (result.stdout + result.stderr).strip()
    R.check(result.returncode == 0 and "ERROR" not in output,
            f"{label}: objects do not validate against Kubernetes {K8S_VERSION}:\n{output[:4000]}")


def pod_specs(docs: list[dict]):
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, d["spec"]["template"]


def check_objects(label: str, docs: list[dict], secrets: dict[str, set[str]], external: list[dict]) -> None:
    """Cross-references inside one rendered overlay (plus `external`: what deploy/k8s/infra provides)."""
    everything = docs + external
    by_kind: dict[str, dict[str, dict]] = {}
    for d in everything:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    for d in docs:
        if d["kind"] != "Namespace":
            R.check(d["metadata"].get("namespace") == "monitoring",
                    f"{label}: {d['kind']}/{d['metadata']['name']} is not in namespace monitoring")
    configmaps = by_kind.get("ConfigMap", {})
    accounts = set(by_kind.get("ServiceAccount", {})) | {"default"}
    for workload, template in pod_specs(docs):
        name = f"{label}: {workload['kind']}/{workload['metadata']['name']}"
        spec = template["spec"]
        R.check(spec.get("serviceAccountName", "default") in accounts,
                f"{name}: ServiceAccount {spec.get('serviceAccountName')} is not defined")
        bound = {(s.get("kind"), s.get("name")) for b in by_kind.get("RoleBinding", {}).values()
                 for s in b.get("subjects", [])} | {(s.get("kind"), s.get("name"))
                 for b in by_kind.get("ClusterRoleBinding", {}).values() for s in b.get("subjects", [])}
        R.check(spec.get("automountServiceAccountToken") is False
                or ("ServiceAccount", spec.get("serviceAccountName")) in bound,
                f"{name}: mounts a Kubernetes API token it has no role for")
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                R.check(v["configMap"]["name"] in configmaps, f"{name}: ConfigMap {v['configMap']['name']} missing")
            if "secret" in v:
                secret = v["secret"]["secretName"]
                if R.check(secret in secrets, f"{name}: Secret {secret} is not made by deploy/create-secrets.sh"):
                    for item in v["secret"].get("items", []):
                        R.check(item["key"] in secrets[secret], f"{name}: Secret {secret} has no key {item['key']}")
            if "persistentVolumeClaim" in v:
                R.check(v["persistentVolumeClaim"]["claimName"] in by_kind.get("PersistentVolumeClaim", {}),
                        f"{name}: PersistentVolumeClaim {v['persistentVolumeClaim']['claimName']} missing")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{name} container {c['name']}"
            for m in c.get("volumeMounts", []):
                R.check(m["name"] in volumes or m["name"] in claims, f"{cname}: mounts unknown volume {m['name']}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    R.check(ref["key"] in secrets.get(ref["name"], set()),
                            f"{cname}: env {e['name']} reads key {ref['key']} of Secret {ref['name']}, "
                            "which deploy/create-secrets.sh does not make")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = (c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket") or {}).get("port")
                if isinstance(port, str):
                    R.check(port in ports, f"{cname}: {probe} uses unknown port name {port}")
            # Init containers and Jobs run to completion (kafka-setup has a deadline instead): no liveness probe.
            if c in spec["containers"] and workload["kind"] != "Job":
                R.check("livenessProbe" in c, f"{cname}: no liveness probe")
            R.check("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}),
                    f"{cname}: requests and limits are both needed")
            sc = c.get("securityContext", {})
            R.check(sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
                    and not sc.get("capabilities", {}).get("add") and not sc.get("privileged"),
                    f"{cname}: privilege escalation must be off and every capability dropped")
            R.check(sc.get("readOnlyRootFilesystem") is True, f"{cname}: root filesystem must be read-only")
            pod_sc = spec.get("securityContext", {})
            R.check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
                    and sc.get("runAsUser", pod_sc.get("runAsUser")) not in (0, None),
                    f"{cname}: must run as a non-root user, named by its uid")
        # Our own programs: the issue's settings.
        for c in spec["containers"]:
            role = c.get("args", [None])[0]
            if role not in GOMON_ROLES:
                continue
            cname = f"{name} container {c['name']}"
            memory, cpu = RESOURCES[role]
            res = c["resources"]
            R.check(res["requests"].get("memory") == memory and res["limits"].get("memory") == memory
                    and res["requests"].get("cpu") == cpu,
                    f"{cname}: resources should be {memory} / {cpu}, are {res}")
            R.check("readinessProbe" in c, f"{cname}: no readiness probe")
            annotations = template["metadata"].get("annotations", {})
            port = annotations.get("prometheus.io/port")
            R.check(annotations.get("prometheus.io/scrape") == "true"
                    and port is not None and int(port) in [p["containerPort"] for p in c.get("ports", [])],
                    f"{cname}: not annotated for scraping on one of its ports")
            if role == "agent":
                paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
                R.check({"/proc", "/sys", "/"} <= paths, f"{cname}: host /proc, /sys and / must be mounted")
                R.check(all(m.get("readOnly") for m in c["volumeMounts"]), f"{cname}: every mount must be read-only")
                R.check(any(e["name"] == "NODE_NAME" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                            == "spec.nodeName" for e in c.get("env", [])), f"{cname}: NODE_NAME from spec.nodeName")
                R.check(any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations", [])),
                        f"{cname}: must tolerate every taint to run on every node")
    # Services select pods and name their ports.
    templates = [t for _, t in pod_specs(everything)]
    for svc in by_kind.get("Service", {}).values():
        selector = svc["spec"].get("selector", {})
        matches = [t for t in templates if selector.items() <= t["metadata"].get("labels", {}).items()]
        if not R.check(bool(matches), f"{label}: Service {svc['metadata']['name']} selects no pod"):
            continue
        names = {p.get("name") for t in matches for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str):
                R.check(p["targetPort"] in names,
                        f"{label}: Service {svc['metadata']['name']} targets unknown port {p['targetPort']}")
    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = by_kind.get("Service", {}).get(backend["name"])
                if R.check(svc is not None, f"{label}: ingress host {rule['host']} -> unknown Service {backend['name']}"):
                    R.check(backend["port"].get("name") in {p.get("name") for p in svc["spec"]["ports"]},
                            f"{label}: ingress host {rule['host']} -> unknown port {backend['port']}")


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a set of labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}.get(e["operator"], False)
        if not ok:
            return False
    return True


def check_host_ports(label: str, docs: list[dict]) -> None:
    """Nothing on a node's network takes node_exporter's port, which kube-prometheus-stack's node-exporter holds."""
    for workload, template in pod_specs(docs):
        spec = template["spec"]
        for c in spec["containers"]:
            for p in c.get("ports", []):
                R.check(p.get("hostPort") != NODE_EXPORTER_PORT
                        and not (spec.get("hostNetwork") and p["containerPort"] == NODE_EXPORTER_PORT),
                        f"{label}: {workload['kind']}/{workload['metadata']['name']} takes the node's port "
                        f"{NODE_EXPORTER_PORT}, node-exporter's")


def check_monitors(label: str, docs: list[dict]) -> None:
    """The operators' scrape objects reach every GoMon program on a named port, and nothing else."""
    services = [d for d in docs if d["kind"] == "Service"]
    templates = {w["metadata"]["name"]: t for w, t in pod_specs(docs)}
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "VMServiceScrape", "PodMonitor", "VMPodScrape")]
    reached = set()
    for m in monitors:
        name = f"{label}: {m['kind']}/{m['metadata']['name']}"
        spec = m["spec"]
        R.check(spec.get("jobLabel") == "app.kubernetes.io/name", f"{name}: job must be app.kubernetes.io/name, "
                "as in deploy/k8s/infra/scrape.yml, so that the rules' selectors hold")
        if m["kind"] in ("ServiceMonitor", "VMServiceScrape"):
            targets = [s for s in services if selects(spec["selector"], s["metadata"].get("labels", {}))]
            ports = [{p.get("name") for p in s["spec"]["ports"]} for s in targets]
            endpoints = spec["endpoints"]
        else:
            targets = [t for t in templates.values() if selects(spec["selector"], t["metadata"].get("labels", {}))]
            ports = [{p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])} for t in targets]
            endpoints = spec["podMetricsEndpoints"]
        names = [t["metadata"].get("labels", {}).get("app.kubernetes.io/name") for t in targets]
        R.check(bool(targets), f"{name} selects nothing")
        for e in endpoints:
            R.check(all(e.get("port") in p for p in ports), f"{name}: port {e.get('port')} is not on {names}")
            if "agent" in names:
                drops = e.get("metricRelabelings", []) + e.get("metricRelabelConfigs", [])
                R.check(any(r.get("action") == "drop" and r.get("regex") == "(node|gomon)_.*" for r in drops),
                        f"{name}: the agent's host series must be dropped (they arrive through Kafka)")
        reached |= set(names)
    if monitors:
        R.check(reached == set(GOMON_ROLES), f"{label}: the scrape objects reach {sorted(reached)}, not every role")


# ---------------------------------------------------------------------------------------------------------------
# NetworkPolicies: every flow the architecture has is allowed, and no other.

# (source, destination, port): pods by app.kubernetes.io/name; `ingress-nginx` the ingress controller (its
# namespace), `kube-dns` the cluster's DNS, `outside` an address beyond the pod network (the API server, Slack),
# `node` a pod on a node's network (the agent).
FLOWS = {
    *{(src, "kafka", 9092) for src in ("agent", "aggregator", "kafka", "kafka-setup")}, ("kafka", "kafka", 9093),
    *{(src, "jaeger", 4318) for src in ("agent", "aggregator", "alerting")},
    ("aggregator", "victoria-metrics", 8428), ("vmalert", "victoria-metrics", 8428),
    ("grafana", "victoria-metrics", 8428), ("grafana", "jaeger", 16686), ("grafana", "alerting", 8080),
    ("grafana", "outside", 443), ("alerting", "postgres", 5432), ("alerting", "outside", 443),
    ("alerting", "outside", 6443), ("filebeat", "logstash", 5044), ("logstash", "elasticsearch", 9200),
    ("kibana", "elasticsearch", 9200),
    *{("victoria-metrics", dst, port) for dst, port in (("alerting", 8080), ("aggregator", 9101), ("grafana", 3000),
                                                        ("vmalert", 8880), ("jaeger", 14269), ("agent", 9110),
                                                        ("outside", 443), ("outside", 6443))},
    *{("ingress-nginx", dst, port) for dst, port in (("alerting", 8080), ("grafana", 3000),
                                                     ("victoria-metrics", 8428), ("jaeger", 16686), ("kibana", 5601))},
}
# Ports open to any source: the agents reach them from the nodes' network (Kafka authenticates its clients).
OPEN_PORTS = {("kafka", 9092), ("jaeger", 4317), ("jaeger", 4318)}


class Endpoint:
    def __init__(self, name: str, namespace: str, labels: dict, ports: dict, pod_network: bool = True,
                 governed: bool = False) -> None:
        self.name, self.namespace, self.labels, self.ports = name, namespace, labels, ports
        self.pod_network, self.governed = pod_network, governed


def peer_matches(peer: dict, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return peer["ipBlock"]["cidr"] == "0.0.0.0/0" and not peer["ipBlock"].get("except")
    if not other.pod_network:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace}):
            return False
    elif other.namespace != "monitoring":
        return False
    return selects(peer.get("podSelector", {}), other.labels)


def port_matches(rule_ports: list[dict] | None, dst: Endpoint, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = dst.ports.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def allowed(policies: list[dict], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Kubernetes' NetworkPolicy semantics for one connection: the source's egress and the destination's ingress."""
    for end, other, kind, peers_key in ((src, dst, "Egress", "to"), (dst, src, "Ingress", "from")):
        if not end.governed:
            continue
        selecting = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                     and selects(p["spec"]["podSelector"], end.labels)]
        if not selecting:
            continue
        if not any((not rule.get(peers_key) or any(peer_matches(peer, other) for peer in rule[peers_key]))
                   and port_matches(rule.get("ports"), dst, port, protocol)
                   for p in selecting for rule in p["spec"].get(kind.lower(), [])):
            return False
    return True


def check_network_policies(label: str, docs: list[dict], infra: list[dict]) -> None:
    policies = [d for d in docs + infra if d["kind"] == "NetworkPolicy"]
    pods = []
    for workload, template in pod_specs(docs + infra):
        labels = template["metadata"].get("labels", {})
        ports = {p.get("name"): p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        host = bool(template["spec"].get("hostNetwork"))
        pods.append(Endpoint(labels.get("app.kubernetes.io/name", workload["metadata"]["name"]), "monitoring", labels,
                             ports, pod_network=not host, governed=not host))
    for pod in pods:
        R.check(pod.pod_network is False or "app.kubernetes.io/part-of" in pod.labels,
                f"{label}: pod {pod.name} lacks app.kubernetes.io/part-of, which the policies select")
    others = [Endpoint("ingress-nginx", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {}),
              Endpoint("outside", "", {}, {}, pod_network=False)]
    dns = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
    node = Endpoint("node", "", {}, {}, pod_network=False)
    sources = pods + others[:1] + [node]
    unrestricted = {"ingress-nginx", "node"} | {p.name for p in pods if not p.governed}
    destinations = pods + others
    got, want = set(), set()
    for src in sources:
        for dst in destinations:
            for port in sorted(set(dst.ports.values()) | ({443, 6443} if dst.name == "outside" else set())):
                if (src is dst and src.name != "kafka") or not (src.governed or dst.governed):
                    continue  # a pod to itself does not cross the network; nothing governs the others
                if allowed(policies, src, dst, port):
                    got.add((src.name, dst.name, port))
                if (src.name, dst.name, port) in FLOWS or (src.name in unrestricted and (dst.name, port) in OPEN_PORTS):
                    want.add((src.name, dst.name, port))
        if src.governed:
            for protocol in ("UDP", "TCP"):
                R.check(allowed(policies, src, dns, 53, protocol), f"{label}: {src.name} cannot resolve names ({protocol})")
    names = {p.name for p in pods}
    want = {f for f in want if {f[0], f[1]} - {"ingress-nginx", "outside", "node"} <= names}
    R.check(not (want - got), f"{label}: the NetworkPolicies block flows the architecture has: {sorted(want - got)}")
    R.check(not (got - want), f"{label}: the NetworkPolicies allow flows the architecture lacks: {sorted(got - want)}")


# Behind the production ingress, these Services authenticate every request themselves (API tokens; Grafana's users).
SELF_AUTHENTICATING = {"alerting", "grafana"}


def check_ingress_auth(label: str, docs: list[dict], secrets_dir: Path) -> None:
    """Nothing behind the ingress answers without authentication: a backend authenticates by itself, or the
    ingress asks for a user of an htpasswd Secret made by deploy/create-secrets.sh, whose password it accepts."""
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        annotations = ing["metadata"].get("annotations", {})
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                where = f"{label}: {rule['host']} -> {backend}"
                if backend in SELF_AUTHENTICATING:
                    continue
                secret = annotations.get("nginx.ingress.kubernetes.io/auth-secret")
                R.check(annotations.get("nginx.ingress.kubernetes.io/auth-type") == "basic" and secret is not None,
                        f"{where}: reachable without authentication")
                if secret is None:
                    continue
                secret_file = secrets_dir / f"{secret}.yaml"
                if not R.check(secret_file.exists(), f"{where}: Secret {secret} is not made by create-secrets.sh"):
                    continue
                data = {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(secret_file.read_text())["data"].items()}
                user, _, hashed = data.get("auth", "").partition(":")
                salt = hashed.split("$")[2] if hashed.count("$") == 3 else ""
                again = run(["openssl", "passwd", "-apr1", "-salt", salt, data.get("password", "")]).stdout.strip()
                R.check(user == data.get("user") and hashed.startswith("$apr1$") and again == hashed,
                        f"{where}: Secret {secret}'s auth does not accept its user and password")
    for workload, template in pod_specs(docs):
        if workload["metadata"]["name"] == "grafana":
            env = {e["name"]: e.get("value") for c in template["spec"]["containers"] for e in c.get("env", [])}
            R.check(str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false",
                    f"{label}: Grafana must not let anonymous users in")


def secrets_from_script(tmp: Path) -> tuple[dict[str, set[str]], Path]:
    """Runs deploy/create-secrets.sh in its offline mode; returns {secret: keys} and the directory of files."""
    out = tmp / "secrets"
    env = dict(os.environ, GOMON_SECRETS_DIR=str(out), SLACK_BOT_TOKEN="xoxb-deploy-check",
               SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/deploycheck")
    result = run(["bash", str(DEPLOY / "create-secrets.sh")], env=env)
    if not R.check(result.returncode == 0, f"deploy/create-secrets.sh failed: {result.stderr[-2000:]}"):
        return {}, out
    secrets, docs = {}, []
    for f in sorted(out.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        docs.append(doc)
        secrets[doc["metadata"]["name"]] = set(doc.get("data", {}))
        files = out / doc["metadata"]["name"]
        files.mkdir()
        for key, value in doc.get("data", {}).items():
            (files / key).write_bytes(base64.b64decode(value))
    kubernetes_validate("create-secrets.sh output", docs, tmp)
    # The certificates and keys: check_kafka_security and check_postgres_security.
    return secrets, out


def configmap_file(docs: list[dict], prefix: str, key: str) -> str | None:
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix + "-") and key in d.get("data", {}):
            return d["data"][key]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Grafana, vmalert, scrape configuration, logs, Terraform, ArgoCD, Dockerfile.

# Dashboards take the Prometheus-type datasource as this variable, so that any Grafana (the bundled one, or one
# of kube-prometheus-stack loading them through its sidecar) can show them on its own datasource.
DASHBOARD_DATASOURCE_VARIABLE = "datasource"
DASHBOARD_DATASOURCE = "${datasource}"
# The sidecar of the Grafana Helm chart and kube-prometheus-stack loads ConfigMaps with this label (its default).
DASHBOARD_SIDECAR_LABEL = ("grafana_dashboard", "1")
# What the GoMon Pipeline dashboard must show: agent batches published and failed, Kafka lag, aggregator
# throughput and retries, remote write latency, the dead-letter queue.
PIPELINE_METRICS = ("agent_batches_sent_total", "agent_batches_failed_total", "aggregator_consumer_lag",
                    "aggregator_samples_written_total", "aggregator_write_retries_total",
                    "aggregator_write_duration_seconds_bucket", "aggregator_dead_letter_messages_total")


def datasource_refs(node):
    """Every datasource a dashboard names (panels, targets, variables, annotations), as its uid or its string."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value.get("uid") if isinstance(value, dict) else value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def check_dashboard_configmaps(docs: list[dict], grafana: dict, path: str) -> None:
    """Every dashboard of deploy/grafana/dashboards ships, as it is, in a ConfigMap with the sidecar's label, and
    the bundled Grafana mounts such a ConfigMap where its dashboard provider reads."""
    files = {f.name: f.read_text() for f in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    key, value = DASHBOARD_SIDECAR_LABEL
    shipped: dict[str, str] = {}
    labelled = set()
    for d in docs:
        if d["kind"] != "ConfigMap" or not set(d.get("data", {})) & set(files):
            continue
        name = d["metadata"]["name"]
        if R.check(d["metadata"].get("labels", {}).get(key) == value,
                   f"grafana: dashboard ConfigMap {name} lacks the sidecar label {key}: \"{value}\""):
            labelled.add(name)
        shipped.update(d["data"])
    for fname, text in files.items():
        R.check(shipped.get(fname) == text, f"grafana: dashboard {fname} is not shipped as it is in a ConfigMap")
    volumes = {v["name"]: v for v in grafana["spec"].get("volumes", [])}
    mounted = [volumes.get(m["name"], {}).get("configMap", {}).get("name") for c in grafana["spec"]["containers"]
               for m in c["volumeMounts"] if m["mountPath"] == path]
    R.check(any(m in labelled for m in mounted),
            f"grafana: the bundled Grafana must mount a labelled dashboard ConfigMap at {path}, mounts {mounted}")


def grafana_expressions(grafana_docs: list[dict]) -> list[tuple[str, str]]:
    """Checks Grafana's provisioning; returns (where, PromQL) for every query in dashboards and alert rules."""
    exprs: list[tuple[str, str]] = []
    prov = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((prov / "datasources" / "victoriametrics.yaml").read_text())["datasources"]
    uids = {d["uid"] for d in datasources}
    R.check([d["type"] for d in datasources] == ["prometheus"] and datasources[0]["url"] == "http://victoria-metrics:8428",
            "grafana: one Prometheus-type datasource pointing at http://victoria-metrics:8428")
    provider = yaml.safe_load((prov / "dashboards" / "gomon.yaml").read_text())["providers"][0]
    grafana = next(t for d, t in pod_specs(grafana_docs) if d["metadata"]["name"] == "grafana")
    mounts = {m["mountPath"] for c in grafana["spec"]["containers"] for m in c["volumeMounts"]}
    R.check(provider["options"]["path"] in mounts, f"grafana: dashboards path {provider['options']['path']} not mounted")
    env = {e["name"] for c in grafana["spec"]["containers"] for e in c.get("env", [])}

    dashboards = {}
    for f in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        try:
            dashboards[f.name] = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            R.fail(f"grafana: {f.name} is not JSON: {e}")
    titles = {d["title"]: d for d in dashboards.values()}
    R.check(len({d["uid"] for d in dashboards.values()}) == len(dashboards), "grafana: dashboard uids must be unique")
    seed = titles.get("GoMon Alerting Service")
    if R.check(seed is not None, "grafana: dashboard 'GoMon Alerting Service' missing"):
        panels = {p["title"]: p for p in seed["panels"]}
        want = {"Active Alerts": "stat", "Alert Creation Rate": "timeseries", "Circuit Breaker State": "stat",
                "Slack Notification Success Rate": "timeseries", "API Processing Latency (p95)": "timeseries"}
        for title, kind in want.items():
            R.check(panels.get(title, {}).get("type") == kind, f"grafana: seed panel '{title}' ({kind}) missing")
        if "Active Alerts" in panels:
            R.check(len(panels["Active Alerts"]["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])) > 1,
                    "grafana: Active Alerts needs colour thresholds")
        if "Circuit Breaker State" in panels:
            texts = {o["text"] for m in panels["Circuit Breaker State"]["fieldConfig"]["defaults"].get("mappings", [])
                     for o in m.get("options", {}).values()}
            R.check({"CLOSED", "OPEN"} <= texts, "grafana: Circuit Breaker State must map 0/1 to CLOSED/OPEN")
        if "Slack Notification Success Rate" in panels:
            R.check(panels["Slack Notification Success Rate"]["fieldConfig"]["defaults"].get("unit") == "percent",
                    "grafana: Slack Notification Success Rate must be in percent")
    R.check(any("host" in d["title"].lower() for d in dashboards.values()), "grafana: host dashboard missing")

    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    pipeline = titles.get("GoMon Pipeline")
    if R.check(pipeline is not None, "grafana: dashboard 'GoMon Pipeline' missing"):
        queries = [t["expr"] for p in walk(pipeline["panels"]) for t in p.get("targets", [])]
        named = set().union(*map(metric_names, queries)) if queries else set()
        for metric in PIPELINE_METRICS:
            R.check(metric in named, f"grafana: GoMon Pipeline has no panel on {metric}")
        R.check(any(re.search(r"histogram_quantile\(\s*0\.\d+\s*,.*aggregator_write_duration_seconds_bucket", q)
                    for q in queries), "grafana: GoMon Pipeline needs remote write latency quantiles")

    for fname, d in dashboards.items():
        variables = d.get("templating", {}).get("list", [])
        selector = [v for v in variables if v["name"] == DASHBOARD_DATASOURCE_VARIABLE]
        R.check(len(selector) == 1 and selector[0].get("type") == "datasource" and selector[0].get("query") == "prometheus",
                f"grafana: {fname} needs the variable ${DASHBOARD_DATASOURCE_VARIABLE} of type datasource, "
                "query prometheus")
        for ref in datasource_refs(d):
            R.check(ref == DASHBOARD_DATASOURCE, f"grafana: {fname}: datasource {ref} is not the variable "
                    f"{DASHBOARD_DATASOURCE} (no fixed datasource uid in a dashboard)")
        for var in variables:
            if var.get("type") == "datasource":
                continue
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q or "")
            if R.check(m is not None, f"grafana: {fname} variable {var['name']}: unsupported query {q!r}"):
                exprs.append((f"{fname} variable ${var['name']} (label {m.group(2)})", m.group(1)))
        for p in walk(d.get("panels", [])):
            if p.get("type") == "row":
                continue
            R.check(p.get("datasource", {}).get("uid") == DASHBOARD_DATASOURCE,
                    f"grafana: {fname} panel '{p['title']}': datasource must be {DASHBOARD_DATASOURCE}")
            targets = p.get("targets", [])
            R.check(bool(targets), f"grafana: {fname} panel '{p['title']}' has no query")
            for t in targets:
                R.check(t.get("datasource", {}).get("uid") == DASHBOARD_DATASOURCE,
                        f"grafana: {fname} panel '{p['title']}' target {t.get('refId')}: datasource must be "
                        f"{DASHBOARD_DATASOURCE}")
                exprs.append((f"{fname} panel '{p['title']}' {t.get('refId')}", t["expr"]))
    check_dashboard_configmaps(grafana_docs, grafana, provider["options"]["path"])

    alerting = prov / "alerting"
    rules = yaml.safe_load((alerting / "rules.yaml").read_text())
    seen = {}
    for group in rules["groups"]:
        R.check(group.get("interval") == "1m", f"grafana: rule group {group['name']} must be evaluated every 1m")
        for rule in group["rules"]:
            seen[rule["title"]] = rule
            refs = {q["refId"]: q for q in rule["data"]}
            R.check(rule["condition"] in refs, f"grafana: rule {rule['title']}: condition {rule['condition']} undefined")
            for q in rule["data"]:
                model = q["model"]
                if q["datasourceUid"] == "__expr__":
                    R.check(model.get("expression") in refs, f"grafana: rule {rule['title']} {q['refId']}: bad input")
                    for cond in model.get("conditions", []):
                        R.check(cond["evaluator"]["type"] in THRESHOLD_TYPES,
                                f"grafana: rule {rule['title']}: threshold type {cond['evaluator']['type']}")
                else:
                    R.check(q["datasourceUid"] in uids, f"grafana: rule {rule['title']}: unknown datasource")
                    exprs.append((f"grafana rule '{rule['title']}' {q['refId']}", model["expr"]))
    want_rules = {
        "High Alert Creation Rate": ("rate(alerting_alerts_created_total[5m]) > 0.05", "2m", "warning"),
        "Slack Circuit Breaker Opened": ("alerting_circuit_breaker_state == 1", "1m", "critical"),
    }
    for title, (expr, for_, severity) in want_rules.items():
        rule = seen.get(title)
        if R.check(rule is not None, f"grafana: rule '{title}' missing"):
            queries = [q["model"].get("expr") for q in rule["data"]]
            R.check(expr in queries and rule["for"] == for_ and rule["labels"].get("severity") == severity,
                    f"grafana: rule '{title}' must be `{expr}` for {for_}, severity {severity}")
    contacts = yaml.safe_load((alerting / "contact-points.yaml").read_text())["contactPoints"]
    names = {c["name"] for c in contacts}
    R.check("slack-webhook" in names, "grafana: contact point slack-webhook missing")
    for c in contacts:
        for r in c["receivers"]:
            for var in re.findall(r"\$\{(\w+)\}", json.dumps(r["settings"])):
                R.check(var in env, f"grafana: contact point reads ${{{var}}}, not set in the Grafana container")
    policies = yaml.safe_load((alerting / "policies.yaml").read_text())["policies"][0]
    R.check(policies["receiver"] in names, "grafana: the root policy's receiver is not a contact point")
    timing = {tuple(r["object_matchers"][0]): (r["group_wait"], r["repeat_interval"], r["receiver"])
              for r in policies["routes"]}
    R.check(timing.get(("severity", "=", "critical")) == ("5s", "2h", "slack-webhook")
            and timing.get(("severity", "=", "warning")) == ("10s", "4h", "slack-webhook"),
            f"grafana: policies must be critical 5s/2h and warning 10s/4h to slack-webhook, are {timing}")
    return exprs


def vmalert_expressions(tmp: Path) -> list[tuple[str, str]]:
    rules = DEPLOY / "vmalert" / "rules.yml"
    result = run(["promtool", "check", "rules", str(rules)])
    R.check(result.returncode == 0, f"promtool check rules: {result.stdout}{result.stderr}")
    if shutil.which("vmalert"):
        result = run(["vmalert", "-dryRun", f"-rule={rules}", "-loggerLevel=ERROR"])
        R.check(result.returncode == 0, f"vmalert -dryRun: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    exprs, alerts = [], {}
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            alerts[rule.get("alert")] = rule
            exprs.append((f"vmalert {group['name']}/{rule.get('alert') or rule.get('record')}", rule["expr"]))
    for name, expr in (("HighAlertCreationRate", "rate(alerting_alerts_created_total[5m]) > 0.05"),
                       ("SlackCircuitBreakerOpened", "alerting_circuit_breaker_state == 1")):
        R.check(alerts.get(name, {}).get("expr") == expr, f"vmalert: rule {name} must be `{expr}`")
    exprs_text = " ".join(r["expr"] for r in alerts.values())
    for needed in ("gomon_filesystem_used_percent", "gomon_memory_used_percent", "node_time_seconds",
                   "aggregator_consumer_lag"):
        R.check(needed in exprs_text, f"vmalert: no rule on {needed}")
    return exprs


def check_scrape_config(infra: list[dict], tmp: Path) -> dict:
    text = configmap_file(infra, "victoria-metrics-scrape", "scrape.yml")
    if not R.check(text is not None, "infra: ConfigMap victoria-metrics-scrape with scrape.yml missing"):
        return {}
    path = tmp / "scrape-rendered.yml"
    path.write_text(text)
    result = run(["victoria-metrics", "-dryRun", f"-promscrape.config={path}", "-loggerLevel=ERROR"])
    R.check(result.returncode == 0, f"victoria-metrics -dryRun rejects the scrape configuration: {result.stderr[-2000:]}")
    return yaml.safe_load(text)


def check_logs(base: list[dict]) -> None:
    filebeat = yaml.safe_load((DEPLOY / "elk" / "filebeat.yml").read_text())
    services = {d["metadata"]["name"]: d for d in base if d["kind"] == "Service"}
    host, _, port = filebeat["output.logstash"]["hosts"][0].partition(":")
    R.check(host in services and int(port) in [p["port"] for p in services[host]["spec"]["ports"]],
            f"filebeat: output {host}:{port} is not a Service port")
    paths = [p for i in filebeat["filebeat.inputs"] for p in i["paths"]]
    for role in GOMON_ROLES:
        R.check(any(p.endswith(f"_{role}-*_*/{role}/*.log") for p in paths), f"filebeat: must read {role}'s logs")
    R.check(all(p.startswith("/var/log/pods/${POD_NAMESPACE}_") for p in paths),
            f"filebeat: reads only GoMon's containers in its namespace, not {paths}")
    daemonsets = [t for w, t in pod_specs(base) if w["kind"] == "DaemonSet" and w["metadata"]["name"] == "filebeat"]
    if R.check(len(daemonsets) == 1, "filebeat: a DaemonSet named filebeat is needed"):
        spec = daemonsets[0]["spec"]
        host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
        R.check(list(host_paths.values()) == ["/var/log/pods"], f"filebeat: mounts host paths {host_paths}")
        mounts = [m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] in host_paths]
        R.check(all(m.get("readOnly") for m in mounts), "filebeat: /var/log/pods must be mounted read-only")
        R.check(spec["securityContext"].get("runAsGroup") == 0,
                "filebeat: the kubelet's log files are root:root 0640: it reads them through group 0, as non-root")
    pipeline = (DEPLOY / "elk" / "logstash" / "gomon.conf").read_text()
    code = re.sub(r'"(?:[^"\\]|\\.)*"|#.*', "", pipeline)
    R.check(code.count("{") == code.count("}") and code.count("[") == code.count("]"),
            "logstash: unbalanced braces in gomon.conf")
    R.check(re.search(r"beats\s*\{\s*port\s*=>\s*" + port, pipeline) is not None,
            f"logstash: beats input must listen on {port}")
    es = re.search(r'hosts\s*=>\s*\["http://([\w-]+):(\d+)"\]', pipeline)
    R.check(es is not None and es.group(1) in services, "logstash: Elasticsearch output is not a Service")


def check_terraform(tmp: Path) -> None:
    tf = DEPLOY / "terraform"
    files = sorted(tf.glob("*.tf"))
    if not R.check(bool(files), "terraform: no .tf files"):
        return
    import hcl2

    parsed = {}
    for f in files:
        try:
            with f.open() as fh:
                parsed[f.name] = hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - any parser error is a failure to report
            R.fail(f"terraform: {f.name} does not parse: {e}")
    text = "".join(f.read_text() for f in files)
    for path in re.findall(r'"\$\{path\.module\}/([^"$]+)"', text):
        R.check((tf / path).exists(), f"terraform: {path} (relative to deploy/terraform) does not exist")
    if shutil.which("terraform"):
        result = run(["terraform", "fmt", "-check", "-diff", "-recursive", str(tf)])
        R.check(result.returncode == 0, f"terraform fmt -check: files are not formatted:\n{result.stdout[-3000:]}")
        work = tmp / "terraform"
        shutil.copytree(tf, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
        init = run(["terraform", f"-chdir={work}", "init", "-backend=false", "-input=false", "-no-color"],
                   timeout=180, env=dict(os.environ, TF_IN_AUTOMATION="1"))
        if init.returncode == 0:
            result = run(["terraform", f"-chdir={work}", "validate", "-no-color"])
            R.check(result.returncode == 0, f"terraform validate: {result.stdout}{result.stderr}")
        else:
            R.note("terraform validate skipped: `terraform init` cannot download the providers here "
                   f"({next((l.strip() for l in init.stderr.splitlines() if 'could not connect' in l or 'Error' in l), 'init failed')[:100]}); "
                   "the files were parsed with python-hcl2 and checked with terraform fmt")
    else:
        R.note("terraform not installed: files parsed with python-hcl2 only")


def check_argocd(tmp: Path) -> None:
    apps = sorted((DEPLOY / "argocd").rglob("*.yaml"))
    branches, others = set(), []
    for f in apps:
        for doc in load_yaml_docs(f.read_text()):
            if doc.get("kind") != "Application":
                others.append(doc)
                continue
            src, dest = doc["spec"]["source"], doc["spec"]["destination"]
            R.check(doc["apiVersion"] == "argoproj.io/v1alpha1", f"argocd: {f.name}: apiVersion")
            R.check((ROOT / src["path"] / "kustomization.yaml").exists(),
                    f"argocd: {f.name}: source.path {src['path']} is not a kustomization")
            R.check(dest.get("namespace") == "monitoring", f"argocd: {f.name}: destination namespace")
            branches.add(src["targetRevision"])
    R.check("main" in branches and len(branches) >= 2, f"argocd: applications for main and a branch, have {branches}")
    if others:
        kubernetes_validate("deploy/argocd", others, tmp)


def check_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    R.check(len(stages) >= 2, "Dockerfile: must be multi-stage")
    R.check(re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M) is not None, "Dockerfile: must run as a non-root USER")
    R.check(re.search(r'^ENTRYPOINT\s+\["/usr/local/bin/gomon"\]', text, re.M) is not None,
            "Dockerfile: ENTRYPOINT must be gomon")
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s", text, re.M):
        R.check((ROOT / src).exists(), f"Dockerfile: COPY {src}: no such path")


# ---------------------------------------------------------------------------------------------------------------
# Running the programs.

class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GOMON_")}
        full_env.update(env or {})
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=self.tmp,
                                start_new_session=True)
        self.children.append((name, proc))
        return proc

    def log(self, name: str, lines: int = 25) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(self.children):
            self.stop(proc)


def http_get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def http_send(method: str, url: str, body: dict | None, token: str | None = None,
              headers: dict | None = None) -> tuple[int, str]:
    """A JSON request with `Authorization: Bearer <token>`, or with `headers` as they are."""
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(what: str, predicate, timeout: float, procs: Processes | None = None, name: str = "") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if procs and name:
            proc = dict(procs.children).get(name)
            if proc is not None and proc.poll() is not None:
                R.fail(f"{what}: {name} exited with status {proc.returncode}:\n{procs.log(name)}")
                return False
        time.sleep(0.5)
    R.fail(f"{what}: not within {timeout:.0f}s" + (f"; {name} log:\n{procs.log(name)}" if procs and name else ""))
    return False


def accepts_config(procs: Processes, gomon: str, role: str, config: str, env: dict, port: int) -> None:
    """Starts `gomon ROLE` with the rendered configuration file and the container's environment; it must come up
    (answer /health/live) instead of exiting on a configuration error."""
    path = procs.tmp / f"rendered-{role}.yaml"
    path.write_text(config)
    name = f"{role}-rendered-config"
    proc = procs.start(name, [gomon, role, "--config", str(path)], env)
    ok = wait_for(f"gomon {role} with the rendered ConfigMap", lambda: http_get(f"http://127.0.0.1:{port}/health/live")[0] == 200,
                  30, procs, name)
    R.check(ok, f"gomon {role} does not start with deploy's configuration")
    procs.stop(proc)


def container_env(docs: list[dict], role: str) -> dict[str, str]:
    """The literal GOMON_* environment variables the rendered manifests give a role's container."""
    env = {}
    for _, template in pod_specs(docs):
        for c in template["spec"]["containers"]:
            if c.get("args", [None])[0] == role:
                env.update({e["name"]: e["value"] for e in c.get("env", []) if e["name"].startswith("GOMON_")
                            and "value" in e})
    return env


def grafana_alertmanager_datasource(docs: list[dict], secrets_dir: Path) -> tuple[str, dict[str, str]] | None:
    """Checks Grafana's Alertmanager datasource as the rendered manifests provision it: Prometheus flavour, Grafana's
    own alerts kept out, URL at the alerting Service's port that `gomon alerting` listens on, bearer token from a
    variable the Grafana container reads from a Secret. Returns the URL's path and the headers Grafana sends, with
    the token of the check's Secrets."""
    text = configmap_file(docs, "grafana-datasources", "alertmanager.yaml")
    if not R.check(text is not None, "grafana: ConfigMap grafana-datasources has no alertmanager.yaml"):
        return None
    sources = [d for d in yaml.safe_load(text)["datasources"] if d["type"] == "alertmanager"]
    if not R.check(len(sources) == 1, "grafana: alertmanager.yaml must provision one datasource of type alertmanager"):
        return None
    ds, jd = sources[0], sources[0].get("jsonData", {})
    R.check(jd.get("implementation") == "prometheus" and jd.get("handleGrafanaManagedAlerts") is False
            and ds.get("access", "proxy") == "proxy",
            f"grafana: Alertmanager datasource: implementation prometheus, handleGrafanaManagedAlerts false, access "
            f"proxy; has {jd}")
    url = urllib.parse.urlsplit(ds["url"])
    service = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == url.hostname), None)
    alerting = next((t for _, t in pod_specs(docs) for c in t["spec"]["containers"]
                     if c.get("args", [None])[0] == "alerting"), None)
    if R.check(service is not None and alerting is not None,
               f"grafana: Alertmanager datasource URL {ds['url']}: no Service {url.hostname} or no alerting pod"):
        R.check(service["spec"]["selector"].items() <= alerting["metadata"]["labels"].items(),
                f"grafana: Alertmanager datasource URL {ds['url']}: Service {url.hostname} does not select alerting")
        port = next((p for p in service["spec"]["ports"] if p["port"] == (url.port or 80)), None)
        container = next(c for c in alerting["spec"]["containers"] if c.get("args", [None])[0] == "alerting")
        target = port and next((p["containerPort"] for p in container.get("ports", [])
                                if port["targetPort"] in (p.get("name"), p["containerPort"])), None)
        config = configmap_file(docs, "gomon-alerting-config", "gomon.yaml") or "{}"
        listen = str(yaml.safe_load(config)["alerting"].get("listen", ""))
        R.check(target is not None and listen.endswith(f":{target}"),
                f"grafana: Alertmanager datasource URL {ds['url']}: port {url.port} does not reach the alerting "
                f"service's listen address {listen}")
    value = ds.get("secureJsonData", {}).get("httpHeaderValue1", "")
    m = re.fullmatch(r"Bearer \$\{(\w+)\}", value)
    if not R.check(jd.get("httpHeaderName1") == "Authorization" and m is not None,
                   "grafana: Alertmanager datasource: header Authorization: Bearer ${VARIABLE} expected"):
        return None
    grafana = next(t for d, t in pod_specs(docs) if d["metadata"]["name"] == "grafana")
    ref = next((e.get("valueFrom", {}).get("secretKeyRef") for c in grafana["spec"]["containers"]
                for e in c.get("env", []) if e["name"] == m.group(1)), None)
    if not R.check(ref is not None, f"grafana: ${m.group(1)} of the Alertmanager datasource is not read from a Secret"):
        return None
    path = secrets_dir / ref["name"] / ref["key"]
    if not R.check(path.exists(), f"grafana: Secret {ref['name']} key {ref['key']} is not made by create-secrets.sh"):
        return None
    return url.path.rstrip("/"), {"Authorization": value.replace(f"${{{m.group(1)}}}", path.read_text().strip())}


def grafana_alertmanager_requests(api: str, datasource: tuple[str, dict[str, str]]) -> None:
    """The requests Grafana's Alertmanager datasource makes (health test, alert list and groups, silences: list,
    create, expire), sent to the running `gomon alerting` with the datasource's path and header; the alerts the
    live check created carry the label check=deploy."""
    path, headers = datasource
    base = api + path
    R.check(http_get(base + "/api/v2/status")[0] == 401, "alerting: /api/v2/status answers without a token")

    def get(rel: str):
        status, body = http_get(base + rel, headers)
        R.check(status == 200, f"Grafana's Alertmanager datasource: GET {rel} answered {status}: {body[:300]}")
        return json.loads(body) if status == 200 else None

    status = get("/api/v2/status")
    if status is not None:
        R.check(status.get("cluster", {}).get("status") and "version" in status.get("versionInfo", {})
                and "route:" in status.get("config", {}).get("original", ""),
                f"Grafana's Alertmanager datasource: /api/v2/status is not Alertmanager's: {str(status)[:300]}")
    query = "?" + urllib.parse.urlencode({"filter": 'check="deploy"', "active": "true", "silenced": "true",
                                          "inhibited": "true"})
    alerts = get("/api/v2/alerts" + query) or []
    R.check(bool(alerts) and all(a["labels"].get("check") == "deploy" and a["status"]["state"] == "active"
                                 for a in alerts),
            f"Grafana's Alertmanager datasource: /api/v2/alerts must list the check's alerts, active: {str(alerts)[:300]}")
    groups = get("/api/v2/alerts/groups" + query) or []
    R.check(sorted(a["fingerprint"] for g in groups for a in g["alerts"]) == sorted(a["fingerprint"] for a in alerts)
            and all(g["receiver"]["name"] for g in groups),
            f"Grafana's Alertmanager datasource: /api/v2/alerts/groups must group the same alerts: {str(groups)[:300]}")
    R.check(isinstance(get("/api/v2/silences"), list), "Grafana's Alertmanager datasource: /api/v2/silences not a list")

    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))  # noqa: E731
    status, body = http_send("POST", base + "/api/v2/silences", {
        "matchers": [{"name": "check", "value": "deploy", "isRegex": False, "isEqual": True}],
        "startsAt": stamp(now), "endsAt": stamp(now + 3600), "createdBy": "admin", "comment": "deploy check"},
        headers=headers)
    if not R.check(status == 200 and "silenceID" in body,
                   f"Grafana's Alertmanager datasource: POST /api/v2/silences answered {status}: {body[:300]}"):
        return
    silence = json.loads(body)["silenceID"]

    def muted(state: str):
        def check() -> bool:
            status, body = http_get(base + "/api/v2/alerts" + query, headers)
            listed = json.loads(body) if status == 200 else []
            return bool(listed) and all(a["status"]["state"] == state
                                        and (silence in a["status"]["silencedBy"]) == (state == "suppressed")
                                        for a in listed)
        return check
    wait_for("the silence set through Grafana's datasource mutes the check's alerts", muted("suppressed"), 10)
    listed = [s for s in get("/api/v2/silences") or [] if s["id"] == silence]
    R.check(len(listed) == 1 and listed[0]["createdBy"] == "grafana" and listed[0]["status"]["state"] == "active",
            f"Grafana's Alertmanager datasource: the silence must be active and made by the token `grafana`: {listed}")
    status, body = http_send("DELETE", f"{base}/api/v2/silence/{silence}", None, headers=headers)
    R.check(status == 200, f"Grafana's Alertmanager datasource: DELETE /api/v2/silence/{silence} answered {status}: "
            f"{body[:300]}")
    R.check((get(f"/api/v2/silence/{silence}") or {}).get("status", {}).get("state") == "expired",
            "Grafana's Alertmanager datasource: the deleted silence must be expired")
    wait_for("the expired silence no longer mutes the check's alerts", muted("active"), 10)


def live_check(args, tmp: Path, rendered: dict[str, list[dict]], secrets_dir: Path, scrape: dict,
               exprs: list[tuple[str, str]]) -> None:
    procs = Processes(tmp)
    try:
        _live_check(args, procs, rendered, secrets_dir, scrape, exprs)
    finally:
        procs.stop_all()


def _live_check(args, procs: Processes, rendered, secrets_dir: Path, scrape: dict, exprs) -> None:
    tmp = procs.tmp
    gomon = str(Path(args.gomon).resolve())
    has_aggregator = run([gomon, "aggregator", "--help"]).returncode == 0
    tansu = shutil.which("tansu") or (str(Path.home() / ".cargo/bin/tansu")
                                      if (Path.home() / ".cargo/bin/tansu").exists() else None)
    dead = free_port()  # nothing listens there
    production, local = rendered["deploy/k8s/overlays/production"], rendered["deploy/k8s/overlays/local"]

    # The configuration files of the ConfigMaps, as the pods get them.
    configs = {role: configmap_file(local, f"gomon-{role}-config", "gomon.yaml") for role in GOMON_ROLES}
    for role, text in configs.items():
        if R.check(text is not None, f"local overlay: ConfigMap gomon-{role}-config with gomon.yaml missing"):
            R.check(list(yaml.safe_load(text)) == [role], f"gomon-{role}-config: must hold only the `{role}:` section")
    port = free_port()
    accepts_config(procs, gomon, "agent", configs["agent"] or "", {
        **container_env(production, "agent"), "NODE_NAME": "deploy-check", "GOMON_AGENT__PROC_ROOT": "/proc",
        "GOMON_AGENT__SYS_ROOT": "/sys", "GOMON_AGENT__ROOT_FS": "/", "GOMON_AGENT__LISTEN": f"127.0.0.1:{port}",
        "GOMON_AGENT__KAFKA__BROKERS": f"127.0.0.1:{dead}", **kafka_tls_env(production, "agent", secrets_dir)}, port)
    if has_aggregator:
        port = free_port()
        accepts_config(procs, gomon, "aggregator", configs["aggregator"] or "", {
            **container_env(production, "aggregator"), "GOMON_AGGREGATOR__LISTEN": f"127.0.0.1:{port}",
            "GOMON_AGGREGATOR__KAFKA__BROKERS": f"127.0.0.1:{dead}", **kafka_tls_env(production, "aggregator", secrets_dir),
            "GOMON_AGGREGATOR__REMOTE_WRITE__URL": f"http://127.0.0.1:{dead}/api/v1/write"}, port)
    else:
        R.note("gomon has no aggregator role yet: its configuration and aggregator_* metrics are not checked")

    # VictoriaMetrics, scraping our programs every 2 s with the deployment's relabelling.
    ports = {"vm": free_port(), "alerting": free_port(), "agent": free_port(), "aggregator": free_port(),
             "kafka": free_port()}
    relabel = scrape["scrape_configs"][0].get("metric_relabel_configs", [])
    jobs = ["alerting", "agent"] + (["aggregator"] if has_aggregator else [])
    pipeline = has_aggregator and tansu is not None
    scrape_config = {"global": {"scrape_interval": "2s"}, "scrape_configs": [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{ports[job]}"]}],
         # Without the aggregator the host series can only come from the agent's /metrics.
         **({"metric_relabel_configs": relabel} if pipeline else {})} for job in jobs]}
    (tmp / "scrape.yml").write_text(yaml.safe_dump(scrape_config))
    vm_url = f"http://127.0.0.1:{ports['vm']}"
    procs.start("victoria-metrics", ["victoria-metrics", f"-storageDataPath={tmp}/vm-data",
                                     f"-httpListenAddr=127.0.0.1:{ports['vm']}", f"-promscrape.config={tmp}/scrape.yml",
                                     "-search.latencyOffset=1s", "-search.disableCache", "-loggerLevel=WARN"])
    if not wait_for("VictoriaMetrics ready", lambda: http_get(vm_url + "/health")[0] == 200, 30, procs, "victoria-metrics"):
        return

    # The alerting service with the deployment's configuration file and the Secret's files.
    secret = tmp / "gomon-alerting"
    secret.mkdir()
    (secret / "database-url").write_text(args.database_url)
    token = "deploy-check-write-token"
    # The Secret's tokens (Grafana's among them), and one for the check's own requests.
    tokens = yaml.safe_load((secrets_dir / "gomon-alerting" / "tokens.yaml").read_text())
    (secret / "tokens.yaml").write_text(yaml.safe_dump(tokens + [{"name": "deploy-check", "token": token,
                                                                   "access": "write"}]))
    shutil.copy(secrets_dir / "gomon-alerting" / "slack-bot-token", secret / "slack-bot-token")
    config = tmp / "alerting.yaml"
    config.write_text((configs["alerting"] or "").replace("/var/run/secrets/gomon", str(secret)))
    procs.start("alerting", [gomon, "alerting", "--config", str(config)], {
        **container_env(production, "alerting"), "GOMON_ALERTING__LISTEN": f"127.0.0.1:{ports['alerting']}",
        # Slack is "down": deliveries fail, the breaker opens, the notification metrics move.
        # No Kubernetes API server here: the pod watcher stays off (its keys are still checked).
        "GOMON_ALERTING__KUBERNETES__ENABLED": "false",
        "GOMON_ALERTING__SLACK__API_URL": f"http://127.0.0.1:{dead}", "GOMON_ALERTING__OUTBOX__MIN_BACKOFF": "100ms",
        "GOMON_ALERTING__OUTBOX__MAX_BACKOFF": "500ms"})
    api = f"http://127.0.0.1:{ports['alerting']}"
    if not wait_for("gomon alerting ready", lambda: http_get(api + "/health/ready")[0] == 200, 60, procs, "alerting"):
        return
    status, _ = http_get(api + "/api/v1/alerts")
    R.check(status == 401, f"alerting, behind the production ingress: GET /api/v1/alerts without a token answered {status}")
    created = []
    for i in range(6):
        status, body = http_send("POST", api + "/api/v1/alerts", {
            "source": "deploy-check", "severity": "P1" if i % 2 else "P3", "title": f"Deploy check alert {i}",
            "namespace": "monitoring", "labels": {"check": "deploy"}}, token)
        if R.check(status == 201, f"POST /api/v1/alerts answered {status}: {body[:300]}"):
            created.append(json.loads(body)["id"])
    if created:
        http_send("PUT", f"{api}/api/v1/alerts/{created[0]}/acknowledge", None, token)
        http_send("PUT", f"{api}/api/v1/alerts/{created[1]}/resolve", None, token)
        http_get(f"{api}/api/v1/alerts?status=firing", {"Authorization": f"Bearer {token}"})
    datasource = grafana_alertmanager_datasource(local, secrets_dir)
    if datasource:
        grafana_alertmanager_requests(api, datasource)

    # The broker, the agent publishing to it, and the aggregator writing what it consumes to VictoriaMetrics.
    if tansu:
        kafka = f"127.0.0.1:{ports['kafka']}"
        procs.start("tansu", [tansu, "broker", "--listener-url", f"tcp://{kafka}", "--advertised-listener-url",
                              f"tcp://{kafka}", "--storage-engine", "memory://tansu/"])

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ports["kafka"])) == 0
        wait_for("tansu listening", listening, 30, procs, "tansu")
    else:
        kafka = f"127.0.0.1:{dead}"
        R.note("tansu not installed: the agent publishes nowhere and the aggregator is not fed")
    procs.start("agent", [gomon, "agent"], {
        "NODE_NAME": "deploy-check", "GOMON_AGENT__LISTEN": f"127.0.0.1:{ports['agent']}",
        "GOMON_AGENT__INTERVAL": "2s", "GOMON_AGENT__KAFKA__BROKERS": kafka, "GOMON_AGENT__KAFKA__CREATE_TOPIC": "true",
        "GOMON_AGENT__KAFKA__DELIVERY_TIMEOUT": "5s"})
    if has_aggregator:
        procs.start("aggregator", [gomon, "aggregator"], {
            "GOMON_AGGREGATOR__LISTEN": f"127.0.0.1:{ports['aggregator']}", "GOMON_AGGREGATOR__KAFKA__BROKERS": kafka,
            "GOMON_AGGREGATOR__REMOTE_WRITE__URL": f"{vm_url}/api/v1/write"})

    def names() -> set[str]:
        status, body = http_get(vm_url + "/api/v1/label/__name__/values")
        return set(json.loads(body)["data"]) if status == 200 else set()

    needed = {"alerting_alerts_created_total", "alerting_http_request_duration_seconds_bucket",
              "agent_batches_sent_total", "gomon_cpu_usage_percent", "node_time_seconds"}
    if has_aggregator:
        needed |= {"aggregator_messages_consumed_total", "aggregator_samples_written_total"}
    if not wait_for(f"series in VictoriaMetrics ({', '.join(sorted(needed))})", lambda: needed <= names(), 120,
                    procs, "aggregator" if pipeline else "agent"):
        R.note(f"missing: {sorted(needed - names())}")
        return
    if pipeline:
        # Host series arrive only through Kafka and the aggregator (the agent's job drops them when scraped).
        status, body = http_get(vm_url + "/api/v1/series?" + urllib.parse.urlencode(
            {"match[]": 'gomon_cpu_usage_percent{host="deploy-check"}'}))
        R.check(status == 200 and json.loads(body)["data"] and all(s.get("job") != "agent" for s in json.loads(body)["data"]),
                "host series must reach VictoriaMetrics through the aggregator, not the agent's scrape")
    time.sleep(args.settle)  # a few more scrapes, so that rate() has points to work with

    available = names()
    substitutions = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$host": ".*"}
    empty, checked = [], 0
    for where, expr in exprs:
        query = expr
        for var, value in substitutions.items():
            query = query.replace(var, value)
        R.check("$" not in re.sub(r"\{\{[^}]*\}\}", "", query), f"{where}: unknown variable in `{expr}`")
        status, body = http_get(vm_url + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        result = json.loads(body) if body.startswith("{") else {}
        if not R.check(status == 200 and result.get("status") == "success",
                       f"{where}: `{query}` fails in VictoriaMetrics: {status} {body[:300]}"):
            continue
        checked += 1
        if not result["data"]["result"]:
            empty.append(where)
        for name in sorted(metric_names(query)):
            if name.startswith("aggregator_") and not has_aggregator:
                continue
            R.check(name in available, f"{where}: metric {name} does not exist (nobody exports it)")
    R.note(f"{checked} PromQL expressions ran in VictoriaMetrics; {len(available)} metric names there"
           + (f"; {len(empty)} returned no series now (thresholds not crossed, or counters not moving): "
              + ", ".join(empty) if empty else ""))
    R.note("pipeline: agent -> tansu -> aggregator -> VictoriaMetrics remote write" if pipeline
           else "host series scraped from the agent's /metrics (no aggregator or no broker)")


# ---------------------------------------------------------------------------------------------------------------
# Kafka and PostgreSQL access: mutual TLS and least-privilege ACLs for every Kafka client; an application role
# over verified TLS for the alerting service.

# The Kafka clients (the role whose container runs them) and their principals, User:<certificate CN>.
KAFKA_CLIENTS = {"agent": "User:gomon-agent", "aggregator": "User:gomon-aggregator"}
KAFKA_SUPER_USERS = {"User:gomon-kafka-broker", "User:gomon-kafka-admin"}
# Every ACL, exactly (principal, operation, resource type, literal name): what the programs do and nothing more.
KAFKA_ACLS = {
    ("User:gomon-agent", "Write", "topic", "gomon.metrics"),
    ("User:gomon-aggregator", "Read", "topic", "gomon.metrics"),
    ("User:gomon-aggregator", "Read", "group", "gomon-aggregator"),
    ("User:gomon-aggregator", "Write", "topic", "gomon.metrics.dead-letter"),
}
KAFKA_TOPICS = {("gomon.metrics", 3, 3), ("gomon.metrics.dead-letter", 3, 3)}
POSTGRES_SERVICE_NAMES = {"postgres", "postgres.monitoring.svc", "postgres.monitoring.svc.cluster.local"}


def openssl(*args: str) -> subprocess.CompletedProcess:
    return run(["openssl", *args])


def cert_subject(cert: Path) -> str:
    """The certificate's subject as an RFC 2253 string (what Kafka's principal mapping rules see)."""
    out = openssl("x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253").stdout.strip()
    return out.removeprefix("subject=").strip()


def cert_verifies(label: str, cert: Path, ca: Path, purposes: tuple[str, ...]) -> None:
    """`openssl verify` of CERT against CA alone, for each TLS purpose (sslserver, sslclient)."""
    for purpose in purposes:
        result = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(ca), str(cert))
        R.check(result.returncode == 0 and result.stdout.strip().endswith(": OK"),
                f"{label}: {cert.parent.name}/{cert.name} does not verify against {ca.parent.name}/{ca.name} "
                f"for {purpose}: {(result.stdout + result.stderr).strip()[:300]}")


def key_matches(label: str, cert: Path, key: Path) -> None:
    cert_pub = openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout
    key_pub = openssl("pkey", "-in", str(key), "-pubout").stdout
    R.check(bool(cert_pub) and cert_pub == key_pub, f"{label}: {key.parent.name}/{key.name} is not the key of {cert.name}")
    R.check(key.read_text().startswith("-----BEGIN PRIVATE KEY-----"),
            f"{label}: {key.parent.name}/{key.name} must be an unencrypted PKCS#8 PEM key")


def find_object(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def role_container(docs: list[dict], role: str) -> tuple[dict, dict] | None:
    """(pod template, container) of the GoMon container running ROLE."""
    for _, template in pod_specs(docs):
        for c in template["spec"]["containers"]:
            if c.get("args", [None])[0] == role:
                return template, c
    return None


def mounted_secret(template: dict, container: dict, path: str) -> tuple[str, str] | None:
    """(Secret, key) whose file the container sees at PATH, or None when no Secret volume puts one there."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    for m in container.get("volumeMounts", []):
        prefix = m["mountPath"].rstrip("/") + "/"
        secret = volumes.get(m["name"], {}).get("secret")
        if secret is None or not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        items = secret.get("items")
        key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
        return (secret["secretName"], key) if key else None
    return None


def pod_secrets(template: dict) -> set[str]:
    return {v["secret"]["secretName"] for v in template["spec"].get("volumes", []) if "secret" in v} | {
        e["valueFrom"]["secretKeyRef"]["name"] for c in template["spec"]["containers"] for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})}


def kafka_client_files(docs: list[dict], role: str, secrets_dir: Path) -> dict[str, Path]:
    """The TLS files of ROLE's Kafka client (`ca_file`, `cert_file`, `key_file` of its rendered configuration) as
    files of deploy/create-secrets.sh's output, through the Secret volumes of its container."""
    found = role_container(docs, role)
    text = configmap_file(docs, f"gomon-{role}-config", "gomon.yaml")
    if found is None or text is None:
        return {}
    tls = (yaml.safe_load(text)[role].get("kafka") or {}).get("tls") or {}
    files = {}
    for key in ("ca_file", "cert_file", "key_file"):
        source = mounted_secret(*found, tls[key]) if tls.get(key) else None
        if source:
            files[key] = secrets_dir / source[0] / source[1]
    return files


def script_default(script: str, variable: str) -> str | None:
    """The default of `${VARIABLE:-default}` in a shell script."""
    m = re.search(r"\$\{" + variable + r":-([^}]+)\}", script)
    return m.group(1) if m else None


def stub_kafka_bin(tmp: Path) -> tuple[Path, Path]:
    """Stand-ins for the Kafka distribution's scripts: each records its arguments (one line per call) and the
    server start copies its properties file, so that our scripts can run without Kafka."""
    bin_dir, calls = tmp / "kafka-bin", tmp / "kafka-calls"
    bin_dir.mkdir(exist_ok=True)
    for name in ("kafka-storage.sh", "kafka-server-start.sh", "kafka-broker-api-versions.sh", "kafka-topics.sh",
                 "kafka-acls.sh"):
        body = f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{calls}"\n'
        if name == "kafka-server-start.sh":
            body += f'cp "$1" "{tmp}/server.properties"\n'
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return bin_dir, calls


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def kafka_principal(rules: str, subject: str) -> str | None:
    """The principal Kafka's ssl.principal.mapping.rules give a certificate subject (RULE:pattern/replacement/,
    applied in order to the whole subject; DEFAULT keeps the subject); None when no rule applies (refused)."""
    for m in re.finditer(r"\s*(DEFAULT|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?))\s*(?:,|$)", rules):
        if m.group(1) == "DEFAULT":
            return f"User:{subject}"
        if re.fullmatch(m.group(2), subject):
            name = re.sub(m.group(2), re.sub(r"\$(\d)", r"\\\1", m.group(3)), subject, count=1)
            return "User:" + (name.lower() if m.group(4) == "L" else name.upper() if m.group(4) == "U" else name)
    return None


def check_kafka_security(label: str, docs: list[dict], secrets_dir: Path, tmp: Path) -> None:
    """The brokers require client certificates and authorise with ACLs; every client of the overlay presents its
    own certificate, signed by the Kafka CA, whose principal is the one its ACLs name; the ACLs the kafka-setup
    Job applies are exactly KAFKA_ACLS, and exactly what the clients' configurations need."""
    work = tmp / f"kafka-{label.replace('/', '_')}"
    work.mkdir()
    bin_dir, calls = stub_kafka_bin(work)
    ca = secrets_dir / "kafka-tls" / "ca.crt"

    # The brokers' properties, as kafka-start.sh writes them in kafka-0.
    kafka = find_object(docs, "StatefulSet", "kafka")
    script = configmap_file(docs, "kafka-config", "kafka-start.sh")
    if not R.check(kafka is not None and script is not None, f"{label}: Kafka StatefulSet or its kafka-start.sh missing"):
        return
    template = kafka["spec"]["template"]
    broker = template["spec"]["containers"][0]
    tls_dir = script_default(script, "KAFKA_TLS_DIR") or ""
    R.check(all(mounted_secret(template, broker, f"{tls_dir}/{k}") == ("kafka-tls", k) for k in ("ca.crt", "tls.crt", "tls.key")),
            f"{label}: the brokers must read ca.crt, tls.crt and tls.key of the Secret kafka-tls in {tls_dir}")
    (work / "kafka-start.sh").write_text(script)
    result = run(["sh", str(work / "kafka-start.sh")], env=dict(
        os.environ, HOSTNAME="kafka-0", POD_NAMESPACE="monitoring", KAFKA_CLUSTER_ID="check",
        KAFKA_TLS_DIR=str(secrets_dir / "kafka-tls"), KAFKA_WORK_DIR=str(work / "broker"), KAFKA_BIN=str(bin_dir)))
    rendered = work / "server.properties"
    if not R.check(result.returncode == 0 and rendered.exists(), f"{label}: kafka-start.sh fails: {result.stderr[-500:]}"):
        return
    props = properties(rendered.read_text())
    protocols = dict(p.split(":") for p in props.get("listener.security.protocol.map", "").split(","))
    listeners = {l.split("://")[0] for l in props.get("listeners", "").split(",")}
    R.check(bool(listeners) and all(protocols.get(l) == "SSL" for l in listeners),
            f"{label}: every broker listener must be SSL, are {props.get('listener.security.protocol.map')}")
    R.check(props.get("ssl.client.auth") == "required"
            and not any(k.endswith(".ssl.client.auth") and v != "required" for k, v in props.items()),
            f"{label}: ssl.client.auth must be required on every listener (client and controller)")
    R.check(props.get("authorizer.class.name") == "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"{label}: the brokers must authorise with StandardAuthorizer")
    R.check(props.get("allow.everyone.if.no.acl.found") == "false", f"{label}: allow.everyone.if.no.acl.found must be false")
    R.check(props.get("auto.create.topics.enable") == "false", f"{label}: auto.create.topics.enable must be false")
    R.check(props.get("ssl.truststore.location") == str(secrets_dir / "kafka-tls" / "ca.crt"),
            f"{label}: the brokers must trust the CA of kafka-tls only, trust {props.get('ssl.truststore.location')}")
    rules = props.get("ssl.principal.mapping.rules", "DEFAULT")
    super_users = set(props.get("super.users", "").split(";"))
    R.check(super_users == KAFKA_SUPER_USERS, f"{label}: super.users must be {sorted(KAFKA_SUPER_USERS)}, is {sorted(super_users)}")
    R.check(kafka_principal(rules, "CN=someone,O=elsewhere") is None,
            f"{label}: ssl.principal.mapping.rules ({rules}) must refuse a subject other than CN=<name>")
    broker_cert = secrets_dir / "kafka-tls" / "tls.crt"
    cert_verifies(f"{label} kafka-tls", broker_cert, ca, ("sslserver", "sslclient"))
    key_matches(f"{label} kafka-tls", broker_cert, secrets_dir / "kafka-tls" / "tls.key")
    R.check(kafka_principal(rules, cert_subject(broker_cert)) in super_users,
            f"{label}: the brokers' certificate ({cert_subject(broker_cert)}) must map to a super user")

    # The clients: their own certificate, their principal, what their configuration needs.
    configured = {role for role in GOMON_ROLES
                  if "kafka" in (yaml.safe_load(configmap_file(docs, f"gomon-{role}-config", "gomon.yaml") or "{}")
                                 or {}).get(role, {})}
    R.check(configured == set(KAFKA_CLIENTS),
            f"{label}: the Kafka clients are {sorted(configured)}; each needs a principal and ACLs here")
    needed, secrets_used = set(), {}
    for role, principal in KAFKA_CLIENTS.items():
        found = role_container(docs, role)
        text = configmap_file(docs, f"gomon-{role}-config", "gomon.yaml")
        if not R.check(found is not None and text is not None, f"{label}: no {role} container or configuration"):
            continue
        kafka_config = yaml.safe_load(text)[role]["kafka"]
        tls = kafka_config.get("tls") or {}
        name = f"{label}: {role}"
        R.check(all(tls.get(k) for k in ("ca_file", "cert_file", "key_file")) and not kafka_config.get("sasl"),
                f"{name}: kafka.tls must set ca_file, cert_file and key_file (mutual TLS), is {tls}")
        sources = {mounted_secret(*found, tls[k]) for k in ("ca_file", "cert_file", "key_file") if tls.get(k)}
        own = {s for s, _ in filter(None, sources)}
        if not R.check(None not in sources and len(own) == 1,
                       f"{name}: its Kafka TLS files must all come from one mounted Secret, come from {sources}"):
            continue
        secret = own.pop()
        secrets_used[role] = secret
        R.check(pod_secrets(found[0]) == {secret}, f"{name}: the pod must mount its own Secret {secret} only, "
                f"mounts {sorted(pod_secrets(found[0]))}")
        files = kafka_client_files(docs, role, secrets_dir)
        if not R.check(all(f.exists() for f in files.values()) and len(files) == 3,
                       f"{name}: deploy/create-secrets.sh does not make {sorted(str(f) for f in files.values())}"):
            continue
        R.check(files["ca_file"].read_bytes() == ca.read_bytes(), f"{name}: {secret} ca.crt is not the Kafka CA")
        cert_verifies(f"{label} {secret}", files["cert_file"], ca, ("sslclient",))
        key_matches(f"{label} {secret}", files["cert_file"], files["key_file"])
        subject = cert_subject(files["cert_file"])
        R.check(kafka_principal(rules, subject) == principal,
                f"{name}: certificate {subject} maps to {kafka_principal(rules, subject)}, its ACLs name {principal}")
        R.check(kafka_principal(rules, subject) not in super_users, f"{name}: a client must not be a super user")
        if role == "agent":
            R.check(kafka_config.get("create_topic") is False, f"{name}: create_topic must be false (the Job creates it)")
            needed.add((principal, "Write", "topic", kafka_config["topic"]))
        else:
            R.check(kafka_config.get("create_dead_letter_topic") is False,
                    f"{name}: create_dead_letter_topic must be false (the Job creates it)")
            needed |= {(principal, "Read", "topic", kafka_config["topic"]),
                       (principal, "Read", "group", kafka_config["group_id"])}
            if kafka_config.get("dead_letter_topic"):
                needed.add((principal, "Write", "topic", kafka_config["dead_letter_topic"]))
    R.check(len(set(secrets_used.values())) == len(secrets_used), f"{label}: Kafka clients share a Secret: {secrets_used}")
    R.check(needed == KAFKA_ACLS, f"{label}: the clients' configurations need the ACLs {sorted(needed)}, "
            f"not the decided {sorted(KAFKA_ACLS)}")

    # The kafka-setup Job, run with stand-ins for Kafka's tools: the topics and ACLs it creates, as whom.
    job = find_object(docs, "Job", "kafka-setup")
    if not R.check(job is not None, f"{label}: Job kafka-setup missing"):
        return
    R.check(0 < job["spec"].get("activeDeadlineSeconds", 0) <= 3600 and job["spec"].get("backoffLimit", 6) <= 10,
            f"{label}: Job kafka-setup must give up in the end (activeDeadlineSeconds, backoffLimit)")
    jt = job["spec"]["template"]
    jc = jt["spec"]["containers"][0]
    command = jc.get("command", []) + jc.get("args", [])
    script_path = next((a for a in command if a.endswith(".sh")), "")
    mounted = mounted_configmap(docs, jt, jc, script_path.rpartition("/")[0])
    setup = {k: (mounted[0] if mounted else {}).get(k) for k in ("kafka-setup.sh", "kafka-topics.txt", "kafka-acls.txt")}
    if not R.check(script_path.endswith("/kafka-setup.sh") and None not in setup.values(),
                   f"{label}: Job kafka-setup must run kafka-setup.sh from a mounted ConfigMap with its topics and ACLs"):
        return
    R.check(script_default(setup["kafka-setup.sh"], "KAFKA_SETUP_DIR") == script_path.rpartition("/")[0],
            f"{label}: kafka-setup.sh must read its files where the Job mounts them")
    admin_dir = script_default(setup["kafka-setup.sh"], "KAFKA_TLS_DIR") or ""
    R.check(all(mounted_secret(jt, jc, f"{admin_dir}/{k}") == ("kafka-admin", k) for k in ("ca.crt", "tls.crt", "tls.key"))
            and pod_secrets(jt) == {"kafka-admin"},
            f"{label}: Job kafka-setup must read the Secret kafka-admin (only) in {admin_dir}")
    admin_cert = secrets_dir / "kafka-admin" / "tls.crt"
    cert_verifies(f"{label} kafka-admin", admin_cert, ca, ("sslclient",))
    key_matches(f"{label} kafka-admin", admin_cert, secrets_dir / "kafka-admin" / "tls.key")
    R.check(kafka_principal(rules, cert_subject(admin_cert)) == "User:gomon-kafka-admin",
            f"{label}: the kafka-admin certificate must map to User:gomon-kafka-admin")
    files = work / "setup"
    files.mkdir()
    for name, text in setup.items():
        (files / name).write_text(text)
    calls.unlink(missing_ok=True)
    result = run(["sh", str(files / "kafka-setup.sh")], env=dict(
        os.environ, KAFKA_BIN=str(bin_dir), KAFKA_SETUP_DIR=str(files), KAFKA_TLS_DIR=str(secrets_dir / "kafka-admin"),
        KAFKA_WORK_DIR=str(work / "job")))
    if not R.check(result.returncode == 0 and calls.exists(), f"{label}: kafka-setup.sh fails: {result.stderr[-500:]}"):
        return
    admin = properties((work / "job" / "admin.properties").read_text())
    R.check((secrets_dir / "kafka-admin" / "ca.crt").read_bytes() == ca.read_bytes(), f"{label}: kafka-admin ca.crt is not the Kafka CA")
    R.check(admin.get("security.protocol") == "SSL"
            and admin.get("ssl.truststore.location") == str(secrets_dir / "kafka-admin" / "ca.crt")
            and (work / "job" / "keystore.pem").read_text().count("BEGIN") == 2,
            f"{label}: kafka-setup.sh must connect over TLS with the admin certificate: {admin}")
    acls, topics = set(), set()
    for line in calls.read_text().splitlines():
        tool, *argv = line.split()
        config = argv[argv.index("--command-config") + 1] if "--command-config" in argv[:-1] else None
        R.check(config == str(work / "job" / "admin.properties"),
                f"{label}: kafka-setup.sh runs {tool} without the admin's TLS settings: {line}")
        if tool == "kafka-acls.sh" and "--add" in argv:
            add = argv[argv.index("--add") + 1:]
            opts = dict(zip(add[::2], add[1::2]))
            kind = next((t for t in ("topic", "group", "cluster", "transactional-id") if f"--{t}" in opts), None)
            R.check(opts.get("--resource-pattern-type") == "literal" and "--allow-host" not in opts
                    and not any(o.startswith("--deny") for o in opts), f"{label}: unexpected ACL form: {line}")
            acls.add((opts.get("--allow-principal"), opts.get("--operation"), kind, opts.get(f"--{kind}")))
        if tool == "kafka-topics.sh" and "--create" in argv:
            create = argv[argv.index("--create") + 1:]
            create = [a for a in create if a != "--if-not-exists"]
            opts = dict(zip(create[::2], create[1::2]))
            topics.add((opts.get("--topic"), int(opts.get("--partitions", 0)), int(opts.get("--replication-factor", 0))))
            R.check("--if-not-exists" in argv, f"{label}: kafka-setup.sh must create topics idempotently: {line}")
    R.check(acls == KAFKA_ACLS, f"{label}: kafka-setup.sh applies the ACLs {sorted(acls)}, want exactly {sorted(KAFKA_ACLS)}")
    R.check(topics == KAFKA_TOPICS, f"{label}: kafka-setup.sh creates the topics {sorted(topics)}, want {sorted(KAFKA_TOPICS)}")
    replicas = kafka["spec"]["replicas"]
    R.check(all(rf <= replicas and rf > int(props.get("min.insync.replicas", 1)) for _, _, rf in topics),
            f"{label}: topic replication must exceed min.insync.replicas and fit {replicas} brokers")


def postgres_settings(container: dict) -> dict[str, str]:
    """The `-c name=value` server settings of the postgres container's arguments."""
    argv = container.get("args", [])
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv[:-1]) if a == "-c" and "=" in argv[i + 1])


def mounted_configmap(docs: list[dict], template: dict, container: dict, directory: str) -> tuple[dict, dict] | None:
    """(ConfigMap data, volume) of the ConfigMap the container mounts at DIRECTORY."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    for m in container.get("volumeMounts", []):
        volume = volumes.get(m["name"], {})
        if m["mountPath"].rstrip("/") == directory.rstrip("/") and "configMap" in volume:
            cm = find_object(docs, "ConfigMap", volume["configMap"]["name"])
            return (cm.get("data", {}), volume) if cm else None
    return None


def secret_file(secrets_dir: Path, secret: str, key: str) -> str:
    path = secrets_dir / secret / key
    return path.read_text().strip() if path.exists() else ""


def check_postgres_security(args, infra: list[dict], overlays: dict[str, list[dict]], secrets_dir: Path,
                            tmp: Path) -> None:
    """PostgreSQL's superuser is for administration only; the alerting service connects as alerting_service, which
    owns the database alerting and nothing else, over TLS verified against the CA of postgres-tls (verify-full);
    the server accepts TLS with SCRAM only. Then the same, live: a PostgreSQL set up as the image would be, with the
    rendered settings, pg_hba.conf, init script and the Secrets' certificate and passwords."""
    pg = find_object(infra, "StatefulSet", "postgres")
    if not R.check(pg is not None, "infra: StatefulSet postgres missing"):
        return
    template = pg["spec"]["template"]
    server = next((c for c in template["spec"]["containers"] if c["name"] == "postgres"), {})
    settings = postgres_settings(server)
    R.check(settings.get("ssl") == "on" and settings.get("password_encryption") == "scram-sha-256"
            and all(settings.get(k) for k in ("ssl_cert_file", "ssl_key_file", "hba_file")),
            f"infra: postgres must run with ssl=on, its certificate and key, scram-sha-256 and its hba_file: {settings}")
    env = {e["name"]: e for e in server.get("env", [])}

    def from_secret(name: str) -> tuple[str, str] | None:
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        return (ref["name"], ref["key"]) if ref else None

    superuser = env.get("POSTGRES_USER", {}).get("value", "postgres")
    R.check(superuser != "alerting_service" and "POSTGRES_DB" not in env,
            f"infra: the image's superuser ({superuser}) must not be the application role, nor own its database")
    R.check(from_secret("POSTGRES_PASSWORD") == ("postgres", "postgres-password")
            and from_secret("ALERTING_SERVICE_PASSWORD") == ("postgres", "alerting-password"),
            "infra: postgres must take the superuser's and alerting_service's passwords from their own keys of Secret postgres")
    superuser_password = secret_file(secrets_dir, "postgres", "postgres-password")
    app_password = secret_file(secrets_dir, "postgres", "alerting-password")
    R.check(bool(superuser_password) and bool(app_password) and superuser_password != app_password,
            "secret postgres: the two passwords must be set and differ")

    # The key file: copied by an init container from the Secret postgres-tls, 0600, into a volume the server reads.
    key_path, cert_path = settings.get("ssl_key_file", ""), settings.get("ssl_cert_file", "")
    mount = next((m for m in server.get("volumeMounts", []) if key_path.startswith(m["mountPath"].rstrip("/") + "/")), {})
    copiers = [c for c in template["spec"].get("initContainers", [])
               if any(m["name"] == mount.get("name") and not m.get("readOnly") for m in c.get("volumeMounts", []))]
    copier_text = " ".join(" ".join(c.get("command", []) + c.get("args", [])) for c in copiers)
    sources = {mounted_secret(template, c, p) for c in copiers
               for p in re.findall(r"(/\S+/tls\.(?:crt|key))", copier_text)}
    R.check(bool(mount) and mount.get("readOnly") is True and len(copiers) == 1
            and "-m 0600" in copier_text and key_path in copier_text and cert_path in copier_text
            and {("postgres-tls", "tls.key"), ("postgres-tls", "tls.crt")} <= sources,
            "infra: an init container must copy tls.key (mode 0600) and tls.crt of Secret postgres-tls to "
            f"{key_path} and {cert_path}, read-only for the server")

    # pg_hba.conf: TLS with SCRAM for the application role to its database; nothing else over the network.
    hba_dir, _, hba_name = settings.get("hba_file", "").rpartition("/")
    hba_cm = mounted_configmap(infra, template, server, hba_dir)
    hba = (hba_cm[0] if hba_cm else {}).get(hba_name)
    if R.check(hba is not None, f"infra: postgres must mount a ConfigMap with {hba_name} at {hba_dir}"):
        rules = [line.split() for line in hba.splitlines() if line.split() and not line.lstrip().startswith("#")]
        network = [r for r in rules if r[0] != "local"]
        R.check(bool(network) and all(r[0] == "hostssl" and r[1:3] == ["alerting", "alerting_service"]
                                      and r[-1] == "scram-sha-256" for r in network),
                f"infra: pg_hba.conf must allow the network only hostssl, database alerting, user alerting_service, "
                f"scram-sha-256: {network}")
        R.check(all(r[-1] in ("peer", "scram-sha-256") for r in rules if r[0] == "local"),
                "infra: pg_hba.conf must not trust local connections")
    init_cm = mounted_configmap(infra, template, server, "/docker-entrypoint-initdb.d")
    init = {k: v for k, v in (init_cm[0] if init_cm else {}).items() if k.endswith(".sh")}
    R.check(bool(init) and init_cm[1]["configMap"].get("defaultMode", 0o644) & 0o111 == 0o111,
            "infra: postgres must mount its init script, executable, at /docker-entrypoint-initdb.d")

    # The server certificate and the alerting service's URL.
    tls = secrets_dir / "postgres-tls"
    cert_verifies("postgres-tls", tls / "tls.crt", tls / "ca.crt", ("sslserver",))
    key_matches("postgres-tls", tls / "tls.crt", tls / "tls.key")
    sans = set(re.findall(r"DNS:([^,\s]+)", openssl("x509", "-in", str(tls / "tls.crt"), "-noout", "-ext",
                                                     "subjectAltName").stdout))
    R.check(POSTGRES_SERVICE_NAMES <= sans, f"postgres-tls: the certificate must name {sorted(POSTGRES_SERVICE_NAMES)}, names {sorted(sans)}")
    url = secret_file(secrets_dir, "gomon-alerting", "database-url")
    u = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(u.query)
    services = {d["metadata"]["name"] for d in infra if d["kind"] == "Service"}
    R.check(u.scheme == "postgres" and u.username == "alerting_service" and u.password == app_password
            and u.path == "/alerting" and u.hostname in sans and u.hostname.split(".")[0] in services,
            "gomon-alerting database-url must connect as alerting_service (its password) to the database alerting "
            f"of the postgres Service, by a name its certificate carries: {u._replace(netloc=u.hostname or '')}")
    R.check(query.get("sslmode") == ["verify-full"] and len(query.get("sslrootcert", [])) == 1,
            f"gomon-alerting database-url must say sslmode=verify-full and sslrootcert: {u.query}")
    root = query.get("sslrootcert", [""])[0]
    for label, docs in overlays.items():
        found = role_container(docs, "alerting")
        config = yaml.safe_load(configmap_file(docs, "gomon-alerting-config", "gomon.yaml") or "{}")
        url_file = ((config or {}).get("alerting", {}).get("database") or {}).get("url_file", "")
        R.check(found is not None and mounted_secret(*found, root) == ("postgres-tls", "ca.crt")
                and mounted_secret(*found, url_file) == ("gomon-alerting", "database-url"),
                f"{label}: the alerting container must read its database URL from gomon-alerting and find the CA of "
                f"postgres-tls at {root}")
    if init and hba is not None and u.hostname:
        live_postgres(args, tmp, settings, hba, init, superuser, superuser_password, app_password, u.hostname, tls)


def live_postgres(args, tmp: Path, settings: dict[str, str], hba: str, init: dict[str, str], superuser: str,
                  superuser_password: str, app_password: str, host: str, tls: Path) -> None:
    pg_bin = Path(run(["bash", "-c", f". {ROOT}/scripts/lib/postgres.sh && postgres_bin"]).stdout.strip())
    if not R.check((pg_bin / "postgres").exists(), "live PostgreSQL: no PostgreSQL binaries (scripts/lib/postgres.sh)"):
        return
    root = os.geteuid() == 0
    as_postgres = ["runuser", "-u", "postgres", "--"] if root else []
    # Outside the check's private temporary directory: the postgres user must reach its files.
    d = Path(tempfile.mkdtemp(prefix="gomon-pg-tls.", dir="/tmp"))
    procs = Processes(tmp)
    port = free_port()
    pg_env = dict(os.environ, PGHOST=str(d), PGPORT=str(port))

    def pg_ctl(*argv: str) -> subprocess.CompletedProcess:
        return run(as_postgres + [str(pg_bin / "pg_ctl"), "-D", str(d / "data"), "-l", str(d / "server.log"), "-w",
                                  "-t", "60", *argv], env=pg_env)

    try:
        d.chmod(0o755)
        files = {"ssl_cert_file": d / "tls.crt", "ssl_key_file": d / "tls.key", "hba_file": d / "pg_hba.conf"}
        shutil.copy(tls / "tls.crt", files["ssl_cert_file"])
        shutil.copy(tls / "tls.key", files["ssl_key_file"])
        files["ssl_key_file"].chmod(0o600)  # what the init container does
        files["hba_file"].write_text(hba)
        (d / "pwfile").write_text(superuser_password)
        for name, text in init.items():
            (d / name).write_text(text)
        if root:
            for p in [d, *d.iterdir()]:
                shutil.chown(p, "postgres")
        result = run(as_postgres + [str(pg_bin / "initdb"), "-D", str(d / "data"), "-U", superuser,
                                    f"--pwfile={d / 'pwfile'}", "--no-sync"])
        if not R.check(result.returncode == 0, f"live PostgreSQL: initdb failed: {result.stderr[-1000:]}"):
            return
        server = " ".join(f"-c {k}={files[k] if k in files else v}" for k, v in settings.items())
        server += f" -k {d} -p {port} -c fsync=off"
        if not root:
            # The rendered pg_hba.conf lets the superuser in by peer only, as the OS user postgres: not us.
            (d / "init_hba.conf").write_text("local all all trust\n")
            R.note("live PostgreSQL: not root, so the init script runs with a trusting local pg_hba.conf")
        init_server = server + (f" -c hba_file={d / 'init_hba.conf'}" if not root else "")
        # As the image's entrypoint: a server on the Unix socket only runs the init scripts, then the real one.
        result = pg_ctl("-o", init_server + " -c listen_addresses=''", "start")
        if not R.check(result.returncode == 0, f"live PostgreSQL: the rendered settings do not start it: "
                       f"{result.stderr[-500:]}{(d / 'server.log').read_text()[-1500:]}"):
            return
        for name in sorted(init):
            result = run(as_postgres + ["sh", str(d / name)], env=dict(
                pg_env, POSTGRES_USER=superuser, POSTGRES_PASSWORD=superuser_password, PGPASSWORD=superuser_password,
                ALERTING_SERVICE_PASSWORD=app_password))
            R.check(result.returncode == 0, f"live PostgreSQL: init script {name} fails: {result.stderr[-1000:]}")
        pg_ctl("-m", "fast", "stop")
        result = pg_ctl("-o", server + " -c listen_addresses=127.0.0.1", "start")
        if not R.check(result.returncode == 0, f"live PostgreSQL: does not start: {(d / 'server.log').read_text()[-1500:]}"):
            return

        def psql(sql: str, user: str = "alerting_service", password: str = app_password, dbname: str = "alerting",
                 name: str = host, sslmode: str = "verify-full") -> subprocess.CompletedProcess:
            conninfo = (f"host={name} hostaddr=127.0.0.1 port={port} user={user} dbname={dbname} sslmode={sslmode} "
                        f"sslrootcert={tls / 'ca.crt'} connect_timeout=5")
            return run([str(pg_bin / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql],
                       env=dict(os.environ, PGPASSWORD=password))

        result = psql("SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls, s.ssl, "
                      "(SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'alerting'), "
                      "(SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datallowconn "
                      " AND (has_database_privilege(datname, 'CONNECT') OR has_database_privilege(datname, 'TEMP'))) "
                      "FROM pg_roles r, pg_stat_ssl s WHERE r.rolname = current_user AND s.pid = pg_backend_pid()")
        R.check(result.returncode == 0 and result.stdout.strip() == "f|f|f|f|f|t|alerting_service|alerting",
                "live PostgreSQL: alerting_service over verify-full (host name checked against the certificate) must "
                "be no superuser, without CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS, on TLS, owner of alerting, "
                f"and may connect to alerting only: {result.stdout.strip()}{result.stderr.strip()}")
        result = psql("CREATE DATABASE deploy_check_forbidden")
        R.check(result.returncode != 0 and "permission denied to create database" in result.stderr,
                f"live PostgreSQL: alerting_service must not create databases: {result.stdout}{result.stderr}")
        refused = {
            "without TLS": psql("SELECT 1", sslmode="disable"),
            "to the database postgres": psql("SELECT 1", dbname="postgres"),
            f"as the superuser {superuser}, over TLS": psql("SELECT 1", user=superuser, password=superuser_password,
                                                            dbname="postgres"),
        }
        for what, result in refused.items():
            R.check(result.returncode != 0 and "no pg_hba.conf entry" in result.stderr,
                    f"live PostgreSQL: a connection {what} must be refused by pg_hba.conf: {result.stdout}{result.stderr}")
        result = psql("SELECT 1", name="localhost")
        R.check(result.returncode != 0 and "does not match host name" in result.stderr,
                f"live PostgreSQL: verify-full must refuse a host name the certificate lacks: {result.stderr}")
        live_alerting_over_tls(args, procs, port, host, tls / "ca.crt", app_password, d)
        result = psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> current_user")
        R.check(result.returncode == 0 and result.stdout.strip() == "0",
                f"live PostgreSQL: every table of alerting must belong to alerting_service: {result.stdout}{result.stderr}")
    finally:
        procs.stop_all()
        if (d / "data" / "postmaster.pid").exists():
            pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(d, ignore_errors=True)


def live_alerting_over_tls(args, procs: Processes, port: int, host: str, ca: Path, password: str, d: Path) -> None:
    """`gomon alerting` migrates and serves as alerting_service over sslmode=verify-full, reaching HOST (a name of the
    server certificate) in a mount namespace whose /etc/hosts maps it to 127.0.0.1; and refuses the server when
    the URL names a host its certificate does not."""
    gomon = str(Path(args.gomon).resolve())
    hosts = d / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {host}\n")
    unshare = ["unshare", "-m", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["-r"])
    mapped = unshare + ["sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]
    probe = run(mapped + ["getent", "hosts", host]) if shutil.which("unshare") else None
    api_port, wrong_port = free_port(), free_port()

    def start(name: str, url_host: str, listen: int, prefix: list[str]) -> None:
        url_file = d / f"{name}-url"
        url_file.write_text(f"postgres://alerting_service:{password}@{url_host}:{port}/alerting"
                            f"?sslmode=verify-full&sslrootcert={ca}")
        procs.start(name, prefix + [gomon, "alerting"], {
            "GOMON_ALERTING__LISTEN": f"127.0.0.1:{listen}", "GOMON_ALERTING__DATABASE__URL_FILE": str(url_file),
            "GOMON_ALERTING__KUBERNETES__ENABLED": "false"})

    if probe is None or probe.returncode != 0 or not probe.stdout.startswith("127.0.0.1"):
        R.note(f"live PostgreSQL: cannot map {host} to 127.0.0.1 in a mount namespace "
               f"({(probe.stderr.strip() if probe else 'no unshare')[:120]}): gomon alerting was not run over "
               "verify-full; psql proved the certificate, the host name and pg_hba.conf instead")
    else:
        start("alerting-tls", host, api_port, mapped)
        api = f"http://127.0.0.1:{api_port}"
        if wait_for("gomon alerting on PostgreSQL as alerting_service over verify-full",
                    lambda: http_get(api + "/health/ready")[0] == 200, 60, procs, "alerting-tls"):
            status, body = http_send("POST", api + "/api/v1/alerts", {
                "source": "deploy-check", "severity": "P3", "title": "Over verify-full"}, "")
            if R.check(status == 201, f"gomon alerting over verify-full: POST /api/v1/alerts answered {status}: {body[:300]}"):
                R.note(f"gomon alerting migrated and served as alerting_service over sslmode=verify-full ({host} "
                       "mapped to 127.0.0.1 in a mount namespace of its own)")
    # The same URL naming localhost, which resolves without help: the certificate does not carry it.
    start("alerting-wrong-name", "localhost", wrong_port, [])
    log = procs.tmp / "alerting-wrong-name.log"
    refused = wait_for("gomon alerting refusing a server certificate without the URL's host name",
                       lambda: "certificate not valid for name" in (log.read_text() if log.exists() else ""), 20,
                       procs, "alerting-wrong-name")
    R.check(refused and http_get(f"http://127.0.0.1:{wrong_port}/health/ready")[0] != 200,
            "gomon alerting must not be ready when verify-full fails")


def kafka_tls_env(docs: list[dict], role: str, secrets_dir: Path) -> dict[str, str]:
    """GOMON_* variables pointing ROLE's Kafka TLS files at deploy/create-secrets.sh's output (kafka_client_files)."""
    return {f"GOMON_{role.upper()}__KAFKA__TLS__{key.upper()}": str(path)
            for key, path in kafka_client_files(docs, role, secrets_dir).items()}


# ---------------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gomon", required=True, help="the gomon binary")
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database for gomon alerting")
    parser.add_argument("--settle", type=float, default=8, help="seconds of extra scraping before the queries")
    args = parser.parse_args()
    self_test()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="gomon-deploy-check.") as t:
        tmp = Path(t)
        print("== secrets, kustomize, Kubernetes schemas", flush=True)
        secrets, secrets_dir = secrets_from_script(tmp)
        if os.environ.get("BLESS"):
            bless_operator_rules()
        check_operator_rules()
        rendered = {k: render(k) for k in KUSTOMIZATIONS}
        rendered.update({k: render_component(k, tmp) for k in COMPONENTS})
        for label, docs in rendered.items():
            if docs:
                kubernetes_validate(label, docs, tmp)
                check_host_ports(label, docs)
                check_monitors(label, docs)
        kps = rendered["deploy/k8s/overlays/kube-prometheus-stack"]
        R.check(all(d["metadata"].get("labels", {}).get("release") == "kube-prometheus-stack"
                    for d in kps if d["apiVersion"].startswith("monitoring.coreos.com/")),
                "kube-prometheus-stack overlay: its Prometheus selects only objects labelled release")
        R.check(not any(d["metadata"]["name"] == "grafana" for d in kps if d["kind"] in ("Deployment", "Service")),
                "kube-prometheus-stack overlay: the chart's Grafana is used; GoMon's must be left out")
        infra = rendered["deploy/k8s/infra"]
        for label in KUSTOMIZATIONS[1:] + list(COMPONENTS):
            if rendered[label]:
                check_objects(label, rendered[label], secrets, infra)
        check_objects("deploy/k8s/infra", infra, secrets, [])
        for label in ("deploy/k8s/overlays/production", "deploy/k8s/overlays/kube-prometheus-stack"):
            check_ingress_auth(label, rendered[label], secrets_dir)
        for label in KUSTOMIZATIONS[1:]:
            check_network_policies(label, rendered[label], infra)
        print("== Kafka and PostgreSQL access: mutual TLS, ACLs, the application role over verify-full", flush=True)
        if secrets:
            for label in KUSTOMIZATIONS[1:]:
                if rendered[label]:
                    check_kafka_security(label, rendered[label], secrets_dir, tmp)
            R.note("Kafka checked without a broker (none with TLS and ACLs runs here): rendered broker properties, "
                   "kafka-setup.sh run with stand-ins for Kafka's tools, certificates verified with openssl")
            if infra:
                check_postgres_security(args, infra, {k: rendered[k] for k in KUSTOMIZATIONS[1:]}, secrets_dir, tmp)
        local_hosts = {r["host"] for d in rendered["deploy/k8s/overlays/local"] if d["kind"] == "Ingress"
                       for r in d["spec"]["rules"]}
        R.check(local_hosts == INGRESS_HOSTS, f"local overlay: ingress hosts {sorted(local_hosts)}")
        print("== Grafana, vmalert, scrape configuration, logs, Terraform, ArgoCD, Dockerfile", flush=True)
        exprs = grafana_expressions(rendered["deploy/k8s/overlays/local"]) + vmalert_expressions(tmp)
        scrape = check_scrape_config(infra, tmp)
        check_logs(rendered["deploy/k8s/overlays/local"])
        check_terraform(tmp)
        check_argocd(tmp)
        check_dockerfile()
        print(f"== live: {len(exprs)} PromQL expressions against VictoriaMetrics fed by gomon", flush=True)
        if scrape and rendered["deploy/k8s/overlays/local"] and rendered["deploy/k8s/overlays/production"]:
            live_check(args, tmp, rendered, secrets_dir, scrape, exprs)
        else:
            R.fail("live check not run: the rendering failed")
    print(f"deploy: {R.passed} checks passed, {len(R.failures)} failed")
    return 1 if R.failures else 0


if __name__ == "__main__":
    sys.exit(main())
