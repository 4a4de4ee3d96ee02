"""Validation per field, as Calico's API validates: each invalid value is
refused with a reason label and a detail naming the field; valid resources of
every kind, in the shapes real clusters hold, are accepted unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from calico_model.errors import InvalidValue
from calico_model.validation import validate

V3 = "/calico/resources/v3/projectcalico.org"


def _v3(plural: str, kind: str, name: str, spec: Any, ns: str = "", **meta: Any) -> tuple[str, Any]:
    key = f"{V3}/{plural}/{ns + '/' if ns else ''}{name}"
    metadata = {"name": name, **({"namespace": ns} if ns else {}), **meta}
    return key, {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }


def gnp(**spec: Any) -> tuple[str, Any]:
    return _v3("globalnetworkpolicies", "GlobalNetworkPolicy", "g", {"selector": "all()", **spec})


def np_(name: str = "p", **spec: Any) -> tuple[str, Any]:
    return _v3("networkpolicies", "NetworkPolicy", name, spec, ns="shop")


def rule(**fields: Any) -> tuple[str, Any]:
    return gnp(ingress=[{"action": "Allow", **fields}])


def felix(**spec: Any) -> tuple[str, Any]:
    return _v3("felixconfigurations", "FelixConfiguration", "default", spec)


def pool(**spec: Any) -> tuple[str, Any]:
    return _v3("ippools", "IPPool", "p", spec)


def wep(**spec: Any) -> tuple[str, Any]:
    base = {"node": "n1", "interfaceName": "cali1", "ipNetworks": ["10.0.0.1/32"]}
    return _v3("workloadendpoints", "WorkloadEndpoint", "w", {**base, **spec}, ns="shop")


def hep(**spec: Any) -> tuple[str, Any]:
    return _v3("hostendpoints", "HostEndpoint", "h", {"node": "n1", **spec})


def refused(item: tuple[str, Any]) -> str:
    key, value = item
    with pytest.raises(InvalidValue) as info:
        validate(key, orjson.dumps(value))
    return str(info.value)


VALID = [
    rule(protocol="ICMP", icmp={"type": 8, "code": 0}),
    rule(protocol="ICMPv6", ipVersion=6, notICMP={"type": 128}),
    rule(protocol="TCP", notProtocol="UDP", destination={"ports": [443, "8000:8080", "http"]}),
    rule(destination={"ports": ["http"]}),  # a named port needs no protocol
    rule(protocol=132, source={"notPorts": [9]}),
    rule(source={"nets": ["fd00::/8"], "notNets": ["fd00:1::/32"]}, ipVersion=6),
    rule(source={"namespaceSelector": "global()"}),
    rule(source={"serviceAccounts": {"names": ["api"], "selector": "role == 'x'"}}),
    rule(source={"services": {"name": "kube-dns", "namespace": "kube-system"}}),
    rule(protocol="TCP", http={"methods": ["GET"]}),
    gnp(egress=[{"action": "Allow", "destination": {"services": {"name": "s", "namespace": "a"}}}]),
    gnp(preDNAT=True, applyOnForward=True, types=["Ingress"], ingress=[{"action": "Deny"}]),
    gnp(doNotTrack=True, applyOnForward=True, egress=[{"action": "Allow"}]),
    gnp(tier="security", order=10.5, types=["Ingress", "Egress"]),
    _v3("globalnetworkpolicies", "GlobalNetworkPolicy", "security.block", {"tier": "security"}),
    np_("default.allow", serviceAccountSelector="role == 'api'"),
    np_("knp.default.allow-dns"),
    _v3("tiers", "Tier", "security", {"order": 100, "defaultAction": "Pass"}),
    _v3("tiers", "Tier", "default", {"order": 1_000_000}),
    pool(cidr="fd00:10::/48", blockSize=122, vxlanMode="CrossSubnet"),
    pool(cidr="10.244.0.0/16", blockSize=26, ipipMode="Always", vxlanMode="Never"),
    wep(
        ipNetworks=["10.0.0.1/32", "fd00::1/128", "10.0.0.2"],
        ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
    ),
    hep(interfaceName="eth0", expectedIPs=["192.168.0.1", "fd00::1"], profiles=["kns.x"]),
    hep(interfaceName="*"),
    hep(expectedIPs=["10.1.1.1"], ports=[{"name": "ssh", "protocol": "TCP", "port": 22}]),
    felix(
        logSeverityScreen="Info",
        reportingInterval="0s",
        vxlanVNI=4096,
        vxlanPort=4789,
        ipipEnabled=True,
        routeRefreshInterval="1m30s",
        iptablesBackend="auto",
        failsafeInboundHostPorts=[{"protocol": "TCP", "port": 22}],
        routeTableRange={"min": 1, "max": 250},
    ),
    _v3(
        "nodes",
        "Node",
        "n1",
        {
            "bgp": {"ipv4Address": "10.0.0.1/24", "ipv6Address": "fd00::1/64"},
            "ipv4VXLANTunnelAddr": "10.244.0.1",
            "vxlanTunnelMACAddr": "66:00:00:00:00:01",
        },
    ),
    _v3(
        "profiles",
        "Profile",
        "kns.shop",
        {
            "labelsToApply": {
                "pcns.projectcalico.org/name": "shop",
                "pcns.kubernetes.io/metadata.name": "shop",
            }
        },
    ),
]


@pytest.mark.parametrize(
    "item", VALID, ids=lambda i: i[0].rsplit("/", 2)[-2] if isinstance(i, tuple) else ""
)
def test_valid_resources_are_accepted(item: tuple[str, Any]) -> None:
    key, value = item
    assert orjson.loads(validate(key, orjson.dumps(value)).canonical) == value


INVALID = [
    # rules
    (
        rule(protocol="TCP", destination={"ports": [0]}),
        "bad_port: spec.ingress[0].destination.ports[0]",
    ),
    (
        rule(protocol="TCP", destination={"ports": ["90:80"]}),
        "bad_port: spec.ingress[0].destination.ports[0]",
    ),
    (
        rule(destination={"ports": [80]}),
        "bad_port: spec.ingress[0].destination.ports[0]: a numeric port needs",
    ),
    (
        rule(protocol="ICMP", destination={"ports": [80]}),
        "bad_port: spec.ingress[0].destination.ports[0]: protocol ICMP",
    ),
    (rule(protocol="ICMP", icmp={"type": 255}), "bad_icmp: spec.ingress[0].icmp.type"),
    (rule(protocol="ICMP", icmp={"type": 3, "code": 256}), "bad_icmp: spec.ingress[0].icmp.code"),
    (
        rule(protocol="ICMP", icmp={"code": 1}),
        "bad_icmp: spec.ingress[0].icmp.code: an ICMP code needs",
    ),
    (rule(protocol="TCP", icmp={"type": 8}), "bad_icmp: spec.ingress[0].icmp: ICMP fields need"),
    (rule(protocol="ICMP", ipVersion=6), "bad_ip_version: spec.ingress[0].protocol"),
    (rule(notProtocol="ICMPv6", ipVersion=4), "bad_ip_version: spec.ingress[0].notProtocol"),
    (rule(ipVersion=5), "bad_ip_version: spec.ingress[0].ipVersion"),
    (
        rule(source={"nets": ["10.0.0.0/8"]}, destination={"nets": ["fd00::/8"]}),
        "bad_ip_version: spec.ingress[0].destination.nets[0]: the rule mixes",
    ),
    (
        rule(source={"nets": ["10.0.0.0/8"]}, ipVersion=6),
        "bad_ip_version: spec.ingress[0].source.nets[0]",
    ),
    (rule(source={"notNets": ["0.0.0.0/0"]}), "bad_cidr: spec.ingress[0].source.notNets[0]"),
    (rule(protocol="QUIC"), "bad_protocol: spec.ingress[0].protocol"),
    (rule(notProtocol=0), "bad_protocol: spec.ingress[0].notProtocol"),
    (rule(source={"selector": "global()"}), "bad_selector: spec.ingress[0].source.selector"),
    (
        rule(source={"namespaceSelector": "global() && a == 'b'"}),
        "bad_selector: spec.ingress[0].source.namespaceSelector",
    ),
    (rule(source={"selector": "a = 'b'"}), "bad_selector: spec.ingress[0].source.selector"),
    (
        rule(source={"services": {"name": "dns"}}),
        "bad_field: spec.ingress[0].source.services.namespace",
    ),
    (
        rule(source={"services": {"name": "dns", "namespace": "x"}, "selector": "a == 'b'"}),
        "bad_field: spec.ingress[0].source.services: cannot be combined with selector",
    ),
    (
        rule(destination={"services": {"name": "dns", "namespace": "x"}}),
        "bad_field: spec.ingress[0].destination.services: not allowed",
    ),
    (
        gnp(ingress=[{"action": "Deny", "http": {"methods": ["GET"]}}]),
        "bad_rule: spec.ingress[0].http",
    ),
    (gnp(ingress=[{"action": "Maybe"}]), "bad_action: spec.ingress[0].action"),
    # policies
    (gnp(types=["Ingress", "Ingress"]), "bad_field: spec.types"),
    (gnp(types=["Sideways"]), "bad_field: spec.types[0]"),
    (gnp(order="first"), "bad_field: spec.order"),
    (gnp(tier="Security"), "bad_name: spec.tier"),
    (gnp(preDNAT=True, doNotTrack=True, applyOnForward=True), "bad_field: spec.preDNAT"),
    (gnp(preDNAT=True), "bad_field: spec.applyOnForward"),
    (
        gnp(preDNAT=True, applyOnForward=True, egress=[{"action": "Allow"}]),
        "bad_field: spec.egress",
    ),
    (gnp(selector="global()"), "bad_selector: spec.selector"),
    (gnp(namespaceSelector="has("), "bad_selector: spec.namespaceSelector"),
    (np_("a.b.c"), "bad_name: metadata.name"),
    (np_("Upper"), "bad_name: metadata.name"),
    (_v3("globalnetworkpolicies", "GlobalNetworkPolicy", "a.b.c", {}), "bad_name: metadata.name"),
    (_v3("tiers", "Tier", "my.tier", {}), "bad_name: metadata.name"),
    (_v3("tiers", "Tier", "t", {"defaultAction": "Allow"}), "bad_action: spec.defaultAction"),
    # names and labels
    (_v3("nodes", "Node", "Node_1", {}), "bad_name: metadata.name"),
    (_v3("nodes", "Node", "n1", {}, labels={"bad key!": "x"}), "bad_label: metadata.labels"),
    (_v3("nodes", "Node", "n1", {}, labels={"-x": "y"}), "bad_label: metadata.labels"),
    (_v3("nodes", "Node", "n1", {}, labels={"UPPER.example/x": "y"}), "bad_label: metadata.labels"),
    (_v3("nodes", "Node", "n1", {}, labels={"x": "v" * 64}), "bad_label: metadata.labels"),
    (
        _v3("profiles", "Profile", "kns.x", {"labelsToApply": {"a b": "c"}}),
        "bad_label: spec.labelsToApply",
    ),
    # nodes, pools, endpoints
    (
        _v3("nodes", "Node", "n1", {"bgp": {"ipv4Address": "fd00::1/64"}}),
        "bad_cidr: spec.bgp.ipv4Address",
    ),
    (
        _v3("nodes", "Node", "n1", {"vxlanTunnelMACAddr": "zz:00"}),
        "bad_field: spec.vxlanTunnelMACAddr",
    ),
    (pool(cidr="10.244.0.1/16"), "bad_cidr: spec.cidr"),
    (pool(cidr="10.244.0.0/16", blockSize=33), "bad_field: spec.blockSize"),
    (pool(cidr="fd00::/48", blockSize=26), "bad_field: spec.blockSize"),
    (pool(cidr="10.0.0.0/28"), "bad_cidr: spec.cidr: the pool is smaller"),
    (pool(cidr="10.0.0.0/8", ipipMode="Always", vxlanMode="Always"), "bad_field: spec.vxlanMode"),
    (pool(cidr="fd00::/48", ipipMode="Always"), "bad_field: spec.ipipMode"),
    (pool(cidr="10.0.0.0/8", ipipMode="Sometimes"), "bad_field: spec.ipipMode"),
    (wep(ipNetworks=["10.0.0.0/24"]), "bad_cidr: spec.ipNetworks[0]: must be a single address"),
    (wep(interfaceName="a-very-long-interface-name"), "bad_name: spec.interfaceName"),
    (
        wep(ports=[{"name": "http", "protocol": "ICMP", "port": 80}]),
        "bad_protocol: spec.ports[0].protocol",
    ),
    (
        wep(ports=[{"name": "Http_1", "protocol": "TCP", "port": 80}]),
        "bad_port: spec.ports[0].name",
    ),
    (wep(ports=[{"name": "http", "protocol": "TCP", "port": 0}]), "bad_port: spec.ports[0].port"),
    (hep(), "bad_field: spec.interfaceName: give interfaceName or expectedIPs"),
    (hep(expectedIPs=["10.0.0.0/8"]), "bad_cidr: spec.expectedIPs[0]"),
    (_v3("hostendpoints", "HostEndpoint", "h", {"interfaceName": "eth0"}), "bad_name: spec.node"),
    # Felix configuration
    (felix(vxlanPort=70000), "bad_field: spec.vxlanPort"),
    (felix(logSeverityScreen="Loud"), "bad_field: spec.logSeverityScreen"),
    (felix(reportingInterval="soon"), "bad_field: spec.reportingInterval"),
    (felix(ipipEnabled="yes"), "bad_field: spec.ipipEnabled"),
    (felix(healthPort=-1), "bad_field: spec.healthPort"),
    (felix(routeTableRange={"min": 10, "max": 5}), "bad_field: spec.routeTableRange"),
    (felix(iptablesBackend="Fast"), "bad_field: spec.iptablesBackend"),
    (felix(turboMode=True), "unknown_field: spec.turboMode"),
]


@pytest.mark.parametrize(
    ("item", "expected"), INVALID, ids=lambda x: x if isinstance(x, str) else ""
)
def test_invalid_fields_are_refused_naming_the_field(item: tuple[str, Any], expected: str) -> None:
    assert refused(item).startswith(expected)


def test_a_felix_configuration_from_an_older_release_stays_valid() -> None:
    key, value = felix(iptablesLockTimeout="0s", programRoutes="Enabled", logSeverityScreen="Info")
    validate(key, orjson.dumps(value))
