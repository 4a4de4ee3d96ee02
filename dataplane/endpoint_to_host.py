"""What happens to a workload's packets addressed to its own host, once the
workload's egress policy has allowed them (Felix's DefaultEndpointToHostAction).

`Drop` (Felix's default) stops them; `Accept` lets them in as far as this
agent is concerned; `Return` leaves the decision to the host's own firewall.
In nftables every table's chains on a hook see a packet (an accept in one
does not bypass another's drop), so `Accept` and `Return` differ only in
what our own counters and later rules see: both leave other tables to
decide, as `Return` does in Felix.  Neighbour discovery and MLD from a
workload to the host are always let through before this: IPv6 cannot work
without them.
"""

from __future__ import annotations

from enum import StrEnum


class EndpointToHostAction(StrEnum):
    """The configured action, spelt as in Calico."""

    DROP = "Drop"
    RETURN = "Return"
    ACCEPT = "Accept"

    @classmethod
    def parse(cls, text: str) -> EndpointToHostAction:
        """Calico's spellings in any case (`DROP`, `Accept`, ...); raises
        ValueError naming the accepted values."""
        for action in cls:
            if text.strip().lower() == action.value.lower():
                return action
        raise ValueError(f"{text!r} is not one of {', '.join(a.value for a in cls)}")

    @property
    def verdict(self) -> str:
        """The nft statement that ends a workload-to-host packet's way
        through our input chain."""
        return self.value.lower()
