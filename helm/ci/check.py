"""Checks the Helm chart without a cluster: lint, render and validate every manifest against
Kubernetes' schemas (strict: unknown fields are errors), for the default values, a full-featured
values file and a few variants, then assert what the templates must get right (probes on real
ports, secrets only by reference, the config checksum, non-root and read-only root filesystem,
persistence, the `helm test` pod, the subchart values, the extension values, egress, the
ready-only Service, NOTES with TLS), check the alerts with `promtool check rules` and
`promtool test rules` (alerts-test.yaml) and the Grafana dashboard. With the path of the
clerk-index binary, also checks that every CLERK_INDEX_* variable the chart sets is one `serve`
reads. (That the alerts and the dashboard name series /metrics really serves is held by
tests/metrics.rs and tests/cluster.rs, which scrape live servers.)

Run by scripts/test through helm/ci/check (which makes the virtualenv).
"""

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent.parent / "clerk-index"
FULL = Path(__file__).resolve().parent / "values-full.yaml"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts-test.yaml"
CLUSTER_ALERT_TESTS = Path(__file__).resolve().parent / "alerts-test-cluster.yaml"
IMAGE = {"image": {"repository": "registry.example.com/clerk-index"}}
KUBERNETES = "1.37.0"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def render(values, label):
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    report = helm.lint(str(CHART), values, strict=True, namespace="search")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    check(not problems and not report.get("errors"), f"{label}: helm lint: {problems} {report.get('errors')}")
    rendered = chart.render(values, name="ci", namespace="search", is_install=True)
    manifests = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            check("clerk-index" in text, f"{label}: NOTES.txt is empty")
            manifests["NOTES"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                # Custom resources have no bundled schema: checked field by field below.
                check(doc["kind"] in CUSTOM_KINDS, f"{label}: {path}: no schema for {doc['kind']}")
            except Exception as error:  # the library raises several kinds
                failures.append(f"{label}: {path} ({doc.get('kind')}): {error}")
            manifests.setdefault(doc["kind"], []).append((path, text, doc))
    return manifests


def one(manifests, kind):
    items = manifests.get(kind, [])
    check(len(items) == 1, f"expected one {kind}, got {len(items)}")
    return items[0][2] if items else {}


def container_of(statefulset):
    return statefulset["spec"]["template"]["spec"]["containers"][0]


def common_checks(manifests, label):
    sts = one(manifests, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    container = container_of(sts)
    check(container["name"] == "clerk-index", f"{label}: the server is the first container")
    # The ready-only headless Service for client-side balancing (dns:///NAME-grpc).
    balancing = [s for _, _, s in manifests["Service"] if s["metadata"]["name"].endswith("-grpc")]
    check(len(balancing) == 1 and balancing[0]["spec"].get("clusterIP") == "None" and balancing[0]["spec"].get("publishNotReadyAddresses") is False and [p["name"] for p in balancing[0]["spec"]["ports"]] == ["grpc"], f"{label}: ready-only headless gRPC Service {balancing}")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(set(ports) == {"grpc", "http"}, f"{label}: container ports {ports}")
    for probe in ("startupProbe", "readinessProbe"):
        check(container[probe].get("grpc", {}).get("port") == ports["grpc"], f"{label}: {probe} is not gRPC health on the gRPC port")
    check(container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}, f"{label}: liveness probe")
    check(container["lifecycle"]["preStop"]["sleep"]["seconds"] >= 1, f"{label}: preStop")
    check(pod["terminationGracePeriodSeconds"] >= 30, f"{label}: grace period")
    check(pod["securityContext"]["runAsNonRoot"] is True, f"{label}: runAsNonRoot")
    check(container["securityContext"]["readOnlyRootFilesystem"] is True, f"{label}: read-only root")
    check(container["securityContext"]["capabilities"]["drop"] == ["ALL"], f"{label}: capabilities")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    check(mounts.get("data") == "/var/lib/clerk-index", f"{label}: data mount {mounts}")
    check("tmp" in mounts, f"{label}: /tmp must be writable with a read-only root")
    # Secrets only by reference: no literal value for any secret variable.
    for env in container.get("env", []):
        if env["name"] in ("CLERK_SECRET_KEY", "CLERK_WEBHOOK_SIGNING_SECRET"):
            check("valueFrom" in env and "value" not in env, f"{label}: {env['name']} must come from a Secret")
    # The checksum annotation is the hash of the rendered ConfigMap, so config changes roll pods.
    (_, config_text, config) = [c for c in manifests["ConfigMap"] if not c[2]["metadata"]["name"].endswith("-dashboard")][0]
    annotation = sts["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
    check(annotation == hashlib.sha256(config_text.encode()).hexdigest(), f"{label}: checksum/config does not match the ConfigMap")
    # Services point at the named ports; the test pod asks gRPC health through the Service.
    for _, _, service in manifests["Service"]:
        for port in service["spec"]["ports"]:
            check(port["targetPort"] in ports, f"{label}: Service port {port}")
    tests = [doc for _, _, doc in manifests.get("Pod", []) if doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    check(len(tests) == 1 and tests[0]["spec"]["containers"][0]["args"][0] == "health", f"{label}: helm test pod")
    check(one(manifests, "ServiceAccount").get("automountServiceAccountToken") is False, f"{label}: service account token")
    return sts, container, config


def rules_of(manifests):
    """The PrometheusRule's alerts by name."""
    rule = one(manifests, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def promtool(manifests, label, tests=(ALERT_TESTS,)):
    """`promtool check rules` on the rendered rules and `promtool test rules` on alerts-test.yaml
    (the rules are rendered with namespace "search", release "ci" and additionalLabels
    {team: growth}, as the tests expect)."""
    binary = shutil.which("promtool")
    check(binary is not None, "promtool is not installed (scripts/install-promtool)")
    if binary is None:
        return
    rule = one(manifests, "PrometheusRule")
    with tempfile.TemporaryDirectory() as scratch:
        rules = Path(scratch) / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        for test in tests:
            shutil.copy(test, Path(scratch) / test.name)
        for args in (["check", "rules", str(rules)], ["test", "rules", *(t.name for t in tests)]):
            run = subprocess.run([binary, *args], cwd=scratch, capture_output=True, text=True)
            check(run.returncode == 0, f"{label}: promtool {' '.join(args[:2])}:\n{run.stdout}{run.stderr}")


def full_checks(manifests, values):
    """What the full values turn on beyond the common checks."""
    sts = one(manifests, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    container = container_of(sts)
    # The subchart values are accepted and change nothing; commonLabels reach every object.
    for kind, items in manifests.items():
        if kind == "NOTES":
            continue
        for path, _, doc in items:
            check(doc["metadata"].get("labels", {}).get("example.com/team") == "growth", f"full: commonLabels on {kind} {path}")
    # The extension values.
    check([c["name"] for c in pod["containers"]] == ["clerk-index", "log-shipper"], f"full: sidecars {pod['containers']}")
    check([c["name"] for c in pod.get("initContainers", [])] == ["wait-for-dns"], "full: initContainers")
    check(any(v["name"] == "extra-ca" for v in pod["volumes"]) and any(m["name"] == "extra-ca" for m in container["volumeMounts"]), "full: extraVolumes and mounts")
    check(container["envFrom"][1:] == values["extraEnvFrom"], f"full: extraEnvFrom {container['envFrom']}")
    check(pod.get("topologySpreadConstraints") == values["topologySpreadConstraints"], "full: topologySpreadConstraints")
    check(pod.get("priorityClassName") == "business-critical", "full: priorityClassName")
    check(sts["spec"].get("persistentVolumeClaimRetentionPolicy") == {"whenDeleted": "Retain", "whenScaled": "Delete"}, "full: PVC retention")
    # Egress: DNS to kube-dns, Clerk on 443 anywhere, the collector, the extra rule; no NATS.
    policy = one(manifests, "NetworkPolicy")
    check(policy["spec"]["policyTypes"] == ["Ingress", "Egress"], f"full: policy types {policy['spec']['policyTypes']}")
    egress = policy["spec"]["egress"]
    by_ports = {tuple(sorted((p["port"], p["protocol"]) for p in r["ports"])): r for r in egress}
    dns = by_ports.get(((53, "TCP"), (53, "UDP")))
    check(dns is not None and dns.get("to") == values["networkPolicy"]["egress"]["dns"]["to"], f"full: DNS egress {egress}")
    clerk = [r for r in egress if r["ports"] == [{"port": 443, "protocol": "TCP"}] and r.get("to") == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]]
    check(len(clerk) == 1, f"full: Clerk egress {egress}")
    otlp = by_ports.get(((4317, "TCP"),))
    check(otlp is not None and otlp.get("to") == values["networkPolicy"]["egress"]["otlp"]["to"], f"full: OTLP egress {egress}")
    receivers = by_ports.get(((8443, "TCP"),))
    check(receivers is not None and receivers.get("to") == values["networkPolicy"]["egress"]["destinations"]["to"], f"full: destinations egress {egress}")
    config = next(doc for _, _, doc in manifests["ConfigMap"] if not doc["metadata"]["name"].endswith("-dashboard"))["data"]
    check(config.get("CLERK_INDEX_DESTINATIONS_ALLOW_PRIVATE") == "true" and "CLERK_INDEX_DESTINATIONS_ALLOW_HTTP" not in config, f"full: destination address flags {config}")
    check(config.get("CLERK_INDEX_DESTINATION_FAILING_AFTER_SECS") == "3600", "full: destination retry window")
    check(values["networkPolicy"]["egress"]["extra"][0] in egress, "full: extra egress rule")
    check(((4222, "TCP"),) not in by_ports, "full: no NATS egress outside cluster mode")
    # NOTES with TLS and mutual TLS.
    notes = manifests["NOTES"]
    check("https://ci-clerk-index.search.svc:50051" in notes and "--ca-cert ca.crt" in notes and "--client-cert" in notes, f"full: NOTES with TLS:\n{notes}")
    check("dns:///ci-clerk-index-grpc.search.svc:50051" in notes, "full: NOTES name the balancing Service")
    # Alerts: the listed ones, each with a severity, a summary, the team label; promtool agrees.
    alerts = rules_of(manifests)
    expected = {"ClerkIndexWritesPaused", "ClerkIndexFreshnessLagHigh", "ClerkIndexCatchUpStale", "ClerkIndexWebhookSignatureFailures", "ClerkIndexReconcileFailing", "ClerkIndexBackfillStuck", "ClerkIndexClerkRateLimited"}
    check(set(alerts) == expected, f"full: alerts {sorted(alerts)}")
    for name, rule in alerts.items():
        check(rule["labels"].get("severity") in ("warning", "critical") and rule["labels"].get("team") == "growth" and rule["annotations"].get("summary"), f"full: {name} labels and annotations")
        check('job="ci-clerk-index", namespace="search"' in rule["expr"], f"full: {name} selects this release's series: {rule['expr']}")
    check(one(manifests, "PrometheusRule")["metadata"]["labels"].get("release") == "kube-prometheus-stack", "full: PrometheusRule labels")
    promtool(manifests, "full")
    # The dashboard: JSON Grafana imports, found by the sidecar's label, a query in every panel.
    dashboards = [doc for _, _, doc in manifests["ConfigMap"] if doc["metadata"]["name"].endswith("-dashboard")]
    check(len(dashboards) == 1, "full: one dashboard ConfigMap")
    if dashboards:
        check(dashboards[0]["metadata"]["labels"].get("grafana_dashboard") == "1", "full: dashboard label")
        board = json.loads(dashboards[0]["data"]["clerk-index.json"])
        check(board.get("uid") == "clerk-index" and len(board["panels"]) >= 10, "full: dashboard uid and panels")
        for panel in board["panels"]:
            check(panel["targets"] and all("clerk_index_" in t["expr"] for t in panel["targets"]), f"full: dashboard panel {panel['title']}")


def env_names_serve_reads(binary):
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"\[env: ([A-Z0-9_]+)=", help_text))
    # The OpenTelemetry variables serve's help says it honours.
    names |= set(re.findall(r"\b(OTEL_[A-Z_]+[A-Z])\b", help_text))
    # Read outside clap (secrets and lists from env or files).
    names |= {"CLERK_SECRET_KEY", "CLERK_WEBHOOK_SIGNING_SECRET", "CLERK_INDEX_API_KEYS", "CLERK_INDEX_SENSITIVE_KEYS", "RUST_LOG"}
    return names


def main():
    defaults = helm.Chart.load(str(CHART)).values
    full_values = helm.values_from_yaml(FULL.read_text())
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    known_env = env_names_serve_reads(binary) if binary else None

    # No image repository: the install fails and says how to build and push one.
    try:
        helm.Chart.load(str(CHART)).render({}, name="ci", namespace="search", is_install=True)
        failures.append("defaults: rendered without image.repository")
    except Exception as error:  # helm's template error
        check("docker build" in str(error) and "image.repository" in str(error), f"defaults: the missing image's message: {error}")

    # Default values (with an image): persistence, API keys from the Secret, plaintext gRPC.
    manifests = render(IMAGE, "defaults")
    sts, container, config = common_checks(manifests, "defaults")
    check([t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])] == ["data"], "defaults: no PVC template")
    check(container["args"] == ["serve"], f"defaults: args {container['args']}")
    env = {e["name"]: e for e in container["env"]}
    check(env["CLERK_INDEX_API_KEYS_FILE"]["value"].startswith("/etc/clerk-index/secrets/"), "defaults: API keys file")
    check("CLERK_INDEX_ALLOW_UNAUTHENTICATED" not in config["data"], "defaults: unauthenticated must be off")
    check(not any(k.startswith("CLERK_INDEX_DESTINATIONS_ALLOW") for k in config["data"]), "defaults: destinations refuse private addresses and plain http")
    check(not {"Ingress", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"} & set(manifests), "defaults: optional objects rendered")
    check(len(manifests["ConfigMap"]) == 1, "defaults: the dashboard is optional")
    check("https://" not in manifests["NOTES"] and "--ca-cert" not in manifests["NOTES"], "defaults: NOTES without TLS")
    check(not any(k.startswith("OTEL_") or k == "CLERK_INDEX_OTLP_ENDPOINT" for k in config["data"]), "defaults: tracing is off")
    check("PodDisruptionBudget" in manifests, "defaults: PodDisruptionBudget")

    # Everything on.
    manifests = render(full_values, "full")
    sts, container, config = common_checks(manifests, "full")
    args = container["args"]
    check("--tls-client-ca=/etc/clerk-index/client-ca/ca.crt" in args and "--tls-cert=/etc/clerk-index/tls/tls.crt" in args, f"full: TLS args {args}")
    env = {e["name"]: e for e in container["env"]}
    check("CLERK_INDEX_SENSITIVE_KEYS_FILE" in env, "full: sensitive keys file")
    check(config["data"]["CLERK_INDEX_SENSITIVE_PATHS"] == "private.ssn,private.medical.*", "full: sensitive paths")
    ingress = one(manifests, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    check([p["path"] for p in paths] == ["/webhooks/clerk"], f"full: the Ingress exposes only the webhook path: {paths}")
    policy = one(manifests, "NetworkPolicy")
    check(policy["spec"]["ingress"][0]["from"] == full_values["networkPolicy"]["grpcFrom"], "full: NetworkPolicy gRPC peers")
    secret_items = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"][0]["secret"]["items"]
    check({i["key"] for i in secret_items} == {"api-keys", "sensitive-keys"}, f"full: secret files {secret_items}")
    test_args = [doc for _, _, doc in manifests["Pod"]][0]["spec"]["containers"][0]["args"]
    check(any(a.startswith("--server=https://") for a in test_args), f"full: helm test over TLS: {test_args}")
    check("--client-cert=/etc/clerk-index/client/tls.crt" in test_args, f"full: helm test under mutual TLS: {test_args}")
    # Traces: the endpoint, the sampler, and pod identity as resource attributes.
    check(config["data"].get("CLERK_INDEX_OTLP_ENDPOINT") == full_values["tracing"]["otlpEndpoint"], "full: OTLP endpoint")
    check(config["data"].get("OTEL_TRACES_SAMPLER_ARG") == "0.25", f"full: sampler {config['data']}")
    names = [e["name"] for e in container["env"]]
    check("OTEL_RESOURCE_ATTRIBUTES" in names and names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), f"full: resource attributes come after the variables they expand: {names}")
    # The ServiceMonitor scrapes /metrics on the named http port of the main Service only.
    monitor = one(manifests, "ServiceMonitor")
    check(monitor.get("apiVersion") == "monitoring.coreos.com/v1", "full: ServiceMonitor apiVersion")
    check(monitor["metadata"]["labels"].get("release") == "kube-prometheus-stack", "full: ServiceMonitor labels")
    endpoints = monitor["spec"]["endpoints"]
    check([(e["port"], e["path"], e["interval"]) for e in endpoints] == [("http", "/metrics", "15s")], f"full: ServiceMonitor endpoints {endpoints}")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s["metadata"]["name"] for _, _, s in manifests["Service"] if selector.items() <= s["metadata"]["labels"].items()]
    check(selected == ["ci-clerk-index"], f"full: the ServiceMonitor selects {selected}")
    check(all(any(p["name"] == "http" for p in s["spec"]["ports"]) for _, _, s in manifests["Service"] if not s["metadata"]["name"].endswith("-grpc")), "full: http port on the Services")
    full_checks(manifests, full_values)

    # Variants: no persistence; explicitly unauthenticated.
    variant = copy.deepcopy(full_values)
    variant["persistence"] = {"enabled": False}
    variant["tracing"] = {"otlpEndpoint": ""}
    variant["auth"] = {"allowUnauthenticated": True}
    variant["sensitive"] = {"paths": []}
    manifests = render(variant, "variant")
    sts, container, config = common_checks(manifests, "variant")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    check("emptyDir" in volumes.get("data", {}) and "volumeClaimTemplates" not in sts["spec"], "variant: emptyDir without persistence")
    check("secrets" not in volumes, "variant: no secret files needed")
    check(config["data"].get("CLERK_INDEX_ALLOW_UNAUTHENTICATED") == "true", "variant: unauthenticated flag")
    egress_ports = [sorted(p["port"] for p in r["ports"]) for r in one(manifests, "NetworkPolicy")["spec"]["egress"]]
    check([53, 53] in egress_ports and [443] in egress_ports and [4317] not in egress_ports and [4222] not in egress_ports, f"variant: egress without tracing or NATS {egress_ports}")

    # Cluster mode: three replicas on NATS, each named after its pod, spread over nodes.
    clustered = copy.deepcopy(full_values)
    clustered["replicaCount"] = 3
    clustered["sensitive"] = {"paths": []}
    clustered["cluster"] = {"enabled": True, "natsUrl": "nats://nats.messaging:4222", "syncLeaseTtlSecs": 20, "streamReplicas": 3}
    manifests = render(clustered, "cluster")
    sts, container, config = common_checks(manifests, "cluster")
    env = {e["name"]: e for e in container["env"]}
    check(sts["spec"]["replicas"] == 3, "cluster: three replicas")
    check(config["data"].get("CLERK_INDEX_CLUSTER") == "nats://nats.messaging:4222", f"cluster: NATS URL {config['data']}")
    check(config["data"].get("CLERK_INDEX_SYNC_LEASE_TTL_SECS") == "20", "cluster: lease TTL")
    check(config["data"].get("CLERK_INDEX_CLUSTER_STREAM_REPLICAS") == "3", "cluster: stream replicas")
    check(config["data"].get("CLERK_INDEX_CLUSTER_REPLICAS") == "3", "cluster: each replica knows its share of Clerk's rate limit")
    check(env.get("CLERK_INDEX_REPLICA_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "cluster: replica id from the pod name")
    anti = sts["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
    preferred = anti.get("preferredDuringSchedulingIgnoredDuringExecution", [{}])[0].get("podAffinityTerm", {})
    check(preferred.get("topologyKey") == "kubernetes.io/hostname" and preferred.get("labelSelector", {}).get("matchLabels") == sts["spec"]["selector"]["matchLabels"], f"cluster: soft anti-affinity on the pods' own labels: {anti}")
    check("PodDisruptionBudget" in manifests and any(s["spec"].get("clusterIP") == "None" for _, _, s in manifests["Service"]), "cluster: PDB and headless Service")
    egress = one(manifests, "NetworkPolicy")["spec"]["egress"]
    nats = [r for r in egress if [p["port"] for p in r["ports"]] == [4222]]
    check(len(nats) == 1 and nats[0]["to"] == clustered["networkPolicy"]["egress"]["nats"]["to"], f"cluster: egress to NATS {egress}")
    alerts = rules_of(manifests)
    check("ClerkIndexReplicaBehind" in alerts, f"cluster: the replica-behind alert {sorted(alerts)}")
    promtool(manifests, "cluster", (ALERT_TESTS, CLUSTER_ALERT_TESTS))
    # Credentials in the URL: it comes from the Secret; hard anti-affinity.
    clustered["cluster"].update(natsUrl="", podAntiAffinity="hard")
    manifests = render(clustered, "cluster-secret")
    sts, container, config = common_checks(manifests, "cluster-secret")
    env = {e["name"]: e for e in container["env"]}
    check("CLERK_INDEX_CLUSTER" not in config["data"] and env.get("CLERK_INDEX_CLUSTER", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "nats-url", "cluster-secret: NATS URL from the Secret")
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    check("requiredDuringSchedulingIgnoredDuringExecution" in anti, f"cluster-secret: hard anti-affinity {anti}")
    # Sensitive paths work in cluster mode (sealed before they are published).
    sealed = render(dict(clustered, sensitive=full_values["sensitive"]), "cluster-sensitive")
    _, _, config = common_checks(sealed, "cluster-sensitive")
    check(config["data"].get("CLERK_INDEX_SENSITIVE_PATHS") == "private.ssn,private.medical.*", f"cluster-sensitive: sensitive paths in cluster mode {config['data']}")

    # Every variable the chart sets is one the binary reads.
    if known_env is not None:
        for values, label in ((IMAGE, "defaults"), (full_values, "full"), (variant, "variant"), (clustered, "cluster")):
            manifests = render(values, label)
            _, container, config = common_checks(manifests, label)
            names = set(config["data"]) | {e["name"] for e in container["env"]}
            # Variables that only feed $(NAME) expansion in other values are not for serve.
            expanded = {m for e in container["env"] for m in re.findall(r"\$\(([A-Z_]+)\)", e.get("value", ""))}
            unknown = {n for n in names if n not in known_env and n not in expanded and n != "TZ"}
            check(not unknown, f"{label}: variables serve does not read: {sorted(unknown)}")

    # The alert thresholds are values.
    tuned = copy.deepcopy(full_values)
    tuned["metrics"]["prometheusRule"].update(freshnessLagSeconds=600, backfillStuckFor="1h", seriesSelector='service="clerk"')
    alerts = rules_of(render(tuned, "tuned"))
    check("> 600" in alerts["ClerkIndexFreshnessLagHigh"]["expr"] and "[1h]" in alerts["ClerkIndexBackfillStuck"]["expr"], "tuned: thresholds")
    check(all('{service="clerk"' in rule["expr"] for rule in alerts.values()), "tuned: the series selector")

    # The schema refuses what cannot work.
    chart = helm.Chart.load(str(CHART))
    for bad in ({"replicaCount": 2}, {"replicaCount": 3, "cluster": {"enabled": False}}, {"cluster": {"natsUrl": "http://nats"}}, {"clerk": {"rateLimit": "fast"}}, {"config": {"logFormat": "xml"}}, {"config": {"columnCacheMb": "lots"}}, {"config": {"columnCacheMb": -1}}, {"unknownKey": 1}, {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}, {"metrics": {"prometheusRule": {"clerkRateLimitedRatio": 2}}}, {"sidecars": [{"image": "x"}]}):
        try:
            chart.validate_schema(bad)
            failures.append(f"schema accepted {bad}")
        except helm.HelmValuesError:
            pass
    check(defaults["replicaCount"] == 1, "defaults: one replica")

    if failures:
        print("helm chart check FAILED:")
        for failure in failures:
            print("  -", failure)
        print(f"0 passed, {len(failures)} failed")
        sys.exit(1)
    print("helm chart: lint, render and strict validation passed for default, full, variant and cluster values")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
