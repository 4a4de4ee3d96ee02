"""A Kubernetes NetworkPolicy spec (what a StagedKubernetesNetworkPolicy
stages) as the Calico policy Calico makes of it.

Calico's conversion, which this follows: the policy is a NetworkPolicy
named `knp.default.<name>` in the `default` tier at order 1000; its
selector is `projectcalico.org/orchestrator == 'k8s'` and the podSelector's
terms (`matchLabels` as `key == 'value'`, `matchExpressions` as `in`,
`not in`, `has`, `! has`); every ingress (egress) rule becomes Allow rules,
one per protocol of its ports and per peer: a peer's podSelector and
namespaceSelector (an empty one: every namespace) on the source
(destination), an ipBlock as nets and its `except` as notNets; ports
without a protocol are TCP, `endPort` makes a range, a name is a named
port; no ports is any protocol.  `policyTypes` absent: Ingress only, as
Calico's conversion reads it (the Kubernetes API fills it in when a policy
is written through it).

Every label key and value is checked as Kubernetes checks it before it is
written into a selector, so a value cannot change the selector's meaning.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico_model.errors import Reason
from calico_model.fields import fail, items, label_key, obj, string
from calico_model.fields import labels as check_labels

ORDER = 1000.0
NAME_PREFIX = "knp.default."
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_SPEC_FIELDS = frozenset({"podSelector", "ingress", "egress", "policyTypes"})


def _selector(v: Any, path: str, *, pods: bool) -> str | None:
    """A LabelSelector as Calico selector text; None for an absent one."""
    if v is None:
        return "projectcalico.org/orchestrator == 'k8s'" if pods else None
    sel = obj(v, path, Reason.BAD_SELECTOR)
    unknown = sorted(set(sel) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise fail(Reason.BAD_SELECTOR, f"{path}.{unknown[0]}", "is not a label selector field")
    match_labels = sel.get("matchLabels") or {}
    check_labels(match_labels, f"{path}.matchLabels")
    terms = ["projectcalico.org/orchestrator == 'k8s'"] if pods else []
    terms += [f"{k} == '{match_labels[k]}'" for k in sorted(match_labels)]
    for i, e in enumerate(items(sel.get("matchExpressions"), f"{path}.matchExpressions")):
        where = f"{path}.matchExpressions[{i}]"
        expr = obj(e, where, Reason.BAD_SELECTOR)
        key = string(expr.get("key"), f"{where}.key")
        label_key(key, f"{where}.key")
        op = expr.get("operator")
        values = items(expr.get("values"), f"{where}.values")
        if op not in _OPERATORS:
            raise fail(
                Reason.BAD_SELECTOR, f"{where}.operator", f"{op!r:.30} is not one of {_OPERATORS}"
            )
        if op in ("In", "NotIn"):
            if not values:
                raise fail(Reason.BAD_SELECTOR, f"{where}.values", f"{op} needs values")
            for j, val in enumerate(values):
                check_labels({key: val}, f"{where}.values[{j}]")
            quoted = ", ".join(f"'{val}'" for val in values)
            terms.append(f"{key} {'in' if op == 'In' else 'not in'} {{ {quoted} }}")
        else:
            if values:
                raise fail(Reason.BAD_SELECTOR, f"{where}.values", f"{op} takes no values")
            terms.append(f"has({key})" if op == "Exists" else f"! has({key})")
    if not terms:
        return "all()"  # an empty namespaceSelector: every namespace
    return " && ".join(terms)


def _cidr(v: Any, path: str) -> str:
    """A CIDR with its host bits cleared, as Calico's conversion writes it."""
    text = string(v, path)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise fail(Reason.BAD_CIDR, path, f"{text!r:.60} is not a CIDR") from None


