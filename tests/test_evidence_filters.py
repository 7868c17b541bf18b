"""Filter readers on recorded nft / iptables / ebtables / libvirt output (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

from tracer.evidence import filters
from tracer.evidence._util import ToolResult
from tracer.evidence.nft import managed_tables, normalize_rule_text, parse_listing, parse_nft, render_exprs
from tracer.evidence.nwfilter import parse_binding_list, parse_domain_xml, rules_from
from tracer.evidence.xtables import interfaces, parse_ebtables_list, parse_ebtables_save, parse_iptables_save
from tracer.model import FilterRule

DATA = Path(__file__).parent / "data" / "evidence"


def load(name: str) -> str:
    return (DATA / name).read_text()


def nft_rules(**kw) -> list[FilterRule]:
    return parse_nft(load("nft-ruleset.json"), load("nft-ruleset.txt"), ["vnet0", "br0"], **kw)


def test_nft_bridge_and_netdev_families_in_full_with_counters_and_hops():
    rules = nft_rules()
    b2 = [r for r in rules if r.table == "b2"]
    assert b2[0] == FilterRule(source="nft", family="bridge", table="b2", chain="forward", rule="policy drop")
    assert b2[1].rule == 'iifname { "vnet0", "vnet1" } udp dport 67 counter drop comment "no rogue"'
    assert b2[1].packets == 0 and b2[1].hop == "vnet0"
    assert b2[2].packets is None  # no counter on that rule
    (nd,) = [r for r in rules if r.family == "netdev"]
    assert nd.hop == "vnet0" and nd.rule == "ether type arp counter drop"  # the chain's device


def test_nft_ip_families_only_where_they_touch_the_path():
    rules = [r for r in nft_rules() if r.family in ("ip", "inet")]
    texts = {(r.family, r.rule) for r in rules}
    assert ("inet", 'iifname "br0" counter drop') in texts
    assert ("inet", 'oifname "vnet0" ip daddr 10.1.1.1 drop') in texts
    assert ("ip", "meta l4proto udp xt match physdev udp dport 67 counter drop") in texts
    assert not any("1.2.3.4" in r.rule or "10.0.0.0/8" in r.rule for r in rules)


def test_managed_tables_are_left_to_their_tools():
    managed = managed_tables(load("nft-ruleset.stderr"))
    assert managed == {("bridge", "filter"): "iptables-nft", ("ip", "filter"): "iptables-nft"}
    rules = nft_rules(skip=managed)
    assert not any(r.table == "filter" for r in rules)
    assert any(r.table == "nat" for r in rules)


def test_rule_text_is_stable_while_counters_change():
    a = normalize_rule_text('iifname "x" counter packets 3 bytes 984 drop # handle 2')
    b = normalize_rule_text('iifname "x" counter packets 9 bytes 2952 drop # handle 2')
    assert a == b == 'iifname "x" counter drop'
    listing = parse_listing(load("nft-ruleset.txt"))
    assert listing.devices[("netdev", "nd", "ingress")] == "vnet0"
    assert listing.rules[("bridge", "filter", "FORWARD", 3)] == "ether saddr 52:54:00:12:34:56 counter drop"


def test_nft_without_text_listing_renders_from_json_and_bad_json_gives_nothing():
    rules = parse_nft(load("nft-ruleset.json"), "", ["vnet0"])
    fwd = next(r for r in rules if r.table == "b2" and r.packets == 0)
    assert fwd.rule.startswith("iifname { vnet0, vnet1 }") and "drop" in fwd.rule and "no rogue" in fwd.rule
    assert parse_nft("{not json", "") == [] and parse_nft("[1, 2]", "") == []
    assert parse_nft(json.dumps({"nftables": [{"rule": {"family": "bridge"}}, 5, {"chain": {}}]})) == []
    assert render_exprs([{"match": {"op": "!=", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                                    "right": "52:54:00:12:34:56"}}, {"drop": None}]) == \
        "ether saddr != 52:54:00:12:34:56 drop"


def test_counter_values_from_json():
    data = json.loads(load("nft-ruleset.json"))
    for item in data["nftables"]:
        for e in item.get("rule", {}).get("expr", []):
            if "counter" in e:
                e["counter"]["packets"] = 7
    rules = parse_nft(json.dumps(data), load("nft-ruleset.txt"), ["vnet0"])
    assert {r.packets for r in rules if "counter" in r.rule} == {7}


def test_iptables_physdev_and_hop_rules():
    rules = parse_iptables_save(load("iptables-save.txt"), ["vnet0", "br0"])
    assert [r.source for r in rules] == ["iptables", "iptables-physdev", "iptables-physdev"]
    drop = rules[1]
    assert drop.rule == "-A FORWARD -p udp -m physdev --physdev-in vnet0 --physdev-is-bridged -m udp --dport 67 -j DROP"
    assert (drop.table, drop.chain, drop.packets, drop.hop) == ("filter", "FORWARD", 0, "vnet0")
    assert rules[2].hop == "tap0b5f208b-76"
    # br_netfilter off: physdev rules never see bridged frames; -i rules on a hop still count
    off = parse_iptables_save(load("iptables-save.txt"), ["br0"], physdev=False)
    assert [r.rule.split()[1] for r in off] == ["INPUT"]


def test_iptables_forward_policy_drop_with_counter():
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [12:3456]\nCOMMIT\n"
    (rule,) = parse_iptables_save(text, [])
    assert (rule.rule, rule.packets, rule.source) == ("-P FORWARD DROP", 12, "iptables-physdev")
    assert parse_iptables_save(text, [], physdev=False) == []


def test_ebtables_save_and_list_agree():
    saved = parse_ebtables_save(load("ebtables-save.txt"), ["vnet0"])
    listed = parse_ebtables_list(load("ebtables-list.txt"), ["vnet0"])
    assert saved == listed
    fwd = [r for r in saved if r.chain == "FORWARD"]
    assert fwd[0].rule == "-A FORWARD -p IPv4 -i vnet0 --ip-proto udp --ip-dport 67 -j DROP"
    assert fwd[0].hop == "vnet0" and fwd[0].packets == 0 and fwd[0].source == "ebtables"
    assert any(r.table == "nat" and r.hop == "vnet0" for r in saved)


def test_ebtables_legacy_shapes_and_policies():
    listing = ("Bridge table: filter\n\nBridge chain: FORWARD, entries: 1, policy: DROP\n"
               "1. -p ARP -i tap0 --arp-ip-src ! 10.0.0.5 -j DROP , pcnt = 41 -- bcnt = 2460\n")
    rules = parse_ebtables_list(listing, ["tap0"])
    assert rules[0].rule == "-P FORWARD DROP"
    assert (rules[1].rule, rules[1].packets, rules[1].hop) == (
        "-A FORWARD -p ARP -i tap0 --arp-ip-src ! 10.0.0.5 -j DROP", 41, "tap0")
    save = "*filter\n:FORWARD DROP\n-A FORWARD -i tap0 -j DROP -c 5 300\n"
    assert [(r.rule, r.packets) for r in parse_ebtables_save(save)] == [
        ("-P FORWARD DROP", None), ("-A FORWARD -i tap0 -j DROP", 5)]


def test_interfaces_in_xtables_rules():
    assert interfaces("-A FORWARD -i br0 -m physdev --physdev-out ! tap1 -j DROP") == ["tap1", "br0"]
    assert interfaces("-A INPUT -i vnet+ -j DROP") == ["vnet"]


def test_nwfilter_from_domain_xml_and_binding_list():
    xml = parse_domain_xml(load("nwfilter-domain-status.xml"))
    assert xml == [("tap0b5f208b-76", "clean-traffic", {"IP": "10.0.0.148", "MAC": "fa:16:3e:56:ea:fa"})]
    listed = parse_binding_list(load("nwfilter-binding-list.txt"))
    assert listed == [("tap0b5f208b-76", "clean-traffic"), ("vnet9", "no-mac-spoofing")]
    (rule,) = rules_from(xml + [(d, f, {}) for d, f in listed], ["tap0b5f208b-76"])
    assert rule == FilterRule(source="nwfilter", family="bridge", table="clean-traffic", chain="tap0b5f208b-76",
                              rule="<filterref filter='clean-traffic'/> IP=10.0.0.148 MAC=fa:16:3e:56:ea:fa",
                              hop="tap0b5f208b-76")
    assert len(rules_from([(d, f, {}) for d, f in listed])) == 2
    assert parse_domain_xml("<not xml") == []


def test_read_filters_with_no_tools_is_notes_only(monkeypatch):
    monkeypatch.setattr(filters, "run_tool", lambda argv, timeout=10: ToolResult(error=f"{argv[0]} is not installed"))
    monkeypatch.setattr(filters.shutil, "which", lambda name: None)
    monkeypatch.setattr(filters, "br_netfilter", lambda which: True)
    monkeypatch.setattr(filters.nwfilter, "domain_xml_bindings", lambda: [])
    notes: list[str] = []
    assert filters.read_filters(["vnet0"], notes) == []
    assert "nftables not read: nft is not installed" in notes
    assert any(n.startswith("iptables not read") for n in notes)
