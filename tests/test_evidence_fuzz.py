"""Every evidence parser takes arbitrary text (or JSON) without raising."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.evidence.drops import parse_format, parse_trace_lines
from tracer.evidence.fdb import parse_brctl_showmacs, parse_bridge_fdb_show
from tracer.evidence.kmsg import own_address, parse_dmesg, parse_kmsg_record, port_state_change
from tracer.evidence.nft import parse_listing, parse_nft
from tracer.evidence.nwfilter import parse_binding_list, parse_domain_xml
from tracer.evidence.xtables import interfaces, parse_ebtables_list, parse_ebtables_save, parse_iptables_save

DATA = Path(__file__).parent / "data" / "evidence"
RECORDED = [p.read_text() for p in sorted(DATA.glob("*.txt"))]

TEXT_PARSERS = [
    lambda t: parse_bridge_fdb_show(t),
    lambda t: parse_bridge_fdb_show(t, bridge="br0", macs=["02:47:00:7f:22:02"]),
    lambda t: parse_brctl_showmacs(t, {1: "a"}),
    lambda t: parse_dmesg(t),
    lambda t: parse_dmesg(t, boot_time=1e9),
    lambda t: parse_kmsg_record(t, 0.0),
    own_address,
    port_state_change,
    lambda t: parse_trace_lines(t, offset=1.0, hops=["a"]),
    lambda t: parse_trace_lines(t, keep_unspecified=True),
    parse_format,
    parse_listing,
    lambda t: parse_nft(t, t),
    lambda t: parse_iptables_save(t, ["a"]),
    parse_ebtables_save,
    parse_ebtables_list,
    parse_binding_list,
    parse_domain_xml,
    interfaces,
]

# text made of the pieces these formats are built from, so the fuzzer reaches deep branches
TOKENS = st.sampled_from([
    "dev", "vlan", "master", "used", "self", "sticky", "static", "permanent", " ", "\n", "/", ":", ";", ",",
    "02:47:00:7f:22:02", "[", "]", "5929.186215", "kfree_skb:", "netif_receive_skb:", "reason:", "location=",
    "protocol=", "skbaddr=", "dev=", "0x0800", "2048", "br_handle_frame_finish+0x1/0x2", "[000]", "..s1.",
    "-A", "-P", "*filter", ":FORWARD", "DROP", "[1:2]", "-i", "--physdev-in", "Bridge table:", "Bridge chain:",
    "pcnt =", "-- bcnt =", "table", "chain", "{", "}", "# handle", "counter packets 1 bytes 2", "<", ">",
    "received packet on", "with own address as source address", "(addr:", "vlan:", "port 1(", ")", "entered",
    "state", "kernel:", "4,1,2,-;", "\\x09", "field:", "{ 2, \"NOT_SPECIFIED\" }", "'", '"', "=", "-",
])
structured = st.lists(st.one_of(TOKENS, st.text(max_size=8)), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), structured))
def test_text_parsers_never_raise(text):
    for parse in TEXT_PARSERS:
        parse(text)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RECORDED), st.integers(min_value=0), st.text(max_size=20),
       st.integers(min_value=0, max_value=40))
def test_mutated_recordings_never_raise(text, where, insert, cut):
    pos = where % (len(text) + 1)
    mutated = text[:pos] + insert + text[pos + cut:]
    for parse in TEXT_PARSERS:
        parse(mutated)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["nftables", "rule", "chain", "family", "table", "name", "handle", "expr", "match",
                         "left", "right", "meta", "key", "counter", "packets", "set", "xt", "policy", "hook",
                         "dev", "payload", "prefix", "comment"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_nft_json_of_any_shape_never_raises(value):
    parse_nft(json.dumps({"nftables": value}), "", ["a"], br_netfilter_ip=True, br_netfilter_arp=True)
    parse_nft(json.dumps(value), "")