def _peer(v: Any, path: str) -> dict[str, Any]:
    """One peer as the fields of a rule side."""
    peer = obj(v, path, Reason.BAD_RULE)
    unknown = sorted(set(peer) - {"podSelector", "namespaceSelector", "ipBlock"})
    if unknown:
        raise fail(Reason.BAD_RULE, f"{path}.{unknown[0]}", "is not a peer field")
    if "ipBlock" in peer:
        if "podSelector" in peer or "namespaceSelector" in peer:
            raise fail(Reason.BAD_RULE, path, "an ipBlock goes alone")
        block = obj(peer["ipBlock"], f"{path}.ipBlock", Reason.BAD_CIDR)
        side: dict[str, Any] = {"nets": [_cidr(block.get("cidr"), f"{path}.ipBlock.cidr")]}
        excepts = items(block.get("except"), f"{path}.ipBlock.except")
        if excepts:
            side["notNets"] = [
                _cidr(c, f"{path}.ipBlock.except[{i}]") for i, c in enumerate(excepts)
            ]
        return side
    if not peer:
        raise fail(
            Reason.BAD_RULE, path, "a peer needs a podSelector, namespaceSelector or ipBlock"
        )
    side = {"selector": _selector(peer.get("podSelector"), f"{path}.podSelector", pods=True)}
    if peer.get("namespaceSelector") is not None:
        side["namespaceSelector"] = _selector(
            peer["namespaceSelector"] or {}, f"{path}.namespaceSelector", pods=False
        )
    return side


def _ports(v: Any, path: str) -> dict[str | None, list[Any] | None]:
    """Ports by protocol (None: any protocol, every port); a protocol's
    list None: all its ports."""
    out: dict[str | None, list[Any] | None] = {}
    for i, p in enumerate(items(v, path)):
        where = f"{path}[{i}]"
        port = obj(p, where, Reason.BAD_PORT)
        if not port:
            return {None: None}
        proto = port.get("protocol", "TCP")
        if proto not in _PROTOCOLS:
            raise fail(
                Reason.BAD_PROTOCOL, f"{where}.protocol", f"{proto!r:.20} is not TCP, UDP or SCTP"
            )
        number = port.get("port")
        if number is None:
            if port.get("endPort") is not None:
                raise fail(Reason.BAD_PORT, f"{where}.endPort", "needs a port")
            out[proto] = None
            continue
        end = port.get("endPort")
        if end is not None:
            if not isinstance(number, int) or not isinstance(end, int) or end < number:
                raise fail(Reason.BAD_PORT, f"{where}.endPort", "must be a number not below port")
            value: Any = f"{number}:{end}"
        else:
            value = number
        if proto not in out or out[proto] is not None:
            out.setdefault(proto, [])
            listed = out[proto]
            assert listed is not None
            listed.append(value)
    return out or {None: None}


def _rules(v: Any, path: str, peers_field: str, *, ingress: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, r in enumerate(items(v, path)):
        where = f"{path}[{i}]"
        rule = obj(r, where, Reason.BAD_RULE)
        unknown = sorted(set(rule) - {peers_field, "ports"})
        if unknown:
            raise fail(Reason.BAD_RULE, f"{where}.{unknown[0]}", "is not a rule field")
        peers = [
            _peer(p, f"{where}.{peers_field}[{j}]")
            for j, p in enumerate(items(rule.get(peers_field), f"{where}.{peers_field}"))
        ] or [{}]
        by_protocol = _ports(rule.get("ports"), f"{where}.ports")
        for proto in sorted(by_protocol, key=lambda p: p or ""):
            ports = by_protocol[proto]
            for side in peers:
                out_rule: dict[str, Any] = {"action": "Allow"}
                if proto is not None:
                    out_rule["protocol"] = proto
                dst: dict[str, Any] = {"ports": ports} if ports else {}
                if ingress:
                    if side:
                        out_rule["source"] = side
                    if dst:
                        out_rule["destination"] = dst
                elif side or dst:
                    out_rule["destination"] = {**side, **dst}
                out.append(out_rule)
    return out


def calico_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The Calico NetworkPolicy spec of a Kubernetes NetworkPolicy spec.
    Raises InvalidValue naming the first bad field."""
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise fail(Reason.BAD_FIELD, f"spec.{unknown[0]}", "is not a NetworkPolicy field")
    selector = _selector(spec.get("podSelector") or {}, "spec.podSelector", pods=True)
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from", ingress=True)
    egress = _rules(spec.get("egress"), "spec.egress", "to", ingress=False)
    types = items(spec.get("policyTypes"), "spec.policyTypes")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise fail(
                Reason.BAD_FIELD, f"spec.policyTypes[{i}]", f"{t!r:.20} is not Ingress or Egress"
            )
    if not types:
        types = ["Ingress"]  # as Calico's conversion: egress rules then apply to nothing
    return {
        "tier": "default",
        "order": ORDER,
        "selector": selector,
        "types": sorted(set(types), key=["Ingress", "Egress"].index),
        "ingress": ingress,
        "egress": egress,
    }


def calico_name(name: str) -> str:
    """The name Calico gives the converted policy."""
    return NAME_PREFIX + name
