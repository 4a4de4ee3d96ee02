"""The compact networks read exactly what `ipaddress` reads."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_model.addresses import Net, address_value, parse_net
from calico_model.errors import InvalidValue
from calico_model.fields import interface_cidr


def _reference(text: str) -> Net | None:
    if "%" in text:
        return None
    try:
        n = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return Net(str(n), n.version, int(n.network_address), n.prefixlen)


EDGES = [
    "10.0.0.1",
    "10.0.0.1/32",
    "10.0.0.0/8",
    "10.1.2.3/8",  # host bits dropped
    "0.0.0.0/0",
    "255.255.255.255",
    "256.0.0.1",
    "010.0.0.1",  # leading zero: refused, as Go and ipaddress refuse it
    "10.0.0.1/032",  # ipaddress reads this prefix; the fast path must not differ
    "10.0.0.1/33",
    "10.0.0.1/",
    "10.0.0.0/255.0.0.0",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3",
    "1.2.3.4.5",
    "\u0661.\u0662.\u0663.\u0664",  # non-ASCII digits
    "1.2.3.\u0664",
    "fd00::1",
    "fd00:0:0::1/128",
    "fd00::1/64",
    "::ffff:10.0.0.1",
    "fd00::1%eth0",
    "fd00:10:244:0:0:5::/122",  # not canonical: two zero runs of two
    "fd00:10:244:0:0:5::1a/128",
    "1:2:3:4:5:6:7::",
    "::1:2:3:4:5:6:7",
    "1::2::3",
    "00fd::01",
    "fd00::00001",
    "FD00::/08",
    "::ffff:0:0/96",
    "::1.2.3.4",
    "",
    "/32",
]


@pytest.mark.parametrize("text", EDGES)
def test_edges_read_as_ipaddress_reads_them(text: str) -> None:
    assert parse_net(text) == _reference(text)


_octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "-1", "x"]))
_v4 = st.builds(
    lambda parts, plen: ".".join(parts) + plen,
    st.lists(_octet, min_size=3, max_size=5),
    st.one_of(st.just(""), st.integers(-1, 40).map(lambda p: f"/{p}"), st.just("/08")),
)


@given(_v4)
def test_any_dotted_text_reads_as_ipaddress_reads_it(text: str) -> None:
    assert parse_net(text) == _reference(text)


@given(st.ip_addresses(), st.data())
def test_any_address_with_any_prefix(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    plen = data.draw(st.integers(0, addr.max_prefixlen))
    text = f"{addr}/{plen}"
    got = parse_net(text)
    assert got == _reference(text)
    assert got is not None
    assert str(got) == str(ipaddress.ip_network(text, strict=False))


def test_non_strings_are_not_networks() -> None:
    assert parse_net(None) is None
    assert parse_net(167772161) is None
    assert parse_net(b"10.0.0.1") is None


def test_containment_by_integers() -> None:
    pool, block, pod = (
        parse_net("10.244.0.0/16"),
        parse_net("10.244.3.0/26"),
        parse_net("10.244.3.9"),
    )
    other = parse_net("10.245.0.1")
    v6 = parse_net("fd00::1")
    assert pool is not None
    assert block is not None
    assert pod is not None
    assert other is not None
    assert v6 is not None
    assert pod.within(block)
    assert block.within(pool)
    assert pod.within(pool)
    assert not pool.within(block)
    assert not other.within(pool)
    assert not v6.within(pool)
    assert pod.address == "10.244.3.9"
    assert pod.single
    assert not block.single
    assert pool.contains_address(pod.value, 4)
    assert not pool.contains_address(pod.value, 6)


def test_bare_address_values() -> None:
    assert address_value("10.0.0.1") == (167772161, 4)
    assert address_value("10.0.0.1/32") is None
    assert address_value("10.0.0.0/8") is None
    assert address_value("fd00::1") == (int(ipaddress.ip_address("fd00::1")), 6)


_hextet = st.one_of(st.just(0), st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF))


@settings(max_examples=1000)
@given(
    st.lists(_hextet, min_size=8, max_size=8),
    st.one_of(st.just(""), st.integers(0, 130).map(lambda p: f"/{p}"), st.just("/064")),
    st.sampled_from(["canonical", "exploded", "upper", "mapped"]),
)
def test_any_ipv6_text_reads_as_ipaddress_reads_it(
    hextets: list[int], plen: str, form: str
) -> None:
    # Zero runs of every length and place, so the C library's compression
    # (the fast path) is compared with ipaddress's on the cases that differ.
    addr = ipaddress.IPv6Address(int("".join(f"{h:04x}" for h in hextets), 16))
    text = {
        "canonical": str(addr),
        "exploded": addr.exploded,
        "upper": str(addr).upper(),
        "mapped": f"::ffff:{ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)}",
    }[form] + plen
    assert parse_net(text) == _reference(text)


@settings(max_examples=2000)
@given(
    st.lists(st.text("0123456789abcdefABCDEF", min_size=0, max_size=5), min_size=1, max_size=10),
    st.integers(-1, 10),
    st.one_of(st.just(""), st.integers(0, 130).map(lambda p: f"/{p}"), st.just("/01")),
)
def test_any_hex_group_text_reads_as_ipaddress_reads_it(
    groups: list[str], gap: int, plen: str
) -> None:
    # Non-canonical spellings (leading zeros, "::" anywhere or twice, empty or
    # five-digit groups, too many groups): the C library reads them on the
    # fast path and must accept and refuse exactly what ipaddress does.
    parts = list(groups)
    if 0 <= gap <= len(parts):
        parts.insert(gap, "")
    text = ":".join(parts) + plen
    assert parse_net(text) == _reference(text)


def _interface_reference(text: str) -> str | None:
    if "%" in text:
        return None
    try:
        return str(ipaddress.ip_interface(text).network)
    except ValueError:
        return None


def _interface_ours(text: str) -> str | None:
    try:
        return interface_cidr(text, "spec.bgp.ipv4Address").text
    except InvalidValue:
        return None


@pytest.mark.parametrize("text", [*EDGES, "192.168.0.17/24", "fd00:192:168::11/64"])
def test_an_interface_address_is_read_as_ip_interface_reads_it(text: str) -> None:
    assert _interface_ours(text) == _interface_reference(text)


@given(st.one_of(_v4, st.ip_addresses().map(str)), st.integers(-1, 130))
def test_any_interface_text_is_read_as_ip_interface_reads_it(addr: str, plen: int) -> None:
    for text in (addr, f"{addr}/{plen}"):
        assert _interface_ours(text) == _interface_reference(text)
