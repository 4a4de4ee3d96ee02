"""Process limits a server at scale needs raised before it starts."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("typha")


def raise_open_files(wanted: int) -> int:
    """Raise the soft limit on open files towards `wanted` (never above the hard
    limit, never lowering it); returns the soft limit now in force.  Logs a
    warning when the hard limit is below `wanted`: connections past it would
    be refused at accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        if soft < wanted:
            log.warning(
                "open-file limit %d is below the %d this configuration needs; "
                "raise the hard limit (ulimit -Hn) to serve every connection",
                soft,
                wanted,
            )
    return soft
