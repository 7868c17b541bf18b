"""The only module that imports scapy: frames in, frozen Observations out.

scapy's layers are imported lazily and only the three needed (`scapy.layers.l2`, `.inet`, `.dhcp`:
~0.6 s; `scapy.all` costs 1.4 s and is never used), so importing tracer.capture stays cheap and
commands that never dissect never pay for it.

Two steps per frame:

* `is_dhcp_or_arp()` is a struct-level test (about a microsecond) with exactly the semantics of the
  kernel filter `bpf.OFFLINE`: ARP, or IPv4/UDP from or to port 67/68 that is not a later fragment,
  behind at most one 802.1Q/802.1ad tag. Replay runs it on every pcap record and hands scapy only
  the matches; dissect() runs it first too, so the dissector and the kernel filter always agree.
* scapy then reads the frame. Anything it cannot read (truncated, an unknown DHCP message type, an
  ARP that is not Ethernet/IPv4, garbage) becomes an explicit MALFORMED observation, never an
  exception and never a silently dropped frame: the kernel passed it, so the analysis gets to know.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Protocol

from tracer.model import Direction, Observation

DHCP_TYPES = {
    1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM",
    9: "FORCERENEW", 10: "LEASEQUERY", 11: "LEASEUNASSIGNED", 12: "LEASEUNKNOWN", 13: "LEASEACTIVE",
}
"""RFC 2132 / 3203 / 4388 option 53 values."""
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
"""The tag protocol ids libpcap's `vlan` accepts (so the pre-check matches bpf.OFFLINE)."""
DHCP_PORTS = (67, 68)
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806


class FrameLike(Protocol):
    """A live RawFrame or a replayed packet."""

    hop: str
    time: float
    outgoing: bool
    data: bytes


def is_dhcp_or_arp(data: bytes) -> bool:
    """ARP, or IPv4 UDP from/to port 67 or 68 (first fragment), behind at most one VLAN tag.

    Mirrors bpf.OFFLINE instruction for instruction, including its bounds: the kernel rejects a
    frame when a load runs past its end, so a frame too short for a field it must read is False.
    """
    n = len(data)
    if n < 14:
        return False
    etype = (data[12] << 8) | data[13]
    ip = 14
    if etype in VLAN_TPIDS:
        if n < 18:
            return False
        etype = (data[16] << 8) | data[17]
        ip = 18
    if etype == ETH_P_ARP:
        return True
    if etype != ETH_P_IP or n < ip + 10 or data[ip + 9] != 17:
        return False
    if ((data[ip + 6] << 8) | data[ip + 7]) & 0x1FFF:
        return False
    udp = ip + (data[ip] & 0x0F) * 4
    if n < udp + 2:
        return False
    if ((data[udp] << 8) | data[udp + 1]) in DHCP_PORTS:
        return True
    return n >= udp + 4 and ((data[udp + 2] << 8) | data[udp + 3]) in DHCP_PORTS


def _tag(data: bytes) -> int | None:
    if len(data) >= 16 and ((data[12] << 8) | data[13]) in VLAN_TPIDS:
        return ((data[14] << 8) | data[15]) & 0x0FFF
    return None


def _guess_protocol(data: bytes) -> str:
    if len(data) < 14:
        return "unknown"
    etype = (data[12] << 8) | data[13]
    if etype in VLAN_TPIDS and len(data) >= 18:
        etype = (data[16] << 8) | data[17]
    return {ETH_P_ARP: "arp", ETH_P_IP: "dhcp"}.get(etype, "unknown")


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


@cache
def _layers() -> dict[str, Any]:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether

    return {"Ether": Ether, "ARP": ARP, "IP": IP, "UDP": UDP, "BOOTP": BOOTP, "DHCP": DHCP}


def prepare() -> None:
    """Import scapy's layers now, while the sockets already buffer frames.

    The import costs about 0.15 s here. Done lazily at the first frame, it would land between the
    guest's DISCOVER and the verdict; done once the capture window is open, it overlaps the wait
    for the guest's next retry, and frames that arrive meanwhile just queue in the kernel.
    """
    _layers()


