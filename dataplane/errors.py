"""Errors raised by the dataplane drivers.

DataplaneError                the kernel refused or failed a change; the agent
│                             counts it and repairs on its next resync
│                             (remote: also a snapshot.errors.RemoteError)
└── KernelUnavailable         what a driver needs is missing: a library, a
                              kernel feature, the privilege to use it
UnsafeValue                   a datastore value the agent will not program: not
                              exactly its type, or not the agent's to touch
                              (remote: the object is refused alone, counted)
BadFailsafePorts              a failsafe port list the caller gave cannot be
                              read (local misuse: snapshot.errors.LocalMisuse)
"""

from __future__ import annotations

from snapshot.errors import LocalMisuse, RemoteError


class BadFailsafePorts(LocalMisuse, ValueError):
    """A failsafe port list is not `proto:port[,proto:port...]` or `none`."""


class DataplaneError(RemoteError):
    """The kernel refused or failed a dataplane change."""


class KernelUnavailable(DataplaneError):
    """The machine lacks what a dataplane needs (library, module, privilege)."""


class UnsafeValue(RemoteError):
    """A datastore value the agent will not hand to the kernel: it is not
    exactly what its type allows (an interface name, an address, a port),
    or it names something the agent does not own."""
