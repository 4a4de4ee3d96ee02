"""Naming a source or destination: an address, or a workload endpoint by
its key, `<namespace>/<endpoint name>` or `<namespace>/<pod>`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from dataplane.trace import TraceError
from felix_client.calc.model import Endpoint

# Calico's workload endpoint names: node, orchestrator, pod, interface, each
# with its own dashes doubled, joined by single dashes.
_WEP_PART = re.compile(r"(?:[^-]|--)+")


def pod_of(endpoint_name: str) -> str | None:
    """The pod a Kubernetes workload endpoint name (`node-k8s-pod-eth0`)
    belongs to, or None."""
    parts = [str(p).replace("--", "-") for p in _WEP_PART.findall(endpoint_name)]
    return parts[2] if len(parts) == 4 and parts[1] == "k8s" else None


def resolve(name: str, endpoints: Mapping[str, Endpoint]) -> list[str]:
    """The keys of the workload endpoints `name` names: a key, or
    `<namespace>/<endpoint name>`, or `<namespace>/<pod>`."""
    if name in endpoints:
        return [name]
    ns, _, rest = name.partition("/")
    out = []
    for key, ep in endpoints.items():
        if ep.host or ep.namespace != ns:
            continue
        last = key.rsplit("/", 1)[-1]
        if rest in (last, pod_of(last)):
            out.append(key)
    return sorted(out)


def address_of(name: str, endpoints: Mapping[str, Endpoint], family: int | None = None) -> str:
    """The address of a source or destination given as an address or a
    name; a name's address of `family` (else its first).  Raises
    TraceError if it names no endpoint or several."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    keys = resolve(name, endpoints)
    if not keys:
        raise TraceError(f"{name!r:.80} is not an address or a workload endpoint")
    if len(keys) > 1:
        raise TraceError(f"{name!r:.80} names {len(keys)} endpoints: {', '.join(keys[:5])}")
    nets = [n for n in endpoints[keys[0]].nets if family is None or n.version == family]
    if not nets:
        raise TraceError(f"{keys[0]} has no IPv{family or ''} address")
    return nets[0].address
