"""Validation of datastore values before they enter the synced state.

`validate(key, raw)` returns the value's canonical JSON bytes, or raises
InvalidValue with a short `reason` used as the metric label.  Anything that
fails is treated as absent from the state.

`validate` is total: whatever a value does to the code that reads it (nesting
past what the canonical encoder accepts, a number Python refuses to convert, a
bug of ours), the outcome is InvalidValue, never another exception.  The
syncer and everything that reads etcd directly (`admit`) rely on that: one
value must never stop the server following the datastore.  Sizes are bounded
explicitly (MAX_DEPTH, selector limits, port digits) so no recursion limit
decides what is valid.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from calico_model import endpoints, felix_configuration, fields, policies, topology
from calico_model.endpoints import Endpoint
from calico_model.errors import InvalidValue, Reason
from calico_model.fields import DNS_LABEL
from calico_model.keys import (
    BLOCK_PATH,
    BLOCK_PATH_V6,
    V3_PATH,
    V3_PLURALS,
    KeyLayout,
    Kind,
    ResourceKey,
)
from calico_model.policies import Policy, Profile, StagedPolicy, Tier
from calico_model.topology import Block, Node, Pool
from snapshot import canonical_json

# Deepest JSON nesting accepted.  Real Calico objects nest under 10 levels;
# the canonical encoder refuses anything past 254, and the agent's code
# recurses over rule structures.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Validated:
    """A value that passed validation: its canonical JSON bytes and the decoded object."""

    canonical: bytes
    value: dict[str, Any]


def validate(key: str, raw: bytes, prefix: str = "/calico/") -> Validated:
    """The value's canonical form, or InvalidValue (and nothing else)."""
    try:
        return _validate(key, raw, prefix)
    except InvalidValue:
        raise
    except Exception as exc:  # see the module docstring: validate is total
        raise InvalidValue(
            Reason.UNPROCESSABLE, f"{type(exc).__name__}: {str(exc)[:120]}"
        ) from None


def admit(raw_key: bytes, raw_value: bytes, prefix: str) -> tuple[str, bytes]:
    """(key, canonical value) for a datastore entry, or InvalidValue.  The
    one gate every reader of etcd uses, so they all agree on the state."""
    try:
        key = raw_key.decode()
    except UnicodeDecodeError:
        raise InvalidValue(Reason.KEY_NOT_UTF8, f"key {raw_key[:80]!r} is not UTF-8") from None
    return key, validate(key, raw_value, prefix).canonical


def _validate(key: str, raw: bytes, prefix: str) -> Validated:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(Reason.NOT_JSON, str(exc)[:120]) from None
    if not isinstance(value, dict):
        raise InvalidValue(Reason.NOT_OBJECT, f"value is a JSON {type(value).__name__}")
    layout = _layout(prefix)
    rk = layout.parse(key)
    if rk is None:
        _check_depth(value)
        _check_unparsed(key, layout)
    else:
        check_resource(rk, value)
    return Validated(canonical_json(value), value)


def check_resource(rk: ResourceKey, value: dict[str, Any]) -> Resource | None:
    """Check one decoded value of a known key the way `validate` does; return
    its typed model where the kind has one (None for the others).  Raises
    InvalidValue naming the field.  The agent calls this on what it
    receives, so it accepts exactly what the server serves."""
    _check_depth(value)
    if rk.kind is Kind.IPAM_BLOCK:
        return topology.read_block(rk.name, value)
    return _check_v3(rk, value)


@functools.lru_cache(maxsize=8)
def _layout(prefix: str) -> KeyLayout:
    return KeyLayout(prefix)


def _check_unparsed(key: str, layout: KeyLayout) -> None:
    """A key of a kind we know that does not parse is refused: served, the
    agent could not tell which resource it is."""
    v3 = layout.prefix + V3_PATH
    if key.startswith(v3) and key[len(v3) :].partition("/")[0] in V3_PLURALS:
        raise InvalidValue(Reason.BAD_KEY, f"not <plural>/[<namespace>/]<name>: {key[:200]!r}")
    if key.startswith((layout.prefix + BLOCK_PATH, layout.prefix + BLOCK_PATH_V6)):
        raise InvalidValue(Reason.BAD_KEY, f"not a block key: {key[:200]!r}")


