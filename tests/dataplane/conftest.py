"""Fixtures shared by the kernel tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dataplane.test_linux_dataplane import Cluster
from tests.netns import fabric


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The A/C/E write-up's two nodes and five pods, each node with its
    LinuxDataplane, in namespaces removed afterwards."""
    with fabric() as f:
        c = Cluster(f)
        try:
            yield c
        finally:
            c.close()
