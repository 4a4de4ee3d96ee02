"""Compiling Calico rules (pure functions), with Calico's semantics.

A rule side's selectors are combined the way Calico's datastore layer does it
before Felix sees them:

* `namespaceSelector` reads the namespace labels endpoints inherit from their
  `kns.<ns>` profile, which already carry the `pcns.` prefix; in it `all()`
  means "any namespaced endpoint" and `global()` "any endpoint with no
  namespace" (host endpoints);
* in a namespaced policy, a side that uses any selector field (`selector`,
  `notSelector`, `serviceAccounts`, `namespaceSelector`) is limited to the
  policy's namespace unless it gives a namespaceSelector: so a lone
  `notSelector` means "in this namespace and not ...", never "anywhere else";
* `serviceAccounts.names` matches the endpoint label
  `projectcalico.org/serviceaccount`, `serviceAccounts.selector` the `pcsa.`
  labels inherited from the `ksa.<ns>.<name>` profile.

A rule is compiled once into a `RuleSpec` and rendered per IP family: a rule
whose `ipVersion`, nets or ICMP flavour belong to the other family cannot
match there and is left out of that family's chain.  A `services` match
(it needs Kubernetes endpoint data that etcd does not hold) makes the rule
match nothing, whatever its action: never everything.  An `http` match is
L7, which Felix itself ignores at L3/L4: an Allow or Pass rule with one
matches nothing (narrower than Felix), a Deny or Log rule matches as if it
were not there (exactly Felix's reading).  Either way the reason is
counted.  A value the agent cannot read makes the rule match nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from calico_model import fields
from calico_model.errors import InvalidValue, SelectorError
from calico_model.protocols import protocol_number
from calico_model.selector import (
    All,
    And,
    Compare,
    Has,
    In,
    Not,
    Selector,
    conjoin,
    prefixed,
    replace_all,
)
from calico_model.selector import parse as parse_selector
from dataplane.batch import Action, IpSetId, Match, Rule
from felix_client.calc.model import IPNet, net

NS_LABEL = "projectcalico.org/namespace"
SA_LABEL = "projectcalico.org/serviceaccount"
NS_PREFIX = "pcns."
SA_PREFIX = "pcsa."
ICMP, ICMPV6 = 1, 58


class Unenforceable(StrEnum):
    """Why a rule was compiled to match nothing (the metric label)."""

    SERVICES = "services"
    HTTP = "http"
    BAD_FIELD = "bad_field"
    BAD_SELECTOR = "bad_selector"


class _Skip(Exception):
    def __init__(self, reason: Unenforceable) -> None:
        self.reason = reason


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _set(v: Any) -> bool:
    """Calico treats an empty string or list as not given."""
    return v is not None and v != "" and v != [] and v != {}


def _sel(text: Any) -> Selector:
    if not isinstance(text, str):
        raise SelectorError(repr(text)[:40], 0, "a selector must be a string")
    return parse_selector(text)


def namespace_selector(text: Any) -> Selector:
    """A namespaceSelector as a selector over endpoint labels.  Raises
    SelectorError."""
    return replace_all(prefixed(_sel(text), NS_PREFIX), Has(NS_LABEL), Not(Has(NS_LABEL)))


def service_account_selector(sam: Any) -> Selector | None:
    """A `serviceAccounts: {names, selector}` match as an endpoint selector.
    Raises SelectorError."""
    sam = _dict(sam)
    parts: list[Selector] = []
    if _set(sam.get("selector")):
        parts.append(prefixed(_sel(sam["selector"]), SA_PREFIX))
    names = sam.get("names")
    if _set(names):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SelectorError(repr(names)[:40], 0, "names must be a list of strings")
        parts.append(In(SA_LABEL, frozenset(names)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


@dataclass(frozen=True, slots=True)
class SideSpec:
    """One compiled rule side, before it is split by IP family."""

    nets: tuple[IPNet, ...] = ()
    not_nets: tuple[IPNet, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    port_names: tuple[str, ...] = ()
    not_port_names: tuple[str, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None

    def for_family(self, family: int, protocol: int | None) -> Match | None:
        """This side in one family's chain, or None if it cannot match there."""
        nets = tuple(str(n) for n in self.nets if n.version == family)
        if self.nets and not nets:
            return None
        sel = str(self.selector) if self.selector is not None else None
        named_sel = sel or str(All())
        return Match(
            nets=nets,
            not_nets=tuple(str(n) for n in self.not_nets if n.version == family),
            ports=self.ports,
            not_ports=self.not_ports,
            named_ports=tuple(IpSetId(family, named_sel, p, protocol) for p in self.port_names),
            not_named_ports=tuple(
                IpSetId(family, named_sel, p, protocol) for p in self.not_port_names
            ),
            ipset=IpSetId(family, sel) if sel is not None else None,
            not_ipset=(
                IpSetId(family, str(self.not_selector)) if self.not_selector is not None else None
            ),
        )


def _nets(v: Any) -> tuple[IPNet, ...]:
    if not _set(v):
        return ()
    if not isinstance(v, list):
        raise _Skip(Unenforceable.BAD_FIELD)
    out = []
    for text in v:
        n = net(text)
        if n is None:
            raise _Skip(Unenforceable.BAD_FIELD)
        out.append(n)
    return tuple(out)


