"""kfree_skb parsing on trace_pipe text recorded from this kernel, and the filters built for it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tracer.evidence.drops import (
    TraceParser,
    kfree_skb_filters,
    parse_format,
    parse_trace_lines,
    receive_filter,
)
from tracer.model import DropEvent, in_bridge_code

DATA = Path(__file__).parent / "data" / "evidence"
HOPS = ["xe1-g0", "xe1-up", "xe1-br", "xe2-g0", "xe2-up", "xe2-br", "xe3-g0", "xe3-up", "xe3-br"]


def load(name: str) -> str:
    return (DATA / name).read_text()


def test_recorded_pipe_gives_bridge_and_netfilter_drops_only():
    drops = parse_trace_lines(load("trace-pipe-6.18.txt"), hops=HOPS)
    kinds = Counter((d.reason, d.location.split("+")[0], d.hop) for d in drops)
    # fdb-mismatch (xe1) and own-address-loop (xe3): the OFFER arrives on the uplink where the
    # guest's MAC is (wrongly) known, and the bridge frees it without a reason
    assert kinds[("NOT_SPECIFIED", "br_handle_frame_finish", "xe1-up")] == 3
    assert kinds[("NOT_SPECIFIED", "br_handle_frame_finish", "xe3-up")] == 2
    # filter-drop (xe2): the flooded copy the nft forward rule drops is a clone, so untied
    assert kinds[("NETFILTER_DROP", "nft_do_chain", None)] == 2
    # the host's own copy of broadcasts (__udp4_lib_rcv) and closing sockets (QUEUE_PURGE) are noise
    assert all(d.location.startswith(("br_", "nft_")) for d in drops)
    assert len(drops) == 7


def test_drop_event_fields():
    drops = parse_trace_lines(load("trace-pipe-6.18.txt"), offset=1_000_000.0, hops=HOPS)
    first = next(d for d in drops if d.hop == "xe1-up")
    assert first == DropEvent(reason="NOT_SPECIFIED", location="br_handle_frame_finish+0x392/0x690",
                              time=1_000_000.0 + 6024.100584, hop="xe1-up", protocol="0x0800")
    assert DropEvent.from_dict(first.to_dict()) == first


def test_keep_unspecified_keeps_the_host_copies():
    drops = parse_trace_lines(load("trace-pipe-6.18.txt"), keep_unspecified=True)
    assert any(d.location.startswith("__udp4_lib_rcv") for d in drops)
    assert not any(d.reason == "QUEUE_PURGE" for d in drops)


def test_a_reused_address_is_not_tied_after_the_window():
    # af9fe12d was received on xe1-g0 at 6024.100162 and is a NETFILTER_DROP clone at 6024.580204
    drops = parse_trace_lines(load("trace-pipe-6.18.txt"), hops=HOPS)
    nf = [d for d in drops if d.reason == "NETFILTER_DROP"]
    assert [d.hop for d in nf] == [None, None]


def test_tie_needs_same_cpu_and_state_survives_between_reads():
    parser = TraceParser(hops=["e1-up"])
    recv = "  dnsmasq-1  [000] ..s1.  10.000000: netif_receive_skb: dev=e1-up skbaddr=00000000aaaa len=328"
    drop = ("  dnsmasq-1  [{cpu}] ..s1.  10.000004: kfree_skb: skbaddr=00000000aaaa rx_sk=0000000000000000 "
            "protocol=2048 location=br_handle_frame_finish+0x392/0x690 reason: NOT_SPECIFIED")
    assert parser.feed([recv]) == []
    assert parser.feed([drop.format(cpu="001")])[0].hop is None
    assert parser.feed([drop.format(cpu="000")])[0].hop == "e1-up"


def test_receives_on_other_interfaces_are_ignored():
    parser = TraceParser(hops=["e1-up"])
    lines = [
        "  x-1  [000] ..s1.  10.0: netif_receive_skb: dev=eth0 skbaddr=00000000aaaa len=60",
        "  x-1  [000] ..s1.  10.000001: kfree_skb: skbaddr=00000000aaaa rx_sk=0000000000000000 protocol=2054 "
        "location=br_handle_frame+0x1/0x2 reason: BRIDGE_INGRESS_STP_STATE",
    ]
    (d,) = parser.feed(lines)
    assert d.hop is None and d.protocol == "0x0806" and d.reason == "BRIDGE_INGRESS_STP_STATE"


def test_other_protocols_lost_events_and_junk():
    parser = TraceParser()
    lines = [
        "  x-1  [000] ..s1.  1.0: kfree_skb: skbaddr=1 rx_sk=0 protocol=34525 location=ip6_rcv+0x1/0x2 "
        "reason: IP_INHDR",
        "CPU:1 [LOST 17 EVENTS]",
        "# tracer: nop",
        "garbage",
        "  x-1  [000] ..s1.  1.0: kfree_skb: skbaddr=1 protocol=0x0800 location=nf_hook_slow+0x1/0x2 "
        "reason: NETFILTER_DROP",
    ]
    (d,) = parser.feed(lines)
    assert parser.lost == 17 and d.protocol == "0x0800" and d.location.startswith("nf_hook_slow")


def test_old_kernel_lines_without_reason_or_symbol():
    line = "  <idle>-0  [001] d.s.  5.5: kfree_skb: skbaddr=ffff8881 protocol=2048 location=ffffffff81a0b3c4"
    assert parse_trace_lines(line) == []  # no reason and not a bridge function: noise
    (d,) = parse_trace_lines(line, keep_unspecified=True)
    assert d.reason == "NOT_SPECIFIED" and d.location == "ffffffff81a0b3c4"


def test_format_file_of_this_kernel():
    fields, symbols = parse_format(load("kfree_skb-format-6.18.txt"))
    assert {"skbaddr", "location", "rx_sk", "protocol", "reason"} <= fields
    assert symbols["NOT_SPECIFIED"] == 2 and symbols["NETFILTER_DROP"] == 12
    assert symbols["BRIDGE_INGRESS_STP_STATE"] == 119 and symbols["LOCAL_MAC"] == 116
    rx_fields, _ = parse_format(load("netif_receive_skb-format-6.18.txt"))
    assert {"skbaddr", "len", "name"} <= rx_fields


def test_filters_most_selective_first():
    fields, symbols = parse_format(load("kfree_skb-format-6.18.txt"))
    full, proto, none = kfree_skb_filters(fields, symbols, ["br_handle_frame_finish"])
    assert full.startswith("(protocol == 2048 || protocol == 2054) && (reason != 2 || ")
    assert "location.function == br_handle_frame_finish )" in full  # space before ")" is required
    assert "reason != 30" in full and "reason != 104" in full  # TCP_FLAGS, QUEUE_PURGE
    # a namespace flooded with traffic for an address it lacks: never on the L2 path, never read
    assert "reason != 87" in full  # IP_INADDRERRORS
    assert "reason != 12" not in full and "reason != 119" not in full  # NETFILTER_DROP, STP state stay
    assert proto == "(protocol == 2048 || protocol == 2054)" and none == "0"
    assert kfree_skb_filters({"skbaddr", "location"}, {}) == ["0"]


def test_receive_filter():
    assert receive_filter(["e1-g0", "e1-up", "e1-g0", 'bad"name', ""]) == (
        'len <= 1024 && (name == "e1-g0" || name == "e1-up")'
    )
    assert receive_filter([]) is None


def test_bridge_functions():
    assert in_bridge_code("br_handle_frame_finish+0x392/0x690")
    assert in_bridge_code("__br_forward+0x1/0x2") and in_bridge_code("br_nf_pre_routing+0x1/0x2")
    assert not in_bridge_code("__udp4_lib_rcv+0xbbf/0xd00")
