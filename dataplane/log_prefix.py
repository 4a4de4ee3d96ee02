"""The prefix of a Log rule's kernel log line (Felix's LogPrefix).

Felix's default is `calico-packet`; the operator may put specifiers in it,
each replaced per rule: `%t` the tier, `%k` the kind (`np`, `gnp`, `pro`),
`%n` the policy or profile name, `%p` the name with its namespace
(`ns/name`) where it has one.  Felix ends the prefix with ": ".
"""

from __future__ import annotations

import re

DEFAULT_LOG_PREFIX = "calico-packet"
# What Calico's API allows in the setting.
LOG_PREFIX_PATTERN = re.compile(r"^[a-zA-Z0-9%: /_-]*\Z")
_SPECIFIER = re.compile("%[tknp]")
_PROFILE = "profile "


def check(template: str) -> str:
    """`template` if Calico's API allows it; raises ValueError otherwise."""
    if not LOG_PREFIX_PATTERN.match(template):
        raise ValueError(f"{template[:40]!r} has characters other than [a-zA-Z0-9%: /_-]")
    return template


def expand(template: str, origin: str, group: str) -> str:
    """The prefix for a rule, from where the calculation records its
    source: `origin` (`ns/name`, `name` or `profile <name>`) and `group`
    (its tier)."""
    template = template or DEFAULT_LOG_PREFIX
    if "%" not in template:
        return template
    if origin.startswith(_PROFILE):
        kind, ns, name, tier = "pro", "", origin[len(_PROFILE) :], ""
    else:
        ns, _, name = origin.rpartition("/")
        kind, tier = ("np" if ns else "gnp"), group
    values = {"%t": tier, "%k": kind, "%n": name, "%p": f"{ns}/{name}" if ns else name}
    return _SPECIFIER.sub(lambda m: values[m.group()], template)
