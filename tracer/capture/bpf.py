"""The kernel filter, as classic BPF attached with SO_ATTACH_FILTER: no libpcap, no tcpdump.

LIVE is `tcpdump -dd "(ip and (udp port 67 or udp port 68)) or arp"`. It needs no `vlan` clause:
on a live socket the kernel has already moved an 802.1Q tag into the packet's auxdata, so the
plain filter matches tagged and untagged frames alike (a `vlan` clause would match nothing). Files
keep the tag in the bytes, which is why replay uses a struct pre-check instead.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26

LIVE: tuple[tuple[int, int, int, int], ...] = (
    (0x28, 0, 0, 0x0000000C),
    (0x15, 0, 11, 0x00000800),
    (0x30, 0, 0, 0x00000017),
    (0x15, 0, 11, 0x00000011),
    (0x28, 0, 0, 0x00000014),
    (0x45, 9, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x0000000E),
    (0x15, 5, 0, 0x00000043),
    (0x15, 4, 0, 0x00000044),
    (0x48, 0, 0, 0x00000010),
    (0x15, 2, 0, 0x00000043),
    (0x15, 1, 2, 0x00000044),
    (0x15, 0, 1, 0x00000806),
    (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
)
LIVE_EXPRESSION = "(ip and (udp port 67 or udp port 68)) or arp"


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...] = LIVE) -> None:
    """Attach `program`; the kernel copies it, so the buffer need only live for the call."""
    insns = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
