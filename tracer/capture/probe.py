"""--probe: one real request from the guest's own interface, so the verdict need not wait.

The only code that transmits. It writes a single raw frame with the guest's own MAC through an
AF_PACKET socket opened inside the guest's namespace, and configures nothing (no address, no
route, no lease), so there is nothing to undo afterwards.
"""

from __future__ import annotations

import secrets
import socket

from tracer.capture.netns import run_in


def _send(netns: str, ifname: str, frame: bytes) -> None:
    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
            s.bind((ifname, 0))
            s.send(frame)

    run_in(netns, send)


def dhcp_discover_frame(mac: str, xid: int) -> bytes:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    hw = bytes.fromhex(mac.replace(":", ""))
    pkt = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
           / UDP(sport=68, dport=67) / BOOTP(chaddr=hw + b"\0" * 10, xid=xid, flags=0)
           / DHCP(options=[("message-type", "discover"), ("hostname", b"tracepath-l2-probe"), "end"]))
    return bytes(pkt)


def arp_request_frame(mac: str, sender_ip: str, target_ip: str) -> bytes:
    from scapy.layers.l2 import ARP, Ether

    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=mac, psrc=sender_ip, hwdst="00:00:00:00:00:00", pdst=target_ip))


def send_dhcp_discover(netns: str, ifname: str, mac: str) -> int:
    """Send one DISCOVER from `mac`; returns its xid so the trace can follow exactly it."""
    xid = secrets.randbits(32)
    _send(netns, ifname, dhcp_discover_frame(mac, xid))
    return xid


def send_arp_request(netns: str, ifname: str, mac: str, sender_ip: str, target_ip: str) -> None:
    _send(netns, ifname, arp_request_frame(mac, sender_ip, target_ip))
