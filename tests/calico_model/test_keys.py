"""The key layout: typed keys relative to the configured prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_model.keys import V3_PLURALS, KeyLayout, Kind, ResourceKey

V3 = "resources/v3/projectcalico.org/"


@pytest.mark.parametrize("prefix", ["/calico/", "/other/", "/a/b/"])
def test_keys_parse_relative_to_the_prefix(prefix: str) -> None:
    layout = KeyLayout(prefix)
    assert layout.parse(f"{prefix}{V3}workloadendpoints/ns1/w1") == ResourceKey(
        Kind.WORKLOAD_ENDPOINT, "w1", "ns1"
    )
    assert layout.parse(f"{prefix}{V3}nodes/n1") == ResourceKey(Kind.NODE, "n1")
    assert layout.parse(f"{prefix}ipam/v2/assignment/ipv4/block/10.0.0.0-26") == ResourceKey(
        Kind.IPAM_BLOCK, "10.0.0.0-26"
    )


def test_keys_under_another_prefix_are_not_ours() -> None:
    assert KeyLayout("/other/").parse(f"/calico/{V3}nodes/n1") is None
    assert KeyLayout("/calico/").parse(f"/other/{V3}nodes/n1") is None


@pytest.mark.parametrize(
    "rest",
    [
        f"{V3}workloadendpoints/ns-only",  # namespaced kind without a name
        f"{V3}workloadendpoints/ns/a/b",  # too many segments
        f"{V3}nodes/a/b",
        f"{V3}nodes/",
        f"{V3}unknownkinds/x",
        "ipam/v2/assignment/ipv4/block/",
        "felix/something",
    ],
)
def test_keys_outside_the_layout_parse_to_none(rest: str) -> None:
    assert KeyLayout().parse("/calico/" + rest) is None


def test_a_prefix_must_be_slash_delimited() -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeyLayout("calico")


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)


@given(
    st.sampled_from([k for k in Kind if k is not Kind.IPAM_BLOCK]),
    names,
    names,
    st.sampled_from(["/calico/", "/x/"]),
)
def test_key_and_parse_are_inverse(kind: Kind, name: str, ns: str, prefix: str) -> None:
    layout = KeyLayout(prefix)
    namespaced = kind in {k for k, ns in V3_PLURALS.values() if ns}
    rk = ResourceKey(kind, name, ns if namespaced else "")
    assert layout.parse(layout.key(rk)) == rk
