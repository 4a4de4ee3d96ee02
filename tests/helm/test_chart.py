"""The Helm chart, rendered with the real Helm SDK (helm-python-sdk, Helm v4
as a library), linted strictly, and every object validated against the
Kubernetes 1.30 schemas with kubernetes-validate in strict mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from helm_python.errors import HelmRenderError, HelmValuesError

CHART = Path(__file__).resolve().parents[2] / "helm" / "typha"
K8S = "1.30.0"
# Not in the Kubernetes schemas: checked by hand below.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Certificate", "Issuer"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tls-and-allow-lists": {
        "server": {
            "tls": {
                "enabled": True,
                "secret": "typha-tls",
                "allowedCNs": ["typha-agent"],
                "allowedURISANs": ["spiffe://cluster.local/ns/calico-system/sa/agent"],
            }
        },
        "agent": {"tls": {"secret": "typha-agent-tls"}},
    },
    "etcd-tls-and-auth": {
        "etcd": {
            "endpoints": "etcd.example:2379,etcd2.example:2379",
            "tlsSecret": "etcd-client",
            "serverName": "etcd.example",
            "username": "typha",
            "passwordSecret": "etcd-pass",
        },
    },
    "everything-optional-on": {
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "server": {"extraEnv": {"TYPHA_MAX_CONNECTIONS": "30000"}},
    },
    "cert-manager": {"certManager": {"enabled": True}},
    "memory-dataplane": {"agent": {"dataplane": "memory"}, "server": {"tls": {"enabled": False}}},
    "no-agents-no-pdb": {"agent": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "grafanaDashboard": {"enabled": True},
    },
    "operator-knobs": {
        "global": {"imageRegistry": "registry.example"},  # as a parent chart passes it
        "imagePullSecrets": [{"name": "regcred"}],
        "server": {
            "priorityClassName": "typha-critical",
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "infra", "operator": "Exists"}]}
                        ]
                    }
                }
            },
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/os": "linux", "pool": "infra"},
            "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
            "podLabels": {"team": "network"},
            "zoneSpread": False,
        },
        "agent": {
            "priorityClassName": "",
            "podAnnotations": {"example.com/scrape": "true"},
            "podLabels": {"team": "network"},
        },
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="typha", namespace="calico-system", is_install=True)
    objects = []
    for text in manifests.values():
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_valid_kubernetes_1_30(name: str) -> None:
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, K8S, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_defaults_describe_the_operations_story() -> None:
    objects = render({})
    (dep,) = by_kind(objects, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": 1}
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 30  # above the drain timeout
    assert pod["automountServiceAccountToken"] is False
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    (c,) = pod["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TYPHA_ETCD_ENDPOINTS"].count(":2379") == 3
    assert env["TYPHA_SHUTDOWN_TIMEOUT"] == "30"
    assert all(name.startswith("TYPHA_") for name in env)
    assert c["resources"]["limits"]["memory"] == "1Gi"
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert services["typha-headless"]["spec"]["clusterIP"] == "None"
    (ds,) = by_kind(objects, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "typha-headless:5473" in args  # agents discover every replica through DNS
    (sa,) = by_kind(objects, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert by_kind(objects, "Role") == []  # least RBAC: the server needs no API access
    assert by_kind(objects, "HorizontalPodAutoscaler") == []


def test_tls_secrets_are_mounted_and_configured() -> None:
    objects = render(VALUE_SETS["tls-and-allow-lists"] | VALUE_SETS["etcd-tls-and-auth"])
    (dep,) = by_kind(objects, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["TYPHA_TLS_ALLOWED_CNS"]["value"] == "typha-agent"
    assert env["TYPHA_ETCD_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "etcd-pass"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/typha/tls", "/etc/typha/etcd"} <= mounts
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "typha-tls"
    (ds,) = by_kind(objects, "DaemonSet")
    agent = ds["spec"]["template"]["spec"]
    assert "--tls-cert-file" in agent["containers"][0]["args"]
    assert agent["volumes"][0]["secret"]["secretName"] == "typha-agent-tls"


def test_optional_objects() -> None:
    objects = render(VALUE_SETS["everything-optional-on"])
    (dep,) = by_kind(objects, "Deployment")
    assert "replicas" not in dep["spec"]  # the HPA owns it
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 12
    (np,) = by_kind(objects, "NetworkPolicy")
    agent_rule = np["spec"]["ingress"][0]
    assert agent_rule["ports"] == [{"port": 5473, "protocol": "TCP"}]
    assert agent_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/component": "agent"
    }
    (sm,) = by_kind(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(
    "values",
    [
        {"server": {"replicas": 0}},
        {"server": {"agentPort": 70000}},
        {"server": {"logLevel": "LOUD"}},
        {"server": {"extraEnv": {"PATH": "/evil"}}},
        {"server": {"tls": {"enabled": True, "secret": ""}}},  # TLS without its secret
        {"agent": {"interfacePrefix": "cali;drop"}},
        {"agent": {"logLevel": "verbose"}},
        {"certManager": {"issuerRef": {"kind": "Vault"}}},
        {"etcd": {"endpoints": ""}},
        {"etcd": {"endpoints": "no-port"}},
        {"etcd": {"username": "typha"}},  # a user without a password secret
        {"agent": {"dataplane": "iptables"}},
        {"surprise": True},  # unknown top-level key
        {"serviceMonitor": {"interval": "often"}},
        {"imagePullSecrets": ["regcred"]},  # must be [{name: ...}]
        {"server": {"podAnnotations": {"a": 1}}},  # annotation values are strings
        {"prometheusRule": {"imbalanceRatio": 1}},
        {"server": {"affinty": {}}},  # a typo is still refused
    ],
)
def test_bad_values_are_refused(values: dict[str, Any]) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(HelmValuesError):
        chart.render(values, name="typha", namespace="calico-system")


def test_server_tls_without_agent_certificates_is_refused() -> None:
    chart = helm.Chart.load(CHART)
    values = {
        "server": {"tls": {"enabled": True, "secret": "typha-tls"}},
        "agent": {"tls": {"secret": ""}},
    }
    with pytest.raises(HelmRenderError, match=r"agent\.tls\.secret"):
        chart.render(values, name="typha", namespace="calico-system")


def _agent(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (ds,) = by_kind(render(values), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _arg(container: dict[str, Any], flag: str) -> str:
    args: list[str] = container["args"]
    return args[args.index(flag) + 1]


def test_default_agents_enforce_on_their_node() -> None:
    pod, c = _agent({})
    assert _arg(c, "--dataplane") == "linux"
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"  # typha-headless still resolves
    sc = c["securityContext"]
    assert sc["runAsUser"] == 0  # a non-root user keeps no added capability
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert "privileged" not in sc
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["sysctl-net"]["mountPath"] == "/host/proc/sys/net"
    assert not mounts["sysctl-net"].get("readOnly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["sysctl-net"]["hostPath"]["path"] == "/proc/sys/net"
    assert _arg(c, "--sysctl-root") == "/host/proc/sys"
    assert _arg(c, "--prefix") == "/calico/"
    assert _arg(c, "--interface-prefix") == "cali"
    # Calico's Kubernetes manifests' choice, not Felix's own Drop (values.yaml says why).
    assert _arg(c, "--default-endpoint-to-host-action") == "Accept"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    # TLS between agents and typha by default, from Secrets.
    assert _arg(c, "--tls-cert-file") == "/etc/typha/tls/tls.crt"
    assert volumes["tls"]["secret"]["secretName"] == "typha-agent-tls"
    (dep,) = by_kind(render({}), "Deployment")
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TYPHA_TLS_CERT_FILE"] == "/etc/typha/tls/tls.crt"
    assert env["TYPHA_TLS_ALLOWED_CNS"] == "typha-agent"


def test_the_agents_follow_the_servers_prefix() -> None:
    _, c = _agent({"etcd": {"prefix": "/other/"}})
    assert _arg(c, "--prefix") == "/other/"
    (dep,) = by_kind(render({"etcd": {"prefix": "/other/"}}), "Deployment")
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TYPHA_PREFIX"] == "/other/"


def test_memory_agents_stay_unprivileged() -> None:
    pod, c = _agent({"agent": {"dataplane": "memory"}})
    assert "hostNetwork" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "--sysctl-root" not in c["args"]
    assert all(v["name"] != "sysctl-net" for v in pod["volumes"])


def test_cert_manager_makes_both_secrets() -> None:
    objects = render({"certManager": {"enabled": True}})
    certs = {c["metadata"]["name"]: c["spec"] for c in by_kind(objects, "Certificate")}
    assert certs["typha-server"]["secretName"] == "typha-tls"
    assert "typha-headless" in certs["typha-server"]["dnsNames"]
    assert certs["typha-agent"]["secretName"] == "typha-agent-tls"
    assert certs["typha-agent"]["commonName"] == "typha-agent"  # in allowedCNs
    assert certs["typha-ca"]["isCA"] is True
    assert certs["typha-server"]["issuerRef"] == {"name": "typha-ca", "kind": "Issuer"}
    mine = {"name": "corp-ca", "kind": "ClusterIssuer"}
    objects = render({"certManager": {"enabled": True, "issuerRef": mine}})
    assert by_kind(objects, "Issuer") == []
    assert {c["spec"]["issuerRef"]["name"] for c in by_kind(objects, "Certificate")} == {"corp-ca"}


def test_defaults_follow_calico_for_scheduling() -> None:
    objects = render({})
    (dep,) = by_kind(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    (ds,) = by_kind(objects, "DaemonSet")
    agent = ds["spec"]["template"]["spec"]
    assert agent["priorityClassName"] == "system-node-critical"
    assert agent["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert agent["tolerations"] == [{"operator": "Exists"}]
    (c,) = agent["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_replicas_stay_discoverable_when_none_is_ready() -> None:
    # During an etcd outage every replica fails /readyz; the agents' name
    # must still resolve to them, as each holds a complete state.
    services = {s["metadata"]["name"]: s for s in by_kind(render({}), "Service")}
    assert services["typha-headless"]["spec"]["publishNotReadyAddresses"] is True
    assert services["typha"]["spec"].get("publishNotReadyAddresses") is not True


def test_operator_knobs_reach_the_pods() -> None:
    objects = render(VALUE_SETS["operator-knobs"])
    (dep,) = by_kind(objects, "Deployment")
    tmpl = dep["spec"]["template"]
    pod = tmpl["spec"]
    assert pod["priorityClassName"] == "typha-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "nodeAffinity" in pod["affinity"]
    assert pod["tolerations"][0]["key"] == "infra"
    assert pod["nodeSelector"]["pool"] == "infra"
    assert len(pod["topologySpreadConstraints"]) == 1
    assert tmpl["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"
    }
    assert tmpl["metadata"]["labels"]["team"] == "network"
    # The selector is unchanged, so extra labels never orphan old pods.
    assert "team" not in dep["spec"]["selector"]["matchLabels"]
    (ds,) = by_kind(objects, "DaemonSet")
    agent = ds["spec"]["template"]
    assert "priorityClassName" not in agent["spec"]
    assert agent["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert agent["metadata"]["annotations"] == {"example.com/scrape": "true"}


def test_monitoring_objects() -> None:
    objects = render(VALUE_SETS["monitoring"])
    (pm,) = by_kind(objects, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "agent"
    (rule,) = by_kind(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    # Each alert's own checks (for:, runbook_url, promtool unit tests) are in
    # test_alerts.py; here, that the chart renders all of them.
    assert set(alerts) == {
        "TyphaDown",
        "TyphaReplicaDown",
        "TyphaNoReplicaInSync",
        "TyphaReplicaNotInSync",
        "TyphaSourceCheckMismatch",
        "TyphaInternalErrors",
        "TyphaAgentDataplaneFailures",
        "TyphaAgentsNotReady",
        "TyphaAgentsStale",
        "TyphaSlowClientsDropped",
        "TyphaEtcdErrors",
        "TyphaConnectionImbalance",
    }
    # The job labels the Prometheus Operator gives the scrapes the chart makes.
    assert 'job="typha"' in alerts["TyphaDown"]["expr"]
    assert 'job="calico-system/typha-agent"' in alerts["TyphaAgentsNotReady"]["expr"]
    assert pm["metadata"]["name"] == "typha-agent"
    # Each replica is scraped once, through the Service named typha: the
    # only one the ServiceMonitor selects that has its port.
    (sm,) = by_kind(objects, "ServiceMonitor")
    wanted = sm["spec"]["selector"]["matchLabels"]
    port = sm["spec"]["endpoints"][0]["port"]
    scraped = [
        svc["metadata"]["name"]
        for svc in by_kind(objects, "Service")
        if wanted.items() <= svc["metadata"]["labels"].items()
        and port in {p["name"] for p in svc["spec"]["ports"]}
    ]
    assert scraped == ["typha"]
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "typha-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["typha.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "typha.json").read_text())
