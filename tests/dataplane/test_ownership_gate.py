"""The ownership gate on its own (pure: batches in, batches out)."""

from __future__ import annotations

from dataplane import DataplaneBatch, EndpointInfo, EndpointKind, Route, Vtep
from dataplane.batch import RouteKind
from dataplane.ownership import Gate


def test_a_vtep_with_a_zoned_address_or_a_bad_mac_is_refused_alone() -> None:
    gate = Gate()
    good = Vtep("n2", "192.168.77.2", "10.65.2.1", "66:00:00:00:00:02")
    zoned = Vtep(
        "n3",
        "192.168.77.3",
        "10.65.3.1",
        "66:00:00:00:00:03",
        "fd00::3",
        "fd00::1%x",
        "66:00:00:00:00:33",
    )
    bad_mac = Vtep("n4", "192.168.77.4", "10.65.4.1", "66:00:00:00:00:0g")
    out = gate.admit(DataplaneBatch(vteps_set={"n2": good, "n3": zoned, "n4": bad_mac}))
    assert out.vteps_set == {"n2": good}
    assert set(gate.refused) == {"vtep n3", "vtep n4"}
    fixed = Vtep("n4", "192.168.77.4", "10.65.4.1", "66:00:00:00:00:04")
    assert gate.admit(DataplaneBatch(vteps_set={"n4": fixed})).vteps_set == {"n4": fixed}
    assert set(gate.refused) == {"vtep n3"}


def test_the_lowest_key_owns_an_interface_and_the_next_takes_over_when_it_goes() -> None:
    gate = Gate()
    a = EndpointInfo(EndpointKind.WORKLOAD, "calia", ("10.0.0.1",))
    z = EndpointInfo(EndpointKind.WORKLOAD, "calia", ("10.0.0.9",))
    out = gate.admit(
        DataplaneBatch(
            endpoints_set={"/k/a": a, "/k/z": z},
            routes_set={
                "10.0.0.1/32": Route("10.0.0.1/32", RouteKind.LOCAL, dev="calia"),
                "10.0.0.9/32": Route("10.0.0.9/32", RouteKind.LOCAL, dev="calia"),
            },
        )
    )
    assert set(out.endpoints_set) == {"/k/a"}
    assert set(out.routes_set) == {"10.0.0.1/32"}
    out = gate.admit(DataplaneBatch(endpoints_del={"/k/a"}, routes_del={"10.0.0.1/32"}))
    assert set(out.endpoints_set) == {"/k/z"}
    assert out.endpoints_del == {"/k/a"}
    assert set(out.routes_set) == {"10.0.0.9/32"}  # now its owner's
    assert gate.refused == {}
