"""The IPIP tunnel device, `tunl0`, which the kernel's `ipip` module
provides in every namespace.  Where the module is missing, routes through
`tunl0` cannot exist: the driver says so once, in the log and in /status
(`kernel.ipip`), and keeps those routes pending."""

from __future__ import annotations

import logging
from typing import Any

DEVICE = "tunl0"
log = logging.getLogger(__name__)


class Ipip:
    """Makes sure `tunl0` is up when some route needs it."""

    def __init__(self, ipr: Any) -> None:
        self._ipr = ipr
        self.unavailable = ""  # why IPIP cannot work here, once known
        self.state = "not needed"  # for /status: not needed, up, or why not
        self.changes = 0

    def ensure(self) -> bool:
        """`tunl0` up (True), or the reason it cannot be in `unavailable`."""
        if self.unavailable:
            return False
        found = self._ipr.link_lookup(ifname=DEVICE)
        if not found:
            try:
                self._ipr.link("add", ifname=DEVICE, kind="ipip")
                self.changes += 1
            except Exception as exc:
                self.unavailable = f"the kernel has no ipip support ({exc})"
                self.state = f"unavailable: {self.unavailable}"
                log.warning("IPIP routes cannot be programmed: %s", self.unavailable)
                return False
            found = self._ipr.link_lookup(ifname=DEVICE)
        link = self._ipr.link("get", index=found[0])[0]
        if not link["flags"] & 1:
            self._ipr.link("set", index=found[0], state="up")
            self.changes += 1
        self.state = "up"
        return True
