"""Check the Helm chart offline, for tests/ops_files.rs.

For each values case: render the chart with Helm's own library (helm-python-sdk; no helm
binary, no cluster), lint it strictly, validate every manifest against the Kubernetes
schemas of the oldest and newest supported versions (kubernetes-validate, strict: unknown
fields are errors), check the ServiceMonitor (a CRD those schemas lack) against the Service
it selects, check the Deployment's probes, anti-affinity, Secret and ConfigMap wiring, and
write the rendered Switchyard config to OUT_DIR/<case>.toml for `switchyard check`.

Usage: python helm_check.py CHART_DIR OUT_DIR. Prints one JSON summary line; exit 1 on the
first problem, with what it is.
"""

import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSIONS = ["1.30.0", "1.37.0"]
HASH = "0" * 64


def fail(case, message):
    print(f"{case}: {message}", file=sys.stderr)
    sys.exit(1)


def cases(chart_dir):
    with open(os.path.join(chart_dir, "values-postgres-sidecar.yaml")) as f:
        sidecar = helm.values_from_yaml(f.read())
    monitored = {
        "serviceMonitor": {"enabled": True},
        "antiAffinity": "hard",
        "tokenHashes": {"values": {"SWITCHYARD_ADMIN_SHA256": HASH, "SWITCHYARD_VIEWER_SHA256": HASH}},
    }
    ingress = {"tokenHashes": {"existingSecret": "switchyard-token-hashes"}}
    return {"ingress": ingress, "ingress-monitored": monitored, "postgres-sidecar": sidecar}


def check_deployment(case, d, docs):
    pod = d["spec"]["template"]["spec"]
    c = next((c for c in pod["containers"] if c["name"] == "switchyard"), None)
    if c is None:
        fail(case, "no switchyard container")
    for probe in ("readinessProbe", "livenessProbe"):
        if "httpGet" not in c.get(probe, {}):
            fail(case, f"no HTTP {probe}")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    if not anti:
        fail(case, "no pod anti-affinity")
    if not any("secretRef" in e for e in c.get("envFrom", [])):
        fail(case, "the token hashes do not come from a Secret")
    maps = {v["name"]: v for v in pod["volumes"]}
    mount = next((m for m in c["volumeMounts"] if m["mountPath"] == "/etc/switchyard"), None)
    if mount is None or "configMap" not in maps.get(mount["name"], {}):
        fail(case, "the config is not mounted from a ConfigMap")
    if "subPath" in mount:
        fail(case, "a subPath mount never sees ConfigMap updates")
    if c["securityContext"].get("allowPrivilegeEscalation") is not False:
        fail(case, "privilege escalation allowed")
    ports = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        port = c[probe]["httpGet"]["port"]
        if isinstance(port, str) and port not in ports:
            fail(case, f"{probe} uses port {port}, the container has {sorted(ports)}")


def check_service_monitor(case, sm, docs):
    services = [d for d in docs if d["kind"] == "Service"]
    selector = sm["spec"]["selector"]["matchLabels"]
    matched = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    if not matched:
        fail(case, "the ServiceMonitor selects no Service")
    port_names = {p["name"] for s in matched for p in s["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in port_names:
            fail(case, f"ServiceMonitor port {ep['port']} is not a Service port {sorted(port_names)}")
        if ep["authorization"]["type"] != "Bearer" or "name" not in ep["authorization"]["credentials"]:
            fail(case, "the ServiceMonitor has no bearer token")


def check_refusals(chart_dir):
    """Values that cannot work are refused at render time, with the reason."""
    try:
        helm.Chart.load(chart_dir).render({}, name="edge", namespace="ingress")
    except Exception as e:  # HelmRenderError
        if "tokenHashes.existingSecret" not in str(e):
            fail("no-token-hashes", f"refused for another reason: {e}")
    else:
        fail("no-token-hashes", "rendered without a Secret of token hashes")


def main():
    chart_dir, out_dir = sys.argv[1], sys.argv[2]
    check_refusals(chart_dir)
    summary = {}
    for case, values in cases(chart_dir).items():
        report = helm.lint(chart_dir, values, strict=True)
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        if problems or report.get("errors"):
            fail(case, f"helm lint: {problems or report['errors']}")
        chart = helm.Chart.load(chart_dir)
        rendered = chart.render(values, name="edge", namespace="ingress", is_install=True)
        docs = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
        kinds = sorted(d["kind"] for d in docs)
        for d in docs:
            if d["kind"] == "ServiceMonitor":
                check_service_monitor(case, d, docs)
                continue
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except Exception as e:  # the library raises several error types
                    fail(case, f"{d['kind']} {d['metadata']['name']} against Kubernetes {version}: {e}")
            if d["kind"] == "Deployment":
                check_deployment(case, d, docs)
        for need in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
            if need not in kinds:
                fail(case, f"no {need} rendered ({kinds})")
        config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["switchyard.toml"]
        with open(os.path.join(out_dir, f"{case}.toml"), "w") as f:
            f.write(config)
        summary[case] = kinds
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
