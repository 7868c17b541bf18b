"""The only module that imports scapy: frames in, frozen Observations out.

scapy is imported lazily (its layers cost ~0.6 s; `scapy.all` 1.4 s, never used), so commands
that do not dissect never pay for it. A frame the kernel filter passed but scapy cannot read
becomes an explicit MALFORMED observation rather than a silent raw packet.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Any

from tracer.model import Direction, Observation

DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}
_ETH = struct.Struct("!H")


def is_dhcp_or_arp(data: bytes) -> bool:
    """About a microsecond: ARP, or IPv4 UDP to/from port 67/68, behind at most one 802.1Q tag."""
    if len(data) < 14:
        return False
    off = 12
    etype = (data[off] << 8) | data[off + 1]
    if etype in (0x8100, 0x88A8):
        if len(data) < 18:
            return False
        off = 16
        etype = (data[off] << 8) | data[off + 1]
    if etype == 0x0806:
        return True
    if etype != 0x0800:
        return False
    ip = off + 2
    if len(data) < ip + 20 or data[ip + 9] != 17:
        return False
    udp = ip + (data[ip] & 0x0F) * 4
    if len(data) < udp + 4:
        return False
    sport, dport = (data[udp] << 8) | data[udp + 1], (data[udp + 2] << 8) | data[udp + 3]
    return sport in (67, 68) or dport in (67, 68)


@cache
def _layers() -> tuple[Any, ...]:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP  # noqa: F401 - binds IP/UDP to Ether for dissection
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    return Ether, Dot1Q, ARP, BOOTP, DHCP


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def dissect(frame: Any) -> Observation:
    """`frame` has hop, time, outgoing, data and vlan (a live RawFrame or a replayed packet)."""
    base = {"hop": frame.hop, "time": frame.time, "direction": Direction.OUT if frame.outgoing else Direction.IN}
    try:
        return _dissect(frame, base)
    except Exception as exc:  # noqa: BLE001 - scapy raises many things on damaged frames
        return Observation(**base, protocol="unknown", message="MALFORMED", key="", details={"error": str(exc)[:200]})


def _dissect(frame: Any, base: dict[str, Any]) -> Observation:
    Ether, Dot1Q, ARP, BOOTP, DHCP = _layers()
    pkt = Ether(frame.data)
    vlan = getattr(frame, "vlan", None)
    if Dot1Q in pkt:
        vlan = pkt[Dot1Q].vlan
    common = {**base, "src_mac": pkt.src.lower(), "dst_mac": pkt.dst.lower(), "vlan": vlan}
    if ARP in pkt:
        a = pkt[ARP]
        if a.op == 1:
            return Observation(**common, protocol="arp", message="request", key=f"who-has {a.pdst} tell {a.psrc}",
                               client_mac=a.hwsrc.lower(), details={"psrc": a.psrc, "pdst": a.pdst})
        if a.op == 2:
            return Observation(**common, protocol="arp", message="reply", key=f"who-has {a.psrc} tell {a.pdst}",
                               client_mac=a.hwdst.lower(), details={"psrc": a.psrc, "pdst": a.pdst, "hwsrc": a.hwsrc})
        raise ValueError(f"ARP op {a.op}")
    if BOOTP in pkt and DHCP in pkt:
        b = pkt[BOOTP]
        opts = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple) and len(o) >= 2}
        mtype = opts.get("message-type")
        message = DHCP_TYPES.get(mtype) if isinstance(mtype, int) else None
        if message is None:
            raise ValueError(f"DHCP message-type {mtype!r}")
        details = {k: str(v) for k, v in (("yiaddr", b.yiaddr), ("server_id", opts.get("server_id")),
                                          ("requested_addr", opts.get("requested_addr"))) if v and v != "0.0.0.0"}
        return Observation(**common, protocol="dhcp", message=message, key=f"xid 0x{b.xid:08x}",
                           client_mac=_mac(bytes(b.chaddr)), xid=b.xid, details=details)
    raise ValueError("neither ARP nor DHCP")
