"""The kernel filter, as classic BPF attached with SO_ATTACH_FILTER: no libpcap, no tcpdump.

The programs below were compiled once with `tcpdump -dd EXPRESSION` (tcpdump 4.99, which compiles
for a dead Ethernet handle when no interface is named) and are checked against what tcpdump
compiles today by tests/test_capture_unit.py.

Why two programs:

* On a live AF_PACKET socket the kernel has usually moved an 802.1Q tag out of the bytes and into
  the skb (`skb_vlan_untag()` runs in `__netif_receive_skb_core()` before any packet tap, and a
  device with TX VLAN offload transmits the tag out of band too). The filter then sees an untagged
  frame, so LIVE (no `vlan` clause) matches tagged and untagged DHCP/ARP alike, and the tag is read
  back from PACKET_AUXDATA. A `vlan and (...)` clause on its own would match nothing live.
* A file keeps the tag in the bytes (libpcap re-inserts it when it writes), so OFFLINE adds
  `or (vlan and (...))`. Because tcpdump -dd compiles `vlan` for a dead handle, that clause is
  plain byte offsets (TPID 0x8100/0x88a8/0x9100 at offset 12), not the SKF_AD_VLAN_TAG_PRESENT
  extension libpcap emits for a live Linux handle. So OFFLINE is also correct on a live socket, and
  it is what the Sniffer attaches: it additionally catches the rare frame whose tag is still in the
  bytes when the tap sees it (a frame written with its tag by a raw socket, or transmitted by a
  device without TX VLAN offload, where `validate_xmit_vlan()` pushes the tag back into the bytes
  before `dev_queue_xmit_nit()` hands it to the taps).

Only IPv4 UDP to or from port 67/68 (DHCPv4; `udp port 67` alone would also pass IPv6) and ARP.
Non-first IPv4 fragments are rejected, as tcpdump does (they carry no UDP header).
"""

from __future__ import annotations

import ctypes
import operator
import socket

Insn = tuple[int, int, int, int]
"""One `struct sock_filter`: (code, jt, jf, k)."""

SO_ATTACH_FILTER = 26
BPF_MAXINSNS = 4096

LIVE_EXPRESSION = "(ip and (udp port 67 or udp port 68)) or arp"
LIVE: tuple[Insn, ...] = (
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

OFFLINE_EXPRESSION = f"{LIVE_EXPRESSION} or (vlan and ({LIVE_EXPRESSION}))"
OFFLINE: tuple[Insn, ...] = (
    (0x28, 0, 0, 0x0000000C),
    (0x15, 0, 10, 0x00000800),
    (0x30, 0, 0, 0x00000017),
    (0x15, 0, 27, 0x00000011),
    (0x28, 0, 0, 0x00000014),
    (0x45, 25, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x0000000E),
    (0x15, 21, 0, 0x00000043),
    (0x15, 20, 0, 0x00000044),
    (0x48, 0, 0, 0x00000010),
    (0x15, 18, 16, 0x00000043),
    (0x15, 17, 0, 0x00000806),
    (0x15, 2, 0, 0x00008100),
    (0x15, 1, 0, 0x000088A8),
    (0x15, 0, 15, 0x00009100),
    (0x28, 0, 0, 0x00000010),
    (0x15, 0, 11, 0x00000800),
    (0x30, 0, 0, 0x0000001B),
    (0x15, 0, 11, 0x00000011),
    (0x28, 0, 0, 0x00000018),
    (0x45, 9, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x00000012),
    (0x48, 0, 0, 0x00000012),
    (0x15, 5, 0, 0x00000043),
    (0x15, 4, 0, 0x00000044),
    (0x48, 0, 0, 0x00000014),
    (0x15, 2, 0, 0x00000043),
    (0x15, 1, 2, 0x00000044),
    (0x15, 0, 1, 0x00000806),
    (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
)


class SockFilter(ctypes.Structure):
    """`struct sock_filter` from <linux/filter.h>: u16 code, u8 jt, u8 jf, u32 k (8 bytes)."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    """`struct sock_fprog`: unsigned short len, then a pointer (padded to 16 bytes on 64-bit)."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def attach_filter(sock: socket.socket, program: tuple[Insn, ...] = OFFLINE) -> None:
    """Attach `program` to `sock` with SO_ATTACH_FILTER.

    The kernel copies and verifies the program inside setsockopt(2), so the ctypes array only has
    to live for the call. Attach it before bind(2): a packet socket created with protocol 0 is not
    hooked into the receive path at all, so no unfiltered frame can be queued in between.
    """
    if not 0 < len(program) <= BPF_MAXINSNS:
        raise ValueError(f"a classic BPF program has 1..{BPF_MAXINSNS} instructions, not {len(program)}")
    insns = (SockFilter * len(program))(*(SockFilter(*ins) for ins in program))
    fprog = SockFprog(len(program), ctypes.cast(insns, ctypes.POINTER(SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))

_ALU = {0x00: operator.add, 0x10: operator.sub, 0x20: operator.mul, 0x30: operator.floordiv, 0x40: operator.or_,
        0x50: operator.and_, 0x60: operator.lshift, 0x70: operator.rshift, 0x90: operator.mod, 0xA0: operator.xor}


def run(program: tuple[Insn, ...], data: bytes) -> int:
    """Interpret `program` on `data` as the kernel would; returns the snap length (0 = rejected).

    A small classic-BPF interpreter covering what tcpdump emits for these filters (loads, ldx msh,
    conditional jumps, ALU with constants, ret). As in the kernel, a load past the end of the frame
    rejects the frame. It lets tests prove what the constants match without a kernel or libpcap.
    """
    a = x = 0
    mem = [0] * 16
    pc = 0
    n = len(data)

    def load(off: int, size: int) -> int | None:
        if off < 0 or off + size > n:
            return None
        return int.from_bytes(data[off:off + size], "big")

    while 0 <= pc < len(program):
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        pc += 1
        if cls in (0x00, 0x01):  # BPF_LD / BPF_LDX
            mode, size = code & 0xE0, {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 4)
            if mode == 0x00:  # IMM
                val: int | None = k
            elif mode == 0x20:  # ABS
                val = load(k, size)
            elif mode == 0x40:  # IND
                val = load(x + k, size)
            elif mode == 0x60:  # MEM
                val = mem[k & 15]
            elif mode == 0x80:  # LEN
                val = n
            elif mode == 0xA0 and cls == 0x01:  # MSH: 4 * (byte & 0xf)
                b = load(k, 1)
                val = None if b is None else (b & 0x0F) * 4
            else:
                raise ValueError(f"unsupported BPF load 0x{code:02x}")
            if val is None:
                return 0
            if cls == 0x00:
                a = val
            else:
                x = val
        elif cls == 0x02:  # ST
            mem[k & 15] = a
        elif cls == 0x03:  # STX
            mem[k & 15] = x
        elif cls == 0x04:  # ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op in (0x30, 0x90) and src == 0:
                return 0
            if op == 0x80:
                a = -a & 0xFFFFFFFF
                continue
            if op not in _ALU:
                raise ValueError(f"unsupported BPF ALU 0x{code:02x}")
            if op in (0x60, 0x70):
                src &= 31
            a = _ALU[op](a, src) & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x00:
                pc += k
                continue
            cond = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}.get(op)
            if cond is None:
                raise ValueError(f"unsupported BPF jump 0x{code:02x}")
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return (a if code & 0x18 == 0x10 else k) & 0xFFFFFFFF
        elif cls == 0x07:  # MISC: TAX / TXA
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
    return 0
