"""Capture: the kernel filter, the dissector, and real sockets on a real lab."""

from __future__ import annotations

import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import read
from tracer.capture import bpf
from tracer.capture.dissect import dissect, is_dhcp_or_arp
from tracer.capture.live import HopSpec, RawFrame, Sniffer
from tracer.model import Direction


def test_embedded_filter_is_what_tcpdump_compiles_today():
    out = subprocess.run(["tcpdump", "-dd", bpf.LIVE_EXPRESSION], capture_output=True, text=True, check=True).stdout
    program = tuple(tuple(int(x, 0) for x in line.strip(" {},").split(",")) for line in out.splitlines() if line)
    assert program == bpf.LIVE


def frames():
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    mac = "02:47:00:00:00:02"
    base = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex("024700000002"), xid=0x1234))
    out = {}
    for n, name in enumerate(["discover", "offer", "request", "decline", "ack", "nak", "release", "inform"], 1):
        out[name] = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / base / DHCP(options=[("message-type", n), "end"]))
    out["tagged"] = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=2222) / base
                          / DHCP(options=[("message-type", 1), "end"]))
    out["arp-request"] = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                               / ARP(op=1, hwsrc=mac, psrc="198.18.0.148", pdst="198.18.0.1"))
    out["arp-reply"] = bytes(Ether(src="02:47:00:00:00:fe", dst=mac)
                             / ARP(op=2, hwsrc="02:47:00:00:00:fe", psrc="198.18.0.1", hwdst=mac, pdst="198.18.0.148"))
    return out


@pytest.mark.parametrize("name,message", [("discover", "DISCOVER"), ("offer", "OFFER"), ("request", "REQUEST"),
                                          ("decline", "DECLINE"), ("ack", "ACK"), ("nak", "NAK"),
                                          ("release", "RELEASE"), ("inform", "INFORM"), ("tagged", "DISCOVER")])
def test_dissect_every_dhcp_message(name, message):
    data = frames()[name]
    obs = dissect(RawFrame("vnet0", 1.0, True, data))
    assert is_dhcp_or_arp(data)
    assert (obs.protocol, obs.message, obs.key) == ("dhcp", message, "xid 0x00001234")
    assert obs.client_mac == "02:47:00:00:00:02" and obs.direction is Direction.OUT
    assert obs.vlan == (2222 if name == "tagged" else None)


def test_arp_request_and_reply_share_a_key():
    req = dissect(RawFrame("x", 1.0, False, frames()["arp-request"]))
    rep = dissect(RawFrame("x", 1.1, False, frames()["arp-reply"]))
    assert req.key == rep.key == "who-has 198.18.0.1 tell 198.18.0.148"
    assert req.client_mac == rep.client_mac == "02:47:00:00:00:02"


@pytest.mark.parametrize("cut", [20, 40, 250])
def test_truncated_frames_are_malformed_not_errors(cut):
    obs = dissect(RawFrame("x", 1.0, False, frames()["discover"][:cut]))
    assert obs.message == "MALFORMED"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    is_dhcp_or_arp(data)
    assert dissect(RawFrame("x", 0.0, False, data)).hop == "x"


def promisc(dev: str) -> int:
    return int(read(f"/sys/class/net/{dev}/flags").strip() or "0", 16) & 0x100


@pytest.mark.live
def test_sniffer_sees_a_dora_at_every_hop_with_direction(make_lab):
    state = make_lab("healthy")
    n = state.name
    hops = [HopSpec("eth0", f"tl2-{n}-guest"), HopSpec(f"{n}-g0"), HopSpec(f"{n}-br"), HopSpec(f"{n}-up")]
    before = {h.name: promisc(h.name) for h in hops[1:]}
    seen = []
    with Sniffer(hops) as sn:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen += [dissect(f) for f in sn.poll(0.2)]
            if {(o.hop, o.message) for o in seen} >= {(f"{n}-g0", "ACK"), (f"{n}-up", "ACK")}:
                break
        stats = {s.hop: s for s in sn.stats()}
    assert {h.name: promisc(h.name) for h in hops[1:]} == before
    at = {(o.hop, o.message): str(o.direction) for o in seen if o.protocol == "dhcp"}
    assert at[(f"tl2-{n}-guest:eth0", "DISCOVER")] == "out"
    assert at[(f"{n}-g0", "DISCOVER")] == "in" and at[(f"{n}-up", "DISCOVER")] == "out"
    assert at[(f"{n}-up", "OFFER")] == "in" and at[(f"{n}-g0", "OFFER")] == "out"
    assert all(s.drops == 0 for s in stats.values())


@pytest.mark.live
def test_a_vanishing_hop_is_marked_gone_not_raised(make_lab):
    state = make_lab("healthy")
    n = state.name
    with Sniffer([HopSpec(f"{n}-g0"), HopSpec(f"{n}-up")]) as sn:
        sn.poll(0.1)
        subprocess.run(["ip", "link", "del", f"{n}-g0"], check=True)
        deadline = time.monotonic() + 5
        while f"{n}-g0" not in sn.gone and time.monotonic() < deadline:
            sn.poll(0.2)
        assert f"{n}-g0" in sn.gone
