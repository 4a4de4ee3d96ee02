"""Graph node: endpoints and profiles in, each endpoint's effective labels
out (its own labels, its namespace, and what its profiles apply)."""

from __future__ import annotations

from collections import defaultdict

from felix_client.calc.model import Endpoint
from felix_client.calc.policy_defs import ProfileDef, effective_labels


class EndpointLabels:
    """Holds every endpoint (local or not) and every profile.  Callers feed
    changes and then re-read `labels` for the keys they were told about."""

    def __init__(self) -> None:
        self.eps: dict[str, Endpoint] = {}
        self.profiles: dict[str, ProfileDef] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self._eps_by_profile: defaultdict[str, set[str]] = defaultdict(set)

    def set_endpoint(self, key: str, ep: Endpoint | None) -> Endpoint | None:
        """Store (or delete) an endpoint and recompute its labels; returns
        the endpoint it replaced."""
        old = self.eps.pop(key, None)
        if old is not None:
            for p in old.profiles:
                self._eps_by_profile[p].discard(key)
        if ep is not None:
            self.eps[key] = ep
            for p in ep.profiles:
                self._eps_by_profile[p].add(key)
        self._relabel(key)
        return old

    def set_profile(self, name: str, prof: ProfileDef | None) -> list[str]:
        """Store (or delete) a profile; returns the endpoints using it, whose
        labels (and profile rules) may have changed."""
        if prof is None:
            self.profiles.pop(name, None)
        else:
            self.profiles[name] = prof
        keys = list(self._eps_by_profile.get(name, ()))
        for key in keys:
            self._relabel(key)
        return keys

    def _relabel(self, key: str) -> None:
        ep = self.eps.get(key)
        if ep is None:
            self.labels.pop(key, None)
        else:
            self.labels[key] = effective_labels(ep, self.profiles)