def dissect(frame: FrameLike) -> Observation:
    """One Observation for one frame: DHCP, ARP or MALFORMED. Never raises, never returns None."""
    data = bytes(frame.data)
    vlan = getattr(frame, "vlan", None)
    if vlan is None:
        vlan = _tag(data)
    base: dict[str, Any] = {"hop": frame.hop, "time": frame.time, "vlan": vlan,
                            "direction": Direction.OUT if frame.outgoing else Direction.IN}
    if len(data) >= 12:
        base["dst_mac"], base["src_mac"] = _mac(data[0:6]), _mac(data[6:12])
    if not is_dhcp_or_arp(data):
        return _malformed(data, base, "not DHCPv4 or ARP (the capture filter should not have passed it)")
    try:
        return _dissect(data, base)
    except Exception as exc:  # noqa: BLE001 - scapy raises many things on damaged frames
        return _malformed(data, base, f"{type(exc).__name__}: {exc}"[:200])


def _malformed(data: bytes, base: dict[str, Any], why: str) -> Observation:
    return Observation(**base, protocol=_guess_protocol(data), message="MALFORMED", key="",
                       details={"error": why, "length": len(data)})


def _dissect(data: bytes, base: dict[str, Any]) -> Observation:
    L = _layers()
    pkt = L["Ether"](data)
    arp = pkt.getlayer(L["ARP"])
    if arp is not None:
        return _arp(arp, base)
    udp = pkt.getlayer(L["UDP"])
    if udp is None:
        raise ValueError("no UDP header")
    bootp = udp.getlayer(L["BOOTP"])
    if bootp is None:
        # scapy binds BOOTP to 68->67 and 67->68 only; a relay's 67->67 is still DHCP.
        bootp = L["BOOTP"](bytes(udp.payload))
    dhcp = bootp.getlayer(L["DHCP"])
    if dhcp is None:
        raise ValueError("BOOTP without the DHCP magic cookie and options")
    return _dhcp(bootp, dhcp, base)


def _arp(arp: Any, base: dict[str, Any]) -> Observation:
    if (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, ETH_P_IP, 6, 4):
        raise ValueError(f"ARP for hwtype {arp.hwtype} ptype 0x{arp.ptype:04x}, not Ethernet/IPv4")
    hwsrc, hwdst = str(arp.hwsrc).lower(), str(arp.hwdst).lower()
    psrc, pdst = str(arp.psrc), str(arp.pdst)
    details = {"psrc": psrc, "pdst": pdst, "hwsrc": hwsrc, "hwdst": hwdst}
    if arp.op == 1:
        # The request asks about pdst on behalf of psrc; its requester is the sender.
        return Observation(**base, protocol="arp", message="request", key=f"who-has {pdst} tell {psrc}",
                           client_mac=hwsrc, details=details)
    if arp.op == 2:
        # The reply answers from the asked address (psrc) to the requester (pdst, hwdst), so the
        # same key as its request: who-has <answered> tell <requester>.
        return Observation(**base, protocol="arp", message="reply", key=f"who-has {psrc} tell {pdst}",
                           client_mac=hwdst, details=details)
    raise ValueError(f"ARP op {arp.op}")


def _dhcp(bootp: Any, dhcp: Any, base: dict[str, Any]) -> Observation:
    opts: dict[str, Any] = {}
    for opt in dhcp.options:
        if isinstance(opt, tuple) and len(opt) >= 2 and opt[0] not in opts:
            opts[opt[0]] = opt[1]
    mtype = opts.get("message-type")
    message = DHCP_TYPES.get(mtype) if isinstance(mtype, int) else None
    if message is None:
        raise ValueError(f"DHCP message-type {mtype!r}")
    chaddr = bytes(bootp.chaddr)
    if len(chaddr) < 6:
        raise ValueError("chaddr truncated")
    xid = int(bootp.xid)
    details = {}
    for name, value in (("yiaddr", bootp.yiaddr), ("ciaddr", bootp.ciaddr), ("server_id", opts.get("server_id")),
                        ("requested_addr", opts.get("requested_addr"))):
        if value and str(value) != "0.0.0.0":
            details[name] = str(value)
    return Observation(**base, protocol="dhcp", message=message, key=f"xid 0x{xid:08x}", client_mac=_mac(chaddr),
                       xid=xid, details=details)
