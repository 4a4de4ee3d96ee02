"""Validation of FelixConfiguration resources, as Calico's API validates them
(per field, from the field table; the first problem found is reported).
Endpoints, policies, nodes, pools and blocks are read, and so validated, by
`endpoints`, `policies` and `topology`."""

from __future__ import annotations

from typing import Any

from calico_model.errors import Reason
from calico_model.felix_config_fields import FIELDS
from calico_model.fields import fail


def check_felix_config(spec: dict[str, Any], name: str) -> None:
    """A FelixConfiguration's spec: every field one Calico defines, each
    within its type, enumeration and range; the rules between fields."""
    for key, value in spec.items():
        field = FIELDS.get(key)
        if field is None:
            raise fail(Reason.UNKNOWN_FIELD, f"spec.{key[:60]}", "not a FelixConfiguration field")
        if (problem := field.problem(value)) is not None:
            raise fail(Reason.BAD_FIELD, f"spec.{key}", problem)
    if "routeTableRange" in spec and "routeTableRanges" in spec:
        raise fail(
            Reason.BAD_FIELD, "spec.routeTableRanges", "routeTableRange is set too: give one"
        )
    # The cluster-wide and per-node configurations apply by name; a selector
    # on them would say something else.
    if (name == "default" or name.startswith("node.")) and "nodeSelector" in spec:
        raise fail(Reason.BAD_FIELD, "spec.nodeSelector", f"not allowed on {name!r}")
