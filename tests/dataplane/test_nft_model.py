"""The nftables model and its difference (pure: no kernel)."""

from __future__ import annotations

from dataplane import Action, ChainKey, Direction, EndpointInfo, EndpointKind, IpSetId, Match, Rule
from dataplane.linux import nft_model as M
from dataplane.linux import nft_render as R

CK = ChainKey("/k/wep/a", Direction.INGRESS, 4)
SID = IpSetId(4, 'app == "db"')
NAMED = IpSetId(4, "all()", "http", 6)
RULES = (
    Rule(
        Action.ALLOW,
        protocol=6,
        src=Match(ipset=SID),
        dst=Match(ports=("80",), named_ports=(NAMED,)),
        group="default",
    ),
    Rule(Action.DENY, group="default", origin="end of tier default"),
    Rule(Action.LOG, group="profile p", origin="profile p"),
    Rule(Action.DENY, origin="end of profiles"),
)


def _named(info: EndpointInfo) -> list[str]:
    return [info.interface] if info.interface else []


def model() -> M.NftModel:
    m = M.base_model()
    M.set_set(m, SID, {"10.0.0.1/32", "10.0.0.2/32"})
    M.set_set(m, NAMED, {"10.0.0.1,tcp:8080"})
    M.set_chain(m, CK, RULES)
    M.set_dispatch(
        m,
        {CK: RULES},
        {CK.endpoint: EndpointInfo(EndpointKind.WORKLOAD, "calia", ("10.0.0.9",))},
        _named,
    )
    return m


def test_equal_models_need_no_statement() -> None:
    assert M.diff(model(), model()) == []


def test_from_nothing_sets_and_chains_are_declared_before_rules_use_them() -> None:
    script = M.diff(M.NftModel(table=False), model())
    assert script[0] == f"add table inet {R.TABLE}"
    first_rule = next(i for i, s in enumerate(script) if s.startswith("add rule"))
    declared = [s for s in script[:first_rule] if s.startswith(("add chain", "add set"))]
    assert len(declared) == len([s for s in script if s.startswith(("add chain", "add set"))])
    assert any("10.0.0.1 . tcp . 8080" in s for s in script)
    assert any('"calia" : jump e_' in s for s in script)


def test_a_port_given_by_number_and_by_name_becomes_two_nft_rules() -> None:
    stmts = R.rule_statements(RULES[0], 4, "x")
    assert len(stmts) == 2
    assert "th dport 80" in stmts[0]
    assert "ip daddr . meta l4proto . th dport @n4_" in stmts[1]
    assert all("ip saddr @s4_" in s and s.endswith("return") for s in stmts)


def test_groups_become_chains_and_pass_returns_from_them() -> None:
    bodies = dict(R.chain_bodies(CK, RULES))
    main = bodies[R.chain_name(CK)]
    assert main[0] == f"jump {R.chain_name(CK)}_0"
    assert main[-1] == "counter drop"
    assert bodies[f"{R.chain_name(CK)}_1"] == ['log prefix "calico-packet: " level info counter']
    passing = R.rule_statements(Rule(Action.PASS, group="t"), 4, "x")
    assert passing == ["counter return"]


def test_removing_an_endpoint_flushes_before_deleting_and_drops_its_dispatch_entry() -> None:
    new = model()
    M.remove_chain(new, CK)
    M.set_dispatch(new, {}, {}, _named)
    script = M.diff(model(), new)
    deletes = [i for i, s in enumerate(script) if s.startswith("delete chain")]
    flushes = [i for i, s in enumerate(script) if s.startswith("flush chain")]
    assert deletes
    assert max(flushes) < min(deletes)
    unmap = next(
        i for i, s in enumerate(script) if s.startswith("delete element") and "to_wl4" in s
    )
    assert unmap < min(deletes)


def test_a_changed_member_list_adds_and_deletes_only_the_difference() -> None:
    new = model()
    M.set_set(new, SID, {"10.0.0.2/32", "10.0.0.3/32"})
    script = M.diff(model(), new)
    name = R.set_name(SID)
    assert script == [
        f"add element inet {R.TABLE} {name} {{ 10.0.0.3 }}",
        f"delete element inet {R.TABLE} {name} {{ 10.0.0.1 }}",
    ]


def test_a_table_read_back_compares_by_rule_comments() -> None:
    want = model()
    doc = {"nftables": [{"table": {"family": "inet", "name": R.TABLE}}]}
    for name, c in want.chains.items():
        chain: dict[str, object] = {"name": name, "table": R.TABLE}
        if c.decl:  # "type T hook H priority P; policy accept;", as nft -j has it
            words = c.decl.replace(";", "").split()
            kind, hook, prio = words[1], words[3], int(words[5])
            chain.update({"type": kind, "hook": hook, "prio": prio, "policy": "accept"})
        doc["nftables"].append({"chain": chain})
        doc["nftables"] += [{"rule": {"chain": name, "comment": k}} for k, _ in c.rules]
    for name, (spec, members) in want.sets.items():
        type_part, _, flags_part = spec.partition(" flags ")
        kind = type_part.removeprefix("type ").removesuffix(";").split(" . ")
        elems = [
            {"concat": [*m.split(" . ")[:2], int(m.split(" . ")[2])]} if " . " in m else m
            for m in members
        ]
        st: dict[str, object] = {
            "name": name,
            "type": kind if len(kind) > 1 else kind[0],
            "elem": elems,
        }
        if flags_part:
            st["flags"] = [flags_part.removesuffix(";")]
        doc["nftables"].append({"set": st})
    for name, targets in want.maps.items():
        elem = [[i, {"jump": {"target": c}}] for i, c in targets.items()]
        doc["nftables"].append({"map": {"name": name, "elem": elem}})
    have = M.from_kernel_json(doc)
    assert M.diff(have, want) == []
    # One rule gone from one chain: that chain alone is rewritten.
    name = R.chain_name(CK)
    have.chains[name] = M.ChainDef("", have.chains[name].rules[1:])
    script = M.diff(have, want)
    assert script[0] == f"add chain inet {R.TABLE} {name}"
    assert all(name in s for s in script)


