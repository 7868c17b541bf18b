"""--probe: one real request from the guest's own interface, so the verdict need not wait.

The only code that transmits. It writes a single Ethernet frame, built here with struct (scapy is
left to the dissector), through an AF_PACKET socket opened inside the guest's namespace. The frame
carries the guest's own MAC as source and (for DHCP) as chaddr, so the bridge and the DHCP server
treat it exactly like the guest's own retry. Nothing is configured: no address, no route, no lease
is taken (a DISCOVER only makes the server offer), so there is nothing to undo afterwards.

The socket is created with protocol 0, so it is never hooked into the receive path, and sends with
sendto() naming the interface and the EtherType: it queues nothing and leaves no state behind.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
import struct

from tracer.capture.netns import run_in
from tracer.errors import CaptureError, PrivilegeError

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
DHCP_MAGIC = b"\x63\x82\x53\x63"


def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dhcp_discover_frame(mac: str, xid: int) -> bytes:
    """A broadcast DHCPDISCOVER from `mac`, as a client without an address sends it (RFC 2131).

    The broadcast flag is left clear, like udhcpc and most clients: the server then unicasts its
    OFFER to chaddr, so whether it reaches the guest depends on the bridge's FDB, as for real.
    """
    hw = _mac_bytes(mac)
    options = (
        DHCP_MAGIC
        + bytes((53, 1, 1))                   # message type: DISCOVER
        + bytes((61, 7, 1)) + hw              # client identifier: hardware type 1 + MAC
        + bytes((55, 4, 1, 3, 6, 51))         # parameter request list: mask, router, DNS, lease time
        + bytes((57, 2)) + struct.pack("!H", 576)
        + bytes((255,))
    )
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid & 0xFFFFFFFF, 0, 0,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, hw, b"", b"") + options
    bootp += b"\0" * max(0, 300 - len(bootp))  # BOOTP minimum size (RFC 1542); some servers insist
    src, dst = bytes(4), b"\xff" * 4
    udp_len = 8 + len(bootp)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp_csum = _checksum(pseudo + struct.pack("!HHHH", 68, 67, udp_len, 0) + bootp) or 0xFFFF
    udp = struct.pack("!HHHH", 68, 67, udp_len, udp_csum) + bootp
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    ip_hdr = ip_hdr[:10] + struct.pack("!H", _checksum(ip_hdr)) + ip_hdr[12:]
    return BROADCAST + hw + struct.pack("!H", ETH_P_IP) + ip_hdr + udp


def arp_request_frame(mac: str, sender_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP who-has `target_ip` tell `sender_ip` from `mac` (0.0.0.0 makes it a probe)."""
    hw = _mac_bytes(mac)
    spa = ipaddress.IPv4Address(sender_ip).packed
    tpa = ipaddress.IPv4Address(target_ip).packed
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, hw, spa, b"\0" * 6, tpa)
    frame = BROADCAST + hw + struct.pack("!H", ETH_P_ARP) + arp
    return frame + b"\0" * max(0, 60 - len(frame))  # pad to the Ethernet minimum, as a NIC would


def _send(netns: str | None, ifname: str, frame: bytes, ethertype: int) -> None:
    def send() -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PrivilegeError("--probe needs CAP_NET_RAW (run as root)") from None
        with sock:
            try:
                sock.sendto(frame, (ifname, ethertype))
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.ENXIO):
                    raise CaptureError(f"cannot probe from {ifname}: no such interface") from None
                if exc.errno == errno.ENETDOWN:
                    raise CaptureError(f"cannot probe from {ifname}: the interface is down") from None
                raise CaptureError(f"cannot probe from {ifname}: {exc.strerror}") from None

    run_in(netns, send)


def send_dhcp_discover(netns: str | None, ifname: str, mac: str) -> int:
    """Send one DISCOVER from `mac` out of `ifname` in `netns`; returns its xid to follow exactly it."""
    xid = secrets.randbits(32)
    _send(netns, ifname, dhcp_discover_frame(mac, xid), ETH_P_IP)
    return xid


def send_arp_request(netns: str | None, ifname: str, mac: str, sender_ip: str, target_ip: str) -> None:
    """Send one ARP request for `target_ip` from `mac`/`sender_ip` out of `ifname` in `netns`."""
    _send(netns, ifname, arp_request_frame(mac, sender_ip, target_ip), ETH_P_ARP)