def _check_depth(node: dict[str, Any] | list[Any], depth: int = 1) -> None:
    """Recursive, but never deeper than MAX_DEPTH + 1 frames (far below the
    interpreter's limit): it stops at the first level past the bound."""
    if depth > MAX_DEPTH:
        raise InvalidValue(Reason.TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, dict | list):
            _check_depth(child, depth + 1)


_LABEL_RE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME_PATTERNS = {
    Kind.NETWORK_POLICY: re.compile(
        f"^(({_LABEL_RE})(\\.{_LABEL_RE})?|((knp|ossg)\\.default\\.{_LABEL_RE}(\\.{_LABEL_RE})*))\\Z"
    ),
    Kind.GLOBAL_NETWORK_POLICY: re.compile(f"^({_LABEL_RE}\\.)?{_LABEL_RE}\\Z"),
    Kind.TIER: DNS_LABEL,
}
# A staged policy is named as the policy it would become.
_NAME_PATTERNS[Kind.STAGED_NETWORK_POLICY] = _NAME_PATTERNS[Kind.NETWORK_POLICY]
_NAME_PATTERNS[Kind.STAGED_GLOBAL_NETWORK_POLICY] = _NAME_PATTERNS[Kind.GLOBAL_NETWORK_POLICY]


def _check_v3(rk: ResourceKey, value: dict[str, Any]) -> Resource | None:
    kind = rk.kind.value
    if value.get("kind") != kind:
        raise InvalidValue(
            Reason.KIND_MISMATCH, f"kind: key says {kind}, value says {value.get('kind')!r:.40}"
        )
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidValue(Reason.BAD_METADATA, "metadata: must be an object")
    ns, name = rk.namespace, rk.name
    if ns and meta.get("namespace") != ns:
        raise InvalidValue(
            Reason.NAMESPACE_MISMATCH,
            f"metadata.namespace: key says {ns!r}, value says {meta.get('namespace')!r:.60}",
        )
    if meta.get("name") != name:
        raise InvalidValue(
            Reason.NAME_MISMATCH,
            f"metadata.name: key says {name!r}, value says {meta.get('name')!r:.60}",
        )
    pattern = _NAME_PATTERNS.get(rk.kind, fields.SUBDOMAIN)
    fields.name(name, "metadata.name", pattern, 63 if rk.kind is Kind.TIER else 253)
    if ns:
        fields.name(ns, "metadata.namespace", DNS_LABEL, 63)
    fields.labels(meta.get("labels"), "metadata.labels")
    fields.annotation_map(meta.get("annotations"), "metadata.annotations")
    spec = value.get("spec")
    if spec is None and rk.kind is Kind.TIER:
        spec = {}
    if not isinstance(spec, dict):
        raise InvalidValue(Reason.BAD_SPEC, "spec: must be an object")
    return _SPEC_CHECKS[rk.kind](spec, meta)


# The typed models the readers return (kinds without one return None).
Resource = Endpoint | Policy | StagedPolicy | Profile | Tier | Node | Pool | Block

# Each takes the spec and the (checked) metadata: a few names carry rules of
# their own (the well-known tiers, the `default` FelixConfiguration); the
# models carry the name and namespace the agent needs.
_SPEC_CHECKS: dict[Kind, Callable[[dict[str, Any], dict[str, Any]], Resource | None]] = {
    Kind.NODE: topology.read_node,
    Kind.IP_POOL: topology.read_pool,
    Kind.WORKLOAD_ENDPOINT: endpoints.read_workload,
    Kind.HOST_ENDPOINT: endpoints.read_host_endpoint,
    Kind.FELIX_CONFIGURATION: lambda spec, m: felix_configuration.check_felix_config(
        spec, m["name"]
    ),
    Kind.NETWORK_POLICY: lambda spec, m: policies.read_policy(spec, m, global_=False),
    Kind.GLOBAL_NETWORK_POLICY: lambda spec, m: policies.read_policy(spec, m, global_=True),
    Kind.STAGED_NETWORK_POLICY: lambda spec, m: policies.check_staged(spec, m, global_=False),
    Kind.STAGED_GLOBAL_NETWORK_POLICY: lambda spec, m: policies.check_staged(spec, m, global_=True),
    Kind.STAGED_KUBERNETES_NETWORK_POLICY: policies.check_staged_kubernetes,
    Kind.PROFILE: policies.read_profile,
    Kind.TIER: policies.read_tier,
}
