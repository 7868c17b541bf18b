"""Frames in, frozen Observations out; with probe.py the only place scapy's layers are used.

scapy's layers are imported lazily and only the three needed (`scapy.layers.l2`, `.inet`, `.dhcp`:
~0.6 s; `scapy.all` costs 1.4 s and is never used), so importing tracer.capture stays cheap and
commands that never dissect never pay for it.

Three steps per frame:

* `is_dhcp_or_arp()` is a struct-level test (about a microsecond) with exactly the semantics of the
  kernel filter `bpf.OFFLINE`: ARP, or IPv4/UDP from or to port 67/68 that is not a later fragment,
  behind at most one 802.1Q/802.1ad tag. Replay runs it on every pcap record and dissects only
  the matches; dissect() runs it first too, so the dissector and the kernel filter always agree.
* `_read()` takes the fields an Observation holds from a well-formed frame at fixed offsets
  (~10 us against scapy's 110-150 us: it is what lets a replay keep up with tcpdump), and gives up
  on anything unusual.
* scapy reads what `_read()` gave up on. Anything it cannot read (truncated, an unknown DHCP
  message type, an ARP that is not Ethernet/IPv4, garbage) becomes an explicit MALFORMED
  observation, never an exception and never a silently dropped frame: the kernel passed it, so the
  analysis gets to know. Tests hold `_read()` to scapy's output on recorded and fuzzed frames.
"""

from __future__ import annotations

import socket
import struct
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
    return raw[:6].hex(":")


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
        return _read(data, base) or _dissect(data, base)
    except Exception as exc:  # noqa: BLE001 - scapy raises many things on damaged frames
        return _malformed(data, base, f"{type(exc).__name__}: {exc}"[:200])


# ---------------------------------------------------------------- well-formed frames, without scapy
_ARP_HEAD = struct.Struct("!HHBBH6s4s6s4s")
_BOOTP_FIXED = 240
"""op .. file (236 bytes), then the DHCP magic cookie."""
_MAGIC = b"\x63\x82\x53\x63"


def _read(data: bytes, base: dict[str, Any]) -> Observation | None:
    """The same Observation scapy would give, for a well-formed frame; None for anything unusual.

    scapy spends 110-150 us per frame here; a replay of a multi-million-packet capture hands it
    tens of thousands of DHCP/ARP frames, and that alone was 30x tcpdump's time on the same file.
    This reads only the fields an Observation holds, at fixed offsets, and gives up (None) on
    anything it is not sure of (truncation, options that overrun, an IP version or length out of
    place), so scapy still reads, and explains, every frame that is not plainly well formed. A test
    holds the two to the same output on recorded and fuzzed frames.
    """
    n = len(data)
    etype = (data[12] << 8) | data[13]
    off = 14
    if etype in VLAN_TPIDS:
        etype, off = (data[16] << 8) | data[17], 18
    if etype == ETH_P_ARP:
        if n < off + _ARP_HEAD.size:
            return None
        hw, proto, hwlen, plen, op, sha, spa, tha, tpa = _ARP_HEAD.unpack_from(data, off)
        if (hw, proto, hwlen, plen) != (1, ETH_P_IP, 6, 4) or op not in (1, 2):
            return None
        return _arp_observation(base, op, _mac(sha), _mac(tha), socket.inet_ntoa(spa), socket.inet_ntoa(tpa))
    ip = off
    if data[ip] >> 4 != 4:
        return None
    udp = ip + (data[ip] & 0x0F) * 4
    total = (data[ip + 2] << 8) | data[ip + 3]
    if udp + 8 > n or total < udp - ip + 8 or ip + total > n:
        return None
    ulen = (data[udp + 4] << 8) | data[udp + 5]
    end = ip + total
    if ulen < 8 or udp + ulen > end:
        return None
    end = udp + ulen
    bootp = udp + 8
    if end < bootp + _BOOTP_FIXED + 1 or data[bootp + 236:bootp + 240] != _MAGIC:
        return None
    opts: dict[int, bytes] = {}
    i = bootp + _BOOTP_FIXED
    while i < end:
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 2 > end or i + 2 + data[i + 1] > end:
            return None
        opts.setdefault(code, data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    else:
        return None  # no end option: leave the judgement to scapy
    mtype, server, requested = opts.get(53), opts.get(54), opts.get(50)
    if mtype is None or len(mtype) != 1 or mtype[0] not in DHCP_TYPES:
        return None
    if any(v is not None and len(v) != 4 for v in (server, requested)):
        return None
    addresses = (data[bootp + 16:bootp + 20], data[bootp + 12:bootp + 16], server, requested)
    return _dhcp_observation(base, DHCP_TYPES[mtype[0]], int.from_bytes(data[bootp + 4:bootp + 8], "big"),
                             _mac(data[bootp + 28:bootp + 34]),
                             *(socket.inet_ntoa(a) if a else None for a in addresses))


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
    if arp.op not in (1, 2):
        raise ValueError(f"ARP op {arp.op}")
    return _arp_observation(base, arp.op, str(arp.hwsrc).lower(), str(arp.hwdst).lower(), str(arp.psrc),
                            str(arp.pdst))


def _arp_observation(base: dict[str, Any], op: int, hwsrc: str, hwdst: str, psrc: str, pdst: str) -> Observation:
    """Request (op 1) or reply (op 2), keyed so that a reply carries its request's key."""
    details = {"psrc": psrc, "pdst": pdst, "hwsrc": hwsrc, "hwdst": hwdst}
    if op == 1:
        # The request asks about pdst on behalf of psrc; its requester is the sender.
        return Observation(**base, protocol="arp", message="request", key=f"who-has {pdst} tell {psrc}",
                           client_mac=hwsrc, details=details)
    # The reply answers from the asked address (psrc) to the requester (pdst, hwdst), so the same
    # key as its request: who-has <answered> tell <requester>.
    return Observation(**base, protocol="arp", message="reply", key=f"who-has {psrc} tell {pdst}",
                       client_mac=hwdst, details=details)


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
    addresses = (bootp.yiaddr, bootp.ciaddr, opts.get("server_id"), opts.get("requested_addr"))
    return _dhcp_observation(base, message, int(bootp.xid), _mac(chaddr),
                             *(str(a) if a else None for a in addresses))


def _dhcp_observation(base: dict[str, Any], message: str, xid: int, chaddr: str, yiaddr: str | None,
                      ciaddr: str | None, server_id: str | None, requested_addr: str | None) -> Observation:
    """One DHCP message, keyed by its xid; unset (0.0.0.0) addresses are left out of the details."""
    named = (("yiaddr", yiaddr), ("ciaddr", ciaddr), ("server_id", server_id), ("requested_addr", requested_addr))
    details = {name: value for name, value in named if value and value != "0.0.0.0"}
    return Observation(**base, protocol="dhcp", message=message, key=f"xid 0x{xid:08x}", client_mac=chaddr,
                       xid=xid, details=details)
