"""Small factories for pure tests: a lab-shaped path, frames seen on it, and capture files."""

from __future__ import annotations

import io
import struct

from tracer.bundle.pcapng import DIR_IN, Interface, Writer
from tracer.model import Direction, Guest, Hop, Observation, Path, Role

GUEST_MAC = "fa:16:3e:56:ea:fa"
SERVER_MAC = "02:47:00:00:00:fe"
T0 = 1_000_000.0


def lab_path(*, guest_hop: bool = True, **port_facts) -> Path:
    hops = []
    if guest_hop:
        hops.append(Hop("eth0", "veth", Role.GUEST, mac=GUEST_MAC, mtu=1500, netns="tl2-t-guest", state="UP"))
    hops += [
        Hop("tap0b5f208b-76", "tun", Role.GUEST_PORT, mac="fe:16:3e:56:ea:fa", mtu=1500, state="UP",
            master="brq5dddda71-76", port_state="forwarding", **port_facts),
        Hop("brq5dddda71-76", "bridge", Role.BRIDGE, mac="90:b1:1c:4f:cb:86", mtu=1500, state="UP"),
        Hop("bond0", "veth", Role.UPLINK, mac="90:b1:1c:4f:cb:86", mtu=1500, state="UP",
            master="brq5dddda71-76", port_state="forwarding"),
    ]
    return Path(Guest("instance-00000347", "libvirt", mac=GUEST_MAC), tuple(hops))


UP_HOPS = [("tl2-t-guest:eth0", "out"), ("tap0b5f208b-76", "in"), ("bond0", "out")]
DOWN_HOPS = [("bond0", "in"), ("tap0b5f208b-76", "out"), ("tl2-t-guest:eth0", "in")]


def dhcp(message: str, hop: str, direction: str, t: float, xid: int = 0x3903F326) -> Observation:
    to_server = message in ("DISCOVER", "REQUEST", "DECLINE", "RELEASE", "INFORM")
    return Observation(
        hop=hop, time=T0 + t, direction=Direction(direction), protocol="dhcp", message=message,
        key=f"xid 0x{xid:08x}", src_mac=GUEST_MAC if to_server else SERVER_MAC,
        dst_mac="ff:ff:ff:ff:ff:ff" if to_server else GUEST_MAC, client_mac=GUEST_MAC, xid=xid,
    )


def crossing(message: str, t: float, hops: list[tuple[str, str]], xid: int = 0x3903F326) -> list[Observation]:
    """The message seen at each of `hops`, 100 µs apart."""
    return [dhcp(message, h, d, t + i * 0.0001, xid) for i, (h, d) in enumerate(hops)]


def dora(t: float = 0.0, xid: int = 0x3903F326) -> list[Observation]:
    return (crossing("DISCOVER", t, UP_HOPS, xid) + crossing("OFFER", t + 0.01, DOWN_HOPS, xid)
            + crossing("REQUEST", t + 0.02, UP_HOPS, xid) + crossing("ACK", t + 0.03, DOWN_HOPS, xid))


def arp(message: str, hop: str, direction: str, t: float) -> Observation:
    request = message == "request"
    return Observation(
        hop=hop, time=T0 + t, direction=Direction(direction), protocol="arp", message=message,
        key="who-has 198.18.0.1 tell 198.18.0.148",
        src_mac=GUEST_MAC if request else SERVER_MAC,
        dst_mac="ff:ff:ff:ff:ff:ff" if request else GUEST_MAC, client_mac=GUEST_MAC,
    )


# ---------------------------------------------------------------- capture files
ARP = bytes.fromhex("ffffffffffff02470000000208060001080006040001024700000002c6120001000000000000c6120094")


def pcapng(records=((("vnet3", 1.5, ARP, DIR_IN)),)) -> bytes:
    """A pcapng as --record writes it: an interface per hop, a direction on every packet."""
    buf = io.BytesIO()
    w = Writer(buf, [Interface("vnet3", "guest-port"), Interface("lab-up", "uplink")])
    for hop, t, data, d in records:
        w.write(hop, t, data, d)
    return buf.getvalue()


def pcap(records=((1.25, ARP),)) -> bytes:
    """A classic pcap as tcpdump writes it (Ethernet, microseconds)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for t, data in records:
        out += struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(data), len(data)) + data
    return out