def test_not_icmp_without_a_protocol_also_matches_other_protocols() -> None:
    # nft's `icmp type` only matches ICMP packets: the rule needs a variant
    # for every other protocol, or it would match nothing but ICMP.
    with_proto = R.rule_statements(Rule(Action.DENY, protocol=1, not_icmp_type=8), 4, "x")
    assert len(with_proto) == 1
    alone = R.rule_statements(Rule(Action.DENY, not_icmp_type=8), 4, "x")
    assert len(alone) == 2
    assert alone[0].startswith("meta l4proto != icmp ")
    assert alone[1].startswith("icmp type != 8 ")
    v6 = R.rule_statements(Rule(Action.DENY, not_icmp_type=128, not_icmp_code=0), 6, "x")
    assert v6[0].startswith("meta l4proto != icmpv6 ")


def test_alternatives_on_both_sides_are_linear_not_a_cross_product() -> None:
    src = tuple(IpSetId(4, "all()", f"s{i}", 6) for i in range(20))
    dst = tuple(IpSetId(4, "all()", f"d{i}", 6) for i in range(20))
    rule = Rule(Action.ALLOW, protocol=6, src=Match(named_ports=src), dst=Match(named_ports=dst))
    stmts = R.rule_statements(rule, 4, "x")
    assert len(stmts) == 20 + 20 + 2  # was 400
    assert stmts[0].startswith("meta mark set mark and ")  # the block's bits cleared first
    assert stmts[-1].startswith(f"meta mark and {R.ALT_MARKS[1]:#x} != 0 ")
    one_side = Rule(Action.ALLOW, protocol=6, dst=Match(named_ports=dst))
    assert len(R.rule_statements(one_side, 4, "x")) == 20  # one group: plain rules


def test_pool_sets_collapse_nested_pools_and_leave_out_what_cannot_be_written() -> None:
    from dataplane.batch import PoolInfo

    m = M.base_model()
    pools = [
        PoolInfo("10.65.0.0/16", True),
        PoolInfo("10.65.1.0/24", True),  # inside the first: one interval
        PoolInfo("10.66.0.0/16", True),  # adjacent: merged with the first
        PoolInfo("10.99.0.0/16", False),
        PoolInfo("fd00:65::/48", True),
        PoolInfo("10.0.0.0/8 } ; flush ruleset", True),
    ]
    names, problems = M.set_pools(m, pools)
    assert names == {"pools4", "pools6", "nat_pools4", "nat_pools6"}
    # 10.65/16 and 10.66/16 touch but make no aligned /15: two intervals.
    assert m.sets["nat_pools4"][1] == {"10.65.0.0/16", "10.66.0.0/16"}
    assert m.sets["pools4"][1] >= {"10.99.0.0/16"}
    assert m.sets["nat_pools6"][1] == {"fd00:65::/48"}
    assert len(problems) == 1
    assert "flush ruleset" not in " ".join(e for _, es in m.sets.values() for e in es)
    # Rewritten by difference: one pool off is one element out, nothing else.
    before = m.copy()
    M.set_pools(m, [p for p in pools if p.cidr != "fd00:65::/48"])
    script = M.diff(before, m)
    assert script == [
        "delete element inet felix_typha pools6 { fd00:65::/48 }",
        "delete element inet felix_typha nat_pools6 { fd00:65::/48 }",
    ]


def test_host_sets_hold_node_addresses_and_nat_skips_them_only_when_configured() -> None:
    m = M.base_model()
    names, problems = M.set_hosts(m, ["192.168.77.2", "fd00:77::2", "192.168.77.2", "1.2.3.4/8"])
    assert names == {"all_hosts4", "all_hosts6"}
    assert m.sets["all_hosts4"][1] == {"192.168.77.2"}
    assert m.sets["all_hosts6"][1] == {"fd00:77::2"}
    assert len(problems) == 1  # not an address: left out, reported
    plain = m.chains[R.NAT_CHAIN].rules
    assert not any("all_hosts" in text for _, text in plain)
    before = m.copy()
    M.set_base_chains(m, nat_excludes_hosts=True)
    rules = [text for _, text in m.chains[R.NAT_CHAIN].rules]
    assert rules[0].startswith("ip saddr @nat_pools4 ip daddr != @pools4 ip daddr != @all_hosts4")
    assert "ip6 daddr != @all_hosts6" in rules[1]
    # Switching is a rewrite of that one chain, nothing else.
    assert all("nat_postrouting" in line for line in M.diff(before, m) if "rule" in line)


def test_source_sets_hold_each_workloads_interface_and_addresses() -> None:
    m = M.base_model()
    eps = {
        "a": EndpointInfo(EndpointKind.WORKLOAD, "calia", ("10.65.1.2", "fd00::2")),
        "h": EndpointInfo(EndpointKind.HOST, "eth0", ("192.168.77.1",)),  # not a workload
        "x": EndpointInfo(EndpointKind.WORKLOAD, "eth1", ("10.65.1.9",)),  # not a workload iface
    }
    M.set_sources(m, eps)
    assert m.sets["wl_src4"][1] == {'"calia" . 10.65.1.2'}
    assert m.sets["wl_src6"][1] == {'"calia" . fd00::2'}