def _ports(v: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric ports and ranges, port names), read as the server validates them."""
    if not _set(v):
        return (), ()
    if not isinstance(v, list):
        raise _Skip(Unenforceable.BAD_FIELD)
    numeric: list[str] = []
    names: list[str] = []
    for p in v:
        try:
            named = fields.port(p, "port")
        except InvalidValue:
            raise _Skip(Unenforceable.BAD_FIELD) from None
        (names if named else numeric).append(str(p))
    return tuple(numeric), tuple(names)


# Actions for which ignoring `http` narrows access (the rule matches more
# packets): Deny drops more, Log logs more.
_HTTP_IGNORED_FOR = frozenset({Action.DENY, Action.LOG})


def compile_side(ent: Any, namespace: str) -> SideSpec:
    """One rule side with its selectors combined as Calico combines them.
    Raises _Skip."""
    ent = _dict(ent)
    if _set(ent.get("services")):
        raise _Skip(Unenforceable.SERVICES)
    ns_sel: Selector | None = None
    if _set(ent.get("namespaceSelector")):
        ns_sel = namespace_selector(ent["namespaceSelector"])
    elif namespace:
        ns_sel = Compare(NS_LABEL, "==", namespace)
    parts: list[Selector] = []
    if (sa := service_account_selector(ent.get("serviceAccounts"))) is not None:
        parts.append(sa)
    if _set(ent.get("selector")):
        parts.append(_sel(ent["selector"]))
    selector: Selector | None = None
    if parts:
        selector = parts[0] if len(parts) == 1 else And(tuple(parts))
    not_sel = _sel(ent["notSelector"]) if _set(ent.get("notSelector")) else None
    if ns_sel is not None and (
        selector is not None or not_sel is not None or _set(ent.get("namespaceSelector"))
    ):
        selector = ns_sel if selector is None else conjoin(ns_sel, selector)
    ports, names = _ports(ent.get("ports"))
    not_ports, not_names = _ports(ent.get("notPorts"))
    return SideSpec(
        nets=_nets(ent.get("nets")),
        not_nets=_nets(ent.get("notNets")),
        ports=ports,
        not_ports=not_ports,
        port_names=names,
        not_port_names=not_names,
        selector=selector,
        not_selector=not_sel,
    )


def _icmp(v: Any) -> tuple[int | None, int | None]:
    if not _set(v):
        return None, None
    v = _dict(v)
    t, c = v.get("type"), v.get("code")
    for x in (t, c):
        if x is not None and (not isinstance(x, int) or isinstance(x, bool)):
            raise _Skip(Unenforceable.BAD_FIELD)
    if c is not None and t is None:
        raise _Skip(Unenforceable.BAD_FIELD)
    return t, c


def _proto(v: Any) -> int | None:
    if v is None:
        return None
    n = protocol_number(v)
    if n is None:
        raise _Skip(Unenforceable.BAD_FIELD)
    return n


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One compiled rule, before it is split by IP family."""

    action: Action
    ip_version: int | None
    protocol: int | None
    not_protocol: int | None
    icmp: tuple[int | None, int | None]
    not_icmp: tuple[int | None, int | None]
    src: SideSpec
    dst: SideSpec
    origin: str

    def for_family(self, family: int, group: str) -> Rule | None:
        """The rule in one family's chain, or None if it cannot match there."""
        if self.ip_version is not None and self.ip_version != family:
            return None
        if self.protocol == (ICMPV6 if family == 4 else ICMP):
            return None  # the other family's ICMP never occurs here
        src = self.src.for_family(family, self.protocol)
        dst = self.dst.for_family(family, self.protocol)
        if src is None or dst is None:
            return None
        return Rule(
            action=self.action,
            protocol=self.protocol,
            not_protocol=self.not_protocol,
            icmp_type=self.icmp[0],
            icmp_code=self.icmp[1],
            not_icmp_type=self.not_icmp[0],
            not_icmp_code=self.not_icmp[1],
            src=src,
            dst=dst,
            group=group,
            origin=self.origin,
        )


def compile_rule(
    raw: Any, namespace: str, origin: str, ignored: list[Unenforceable] | None = None
) -> RuleSpec:
    """One rule; raises _Skip (with the reason) if it must match nothing.
    Fields a Deny or Log rule keeps out of its match are appended to `ignored`."""
    try:
        return _compile_rule(_dict(raw), namespace, origin, [] if ignored is None else ignored)
    except SelectorError:
        raise _Skip(Unenforceable.BAD_SELECTOR) from None


def _compile_rule(
    r: dict[str, Any], namespace: str, origin: str, ignored: list[Unenforceable]
) -> RuleSpec:
    try:
        action = Action(str(r.get("action")))
    except ValueError:
        raise _Skip(Unenforceable.BAD_FIELD) from None
    if _set(r.get("http")):
        if action not in _HTTP_IGNORED_FOR:
            raise _Skip(Unenforceable.HTTP)
        ignored.append(Unenforceable.HTTP)
    ipv = r.get("ipVersion")
    if ipv is not None and ipv not in (4, 6):
        raise _Skip(Unenforceable.BAD_FIELD)
    return RuleSpec(
        action=action,
        ip_version=ipv,
        protocol=_proto(r.get("protocol")),
        not_protocol=_proto(r.get("notProtocol")),
        icmp=_icmp(r.get("icmp")),
        not_icmp=_icmp(r.get("notICMP")),
        src=compile_side(r.get("source"), namespace),
        dst=compile_side(r.get("destination"), namespace),
        origin=origin,
    )


def compile_rules(
    raw: Any, namespace: str, origin: str, problems: list[Unenforceable]
) -> tuple[RuleSpec, ...]:
    """A rule list; rules that must match nothing are left out and their
    reasons appended to `problems`, as are the fields a Deny or Log rule
    matches without."""
    out = []
    for r in raw if isinstance(raw, list) else []:
        try:
            out.append(compile_rule(r, namespace, origin, problems))
        except _Skip as skip:
            problems.append(skip.reason)
    return tuple(out)
