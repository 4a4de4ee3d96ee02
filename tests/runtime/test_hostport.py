"""host:port, read one way everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.hostport import BadAddress, HostPort, parse_hostport, parse_hostports


@pytest.mark.parametrize(
    ("text", "options", "want"),
    [
        ("typha:5473", {}, HostPort("typha", 5473)),
        ("[fd00::1]:5473", {}, HostPort("fd00::1", 5473)),
        (" 10.0.0.2:1 ", {}, HostPort("10.0.0.2", 1)),
        ("typha", {"default_port": 5473}, HostPort("typha", 5473)),
        ("[fd00::1]", {"default_port": 5473}, HostPort("fd00::1", 5473)),
        # Ambiguous: an IPv6 address on its own, never an address and a port.
        ("fd00::1:5473", {"default_port": 9}, HostPort("fd00::1:5473", 9)),
        (":9098", {"default_host": "0.0.0.0"}, HostPort("0.0.0.0", 9098)),
        ("h:0", {"port_zero": True}, HostPort("h", 0)),
    ],
)
def test_accepted_forms(text: str, options: dict[str, object], want: HostPort) -> None:
    assert parse_hostport(text, **options) == want  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("typha", "expected HOST:PORT"),
        ("fd00::1:5473", "expected HOST:PORT"),  # write [fd00::1]:5473
        ("[fd00::1:5473", "missing ']'"),
        ("[fd00::1]x", "expected ':' after ']'"),
        (":5473", "no host"),
        ("h:x", "is not a number"),
        ("h:٣", "is not a number"),  # a digit, but not an ASCII one
        ("h:0", "out of range"),
        ("h:65536", "out of range"),
        ("h:1234567", "is not a number"),
    ],
)
def test_refused_forms_say_why(text: str, why: str) -> None:
    with pytest.raises(BadAddress, match=why):
        parse_hostport(text)


def test_lists_skip_empty_items_and_refuse_an_empty_list() -> None:
    got = parse_hostports("a:1, ,[::1]:2,", default_port=5473)
    assert got == [HostPort("a", 1), HostPort("::1", 2)]
    assert parse_hostports(["b"], default_port=7) == [HostPort("b", 7)]
    with pytest.raises(BadAddress, match="no address"):
        parse_hostports(" , ")


@given(
    host=st.one_of(
        st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
        st.ip_addresses().map(str),
    ),
    port=st.integers(1, 65535),
)
def test_an_address_written_out_reads_back(host: str, port: int) -> None:
    hp = HostPort(host, port)
    assert parse_hostport(str(hp)) == hp
