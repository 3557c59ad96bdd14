#!/usr/bin/env python3
"""Validates deploy/: run by scripts/check-deploy.sh, which installs the tools and Python packages it needs.

Static checks: every kustomization renders and validates against the Kubernetes schemas; the rendered objects hang
together (every ConfigMap, Secret key, ServiceAccount, Service port and ingress backend they name exists); the
programs' configuration files are accepted by `gomon` itself; Grafana's provisioning files, the dashboards, the
vmalert rules, the scrape configuration, Filebeat/Logstash, Terraform and the ArgoCD applications parse and say
what they must. Kafka's brokers require client certificates and ACLs, each client has its own certificate and
exactly the ACLs it needs; the alerting service reaches PostgreSQL as a non-superuser role over verify-full TLS,
proved against a PostgreSQL set up from the rendered settings (check_kafka_security, check_postgres_security).

Live check: VictoriaMetrics, fed by scraping the real `gomon alerting`, `gomon agent` and (when the binary has it)
`gomon aggregator`, which remote-writes what the agent publishes through a Kafka-protocol broker (tansu), runs
every PromQL expression of the dashboards and rules; each must succeed and every metric it names must exist.
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
KUSTOMIZATIONS = ["deploy/k8s/infra", "deploy/k8s/overlays/local", "deploy/k8s/overlays/production"]
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


def kubernetes_validate(label: str, docs: list[dict], tmp: Path) -> None:
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
            R.check(sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"],
                    f"{cname}: privilege escalation must be off and every capability dropped")
        # Our own programs: the settings.
        for c in spec["containers"]:
            role = c.get("args", [None])[0]
            if role not in GOMON_ROLES:
                continue
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            R.check(sc.get("readOnlyRootFilesystem") is True, f"{cname}: root filesystem must be read-only")
            R.check((sc.get("runAsNonRoot") or spec.get("securityContext", {}).get("runAsNonRoot")) is True,
                    f"{cname}: must run as non-root")
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
            if role == "aggregator":
                R.check(any(x["name"] == "filebeat" for x in spec["containers"]), f"{cname}: Filebeat sidecar missing")
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

    for fname, d in dashboards.items():
        for var in d.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q or "")
            if R.check(m is not None, f"grafana: {fname} variable {var['name']}: unsupported query {q!r}"):
                exprs.append((f"{fname} variable ${var['name']} (label {m.group(2)})", m.group(1)))
        for p in walk(d.get("panels", [])):
            if p.get("type") == "row":
                continue
            R.check(p.get("datasource", {}).get("uid") in uids, f"grafana: {fname} panel '{p['title']}': unknown datasource")
            targets = p.get("targets", [])
            R.check(bool(targets), f"grafana: {fname} panel '{p['title']}' has no query")
            for t in targets:
                R.check(t.get("datasource", {}).get("uid", next(iter(uids))) in uids,
                        f"grafana: {fname} panel '{p['title']}' target {t.get('refId')}: unknown datasource")
                exprs.append((f"{fname} panel '{p['title']}' {t.get('refId')}", t["expr"]))

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
    R.check(any("/aggregator/" in p for i in filebeat["filebeat.inputs"] for p in i["paths"]),
            "filebeat: must read the aggregator container's logs")
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


def http_send(method: str, url: str, body: dict | None, token: str) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
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
    (secret / "tokens.yaml").write_text(f"- name: deploy-check\n  token: {token}\n  access: write\n")
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
        rendered = {k: render(k) for k in KUSTOMIZATIONS}
        for label, docs in rendered.items():
            if docs:
                kubernetes_validate(label, docs, tmp)
        infra = rendered["deploy/k8s/infra"]
        for label in KUSTOMIZATIONS[1:]:
            if rendered[label]:
                check_objects(label, rendered[label], secrets, infra)
        check_objects("deploy/k8s/infra", infra, secrets, [])
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
