"""Which destinations a natOutgoing pool's traffic keeps its own source
address to (Felix's NATOutgoingExclusions).

`IPPoolsOnly` (Felix's default): only addresses in some IP pool; a pod's
packet to anything else, other nodes included, leaves with its node's
address.  `IPPoolsAndHostIPs`: the cluster's node addresses too, so a node
sees the pod that spoke to it.
"""

from __future__ import annotations

from enum import StrEnum


class NatOutgoingExclusions(StrEnum):
    """The configured exclusions, spelt as in Calico."""

    IPPOOLS_ONLY = "IPPoolsOnly"
    IPPOOLS_AND_HOST_IPS = "IPPoolsAndHostIPs"

    @classmethod
    def parse(cls, text: str) -> NatOutgoingExclusions:
        """Calico's spellings, exactly (its API checks them case-sensitively);
        raises ValueError naming the accepted values."""
        for value in cls:
            if text.strip() == value.value:
                return value
        raise ValueError(f"{text!r} is not one of {', '.join(v.value for v in cls)}")

    @property
    def excludes_hosts(self) -> bool:
        """Whether node addresses are left untranslated."""
        return self is NatOutgoingExclusions.IPPOOLS_AND_HOST_IPS
