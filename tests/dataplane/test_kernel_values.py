"""The typed renderers every kernel value goes through (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane import kernel_values as V
from dataplane.errors import UnsafeValue


@pytest.mark.parametrize("name", ["cali1a2b3c4d5e6", "eth0", "vxlan.calico", "a-b_c.d"])
def test_plain_interface_names_pass(name: str) -> None:
    assert V.ifname(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "cali\n", 'x" : accept }', "a b", "cali0123456789abc", "é", 7, None]
)
def test_anything_else_is_no_interface_name(name: object) -> None:
    with pytest.raises(UnsafeValue):
        V.ifname(name)


def test_addresses_are_canonical_and_never_carry_a_zone() -> None:
    assert V.address("10.0.0.1") == "10.0.0.1"
    assert V.address("FD00:0::1") == "fd00::1"
    for bad in ("fd00::1%x", "10.0.0.1%eth0", "010.0.0.1", "1.2.3", " 1.2.3.4", "1.2.3.4\n", 4):
        with pytest.raises(UnsafeValue):
            V.address(bad)


def test_networks_drop_host_bits_and_refuse_zones() -> None:
    assert V.network("10.1.2.3/8") == "10.0.0.0/8"
    assert V.network("fd00::1") == "fd00::1/128"
    with pytest.raises(UnsafeValue):
        V.network("fd00::1%x/128")


def test_ports_are_decimal() -> None:
    assert V.port_range("010") == "10"  # nft would read 010 as octal 8
    assert V.port_range(80) == "80"
    assert V.port_range("8080:8090") == "8080-8090"
    assert V.port_range("7:7") == "7"
    for bad in ("99999", "9:1", "0x10", "-1", "1:", "", True, "\uff18"):
        with pytest.raises(UnsafeValue):
            V.port_range(bad)


def test_bytes_and_log_text() -> None:
    assert V.byte(255, "x") == "255"
    for bad in (256, -1, True, "8"):
        with pytest.raises(UnsafeValue):
            V.byte(bad, "x")
    assert V.log_text('calico ingress ns/p"; drop') == "calico ingress ns/p__ drop"


@given(st.text(max_size=30))
def test_whatever_comes_out_needs_no_quoting(text: str) -> None:
    for render in (V.ifname, V.address, V.network, V.port_range):
        try:
            out = render(text)
        except UnsafeValue:
            continue
        assert not set(out) & set(" \"'\\;{}#\n\t%")
    assert '"' not in V.log_text(text)
    assert "\n" not in V.log_text(text)
