"""One AF_PACKET socket per hop: kernel-filtered, kernel-timestamped, direction-aware.

Theory of operation, and the kernel behaviour each step relies on:

* The socket is created inside the hop's namespace (tracer.capture.netns) with protocol 0, which
  hooks it into no receive path: nothing can be queued yet. The BPF filter is attached, and only
  then bind(2) with ETH_P_ALL and the interface starts delivery, so every queued frame has passed
  the filter. Everything but DHCPv4 and ARP is dropped in the kernel and never costs a syscall.
* A socket bound to one interface gets that interface's frames in both directions: received ones
  from `__netif_receive_skb_core()` and transmitted ones from `dev_queue_xmit_nit()`, tagged
  PACKET_OUTGOING in sll_pkttype. That is the direction (anything not outgoing is `in`). It also
  means a bridge port is sniffed on its own; the bridge device only sees what the bridge delivers
  to the host itself (broadcasts, frames to its own MAC), never unicast forwarded between ports.
* Nothing sets promiscuous mode (no PACKET_ADD_MEMBERSHIP): bridge ports are promiscuous already
  (the bridge raised their promiscuity when they were enslaved), and an ETH_P_ALL tap sees every
  frame the interface itself receives or sends, which on a guest's own NIC is all of its traffic.
* SO_RCVBUFFORCE (CAP_NET_ADMIN; SO_RCVBUF is capped by net.core.rmem_max) gives room for bursts:
  each queued frame costs its skb truesize (~1-2 KiB for a small frame), not its length. The
  kernel doubles the value it is given; `rcvbuf` reports what getsockopt says it got.
* SO_TIMESTAMPNS asks for the skb's timestamp (taken when the kernel received or transmitted the
  frame), so a busy reader does not skew the times the analysis compares across hops.
* PACKET_AUXDATA returns a `struct tpacket_auxdata` with the VLAN TCI the kernel moved out of the
  bytes (TP_STATUS_VLAN_VALID).
* PACKET_STATISTICS returns `struct tpacket_stats {u32 tp_packets; u32 tp_drops}` and zeroes it on
  every read; tp_packets counts frames that passed the filter, including those dropped because the
  receive queue was full (tp_drops). So the counters are accumulated here.
* When an interface is unregistered, the packet notifier unhooks the socket, reports ENETDOWN once
  (only if it was running) and sets its ifindex to -1; getsockname(2) then names no interface. A
  hop whose interface vanished is marked `gone` rather than raising: what was captured still counts.

The loop only copies bytes and parses two control messages; no scapy per frame here.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass

from tracer.capture import bpf
from tracer.capture.netns import run_in
from tracer.errors import CaptureError, PrivilegeError
from tracer.model import CaptureStats, hop_label

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

RCVBUF = 8 * 1024 * 1024
"""Requested receive buffer per socket (the kernel doubles it; without CAP_NET_ADMIN it is capped)."""
SNAPLEN = 65536
"""Read buffer: GSO frames on veth/tap can reach 64 KiB; DHCP/ARP frames are a few hundred bytes."""
DRAIN_MAX = 4096
"""Frames read from one socket per poll(), so one busy hop cannot starve the others."""
GONE_CHECK = 0.5
"""Seconds between checks that every interface still exists (one getsockname(2) per hop)."""

_TIMESPEC = struct.Struct("@qq")
_AUXDATA = struct.Struct("@IIIHHHH")
_STATS = struct.Struct("@II")
_ANCBUF = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size) + 64
_VANISHED = (errno.ENETDOWN, errno.ENXIO, errno.ENODEV)


@dataclass(frozen=True, slots=True)
class HopSpec:
    """An interface to sniff, and the namespace it lives in (None: the host's own)."""

    name: str
    netns: str | None = None

    @property
    def label(self) -> str:
        return hop_label(self.name, self.netns)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame as the kernel handed it to the hop's socket."""

    hop: str
    """The hop's label (netns:name inside a namespace)."""
    time: float
    """Kernel timestamp, seconds since the epoch."""
    outgoing: bool
    """sll_pkttype == PACKET_OUTGOING: the interface transmitted it (else it received it)."""
    data: bytes
    """The frame from the Ethernet header on; a VLAN tag the kernel stripped is in `vlan`."""
    vlan: int | None = None
    """VLAN id from PACKET_AUXDATA when the kernel carried the tag out of band."""

    def tagged(self) -> bytes:
        """The frame as it was on the wire: the stripped 802.1Q tag put back after the MACs.

        libpcap does the same when it writes a live capture, so files written from these bytes
        read like tcpdump's (the priority bits are not kept: auxdata's TCI is reduced to `vlan`).
        """
        if self.vlan is None or len(self.data) < 12:
            return self.data
        return self.data[:12] + struct.pack("!HH", 0x8100, self.vlan & 0x0FFF) + self.data[12:]


class _Socket:
    """One open hop: its socket and its accumulated counters."""

    __slots__ = ("spec", "label", "sock", "ifindex", "rcvbuf", "packets", "drops")

    def __init__(self, spec: HopSpec, sock: socket.socket, ifindex: int, rcvbuf: int) -> None:
        self.spec = spec
        self.label = spec.label
        self.sock = sock
        self.ifindex = ifindex
        self.rcvbuf = rcvbuf
        self.packets = 0
        self.drops = 0

    def read_stats(self) -> None:
        try:
            packets, drops = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        except OSError:
            return
        self.packets += packets
        self.drops += drops

    def vanished(self) -> bool:
        """True once the kernel unbound the socket because its interface was unregistered.

        Python's getsockname() asks SIOCGIFNAME on the socket itself, i.e. in the socket's own
        namespace, for the ifindex the kernel reset to -1: an empty name means no interface.
        """
        try:
            return self.sock.getsockname()[0] == ""
        except OSError:
            return True


def open_socket(hop: HopSpec, *, program: tuple[bpf.Insn, ...] = bpf.OFFLINE,
                rcvbuf: int = RCVBUF) -> tuple[socket.socket, int, int]:
    """Open, filter and bind the socket for one hop inside its namespace.

    Returns (socket, ifindex, receive buffer size the kernel granted). Raises PrivilegeError
    without CAP_NET_RAW, CaptureError (naming the hop) when the interface or namespace is missing.
    """
    where = f" in namespace {hop.netns}" if hop.netns else ""

    def make() -> tuple[socket.socket, int, int]:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PrivilegeError("capturing needs CAP_NET_RAW (run as root)") from None
        try:
            bpf.attach_filter(sock, program)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                ifindex = socket.if_nametoindex(hop.name)
                sock.bind((hop.name, ETH_P_ALL))
            except OSError as exc:
                missing = exc.errno in (errno.ENODEV, errno.ENXIO, None)
                why = "no such interface" if missing else (exc.strerror or str(exc))
                raise CaptureError(f"cannot capture on {hop.name}{where}: {why}") from None
            sock.setblocking(False)
            return sock, ifindex, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except BaseException:
            sock.close()
            raise

    return run_in(hop.netns, make)


class Sniffer:
    """Capture on all hops at once; use as a context manager so sockets open before anything else.

    `rcvbuf` maps each hop to the receive buffer it got, `gone` holds hops whose interface vanished
    mid-capture, and `failed` (only with partial=True) hops that could not be opened and why.
    By default a hop that cannot be opened raises CaptureError naming it; with partial=True the
    others are still sniffed and only a Sniffer with no hop at all raises.
    """

    def __init__(self, hops: list[HopSpec], *, partial: bool = False, program: tuple[bpf.Insn, ...] = bpf.OFFLINE,
                 rcvbuf: int = RCVBUF) -> None:
        self.hops = list(hops)
        self.partial = partial
        self.program = program
        self.requested_rcvbuf = rcvbuf
        self.rcvbuf: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.gone: set[str] = set()
        self._open: dict[int, _Socket] = {}
        self._closed: list[_Socket] = []
        self._epoll: select.epoll | None = None
        self._buf = bytearray(SNAPLEN)
        self._view = memoryview(self._buf)
        self._next_check = 0.0

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Sniffer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open every hop's socket; on any failure nothing stays open (unless `partial`)."""
        try:
            self._epoll = select.epoll()
            for hop in self.hops:
                try:
                    sock, ifindex, size = open_socket(hop, program=self.program, rcvbuf=self.requested_rcvbuf)
                except CaptureError as exc:
                    if not self.partial:
                        raise
                    self.failed[hop.label] = str(exc)
                    continue
                entry = _Socket(hop, sock, ifindex, size)
                self._open[sock.fileno()] = entry
                self.rcvbuf[hop.label] = size
                self._epoll.register(sock.fileno(), select.EPOLLIN)
            if not self._open:
                raise CaptureError("no hop could be opened" + (": " + "; ".join(self.failed.values())
                                                               if self.failed else ""))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Read the counters one last time and close every socket (safe to call twice)."""
        for entry in self._open.values():
            entry.read_stats()
            entry.sock.close()
            self._closed.append(entry)
        self._open = {}
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    # ------------------------------------------------------------ reading
    def poll(self, timeout: float) -> list[RawFrame]:
        """Wait up to `timeout` seconds for frames on any hop, then drain what is queued.

        Frames come back sorted by kernel timestamp. A hop whose interface vanished is added to
        `gone` (and no longer waited on); nothing here raises for that.
        """
        if self._epoll is None:
            return []
        frames: list[RawFrame] = []
        if self._open:
            for fd, _events in self._epoll.poll(max(timeout, 0.0)):
                entry = self._open.get(fd)
                if entry is not None:
                    self._drain(entry, frames)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + GONE_CHECK
            for entry in list(self._open.values()):
                if entry.label not in self.gone and entry.vanished():
                    self._mark_gone(entry)
        frames.sort(key=lambda f: f.time)
        return frames

    def _drain(self, entry: _Socket, out: list[RawFrame]) -> None:
        sock, view, label = entry.sock, self._view, entry.label
        for _ in range(DRAIN_MAX):
            try:
                n, anc, _flags, addr = sock.recvmsg_into((view,), _ANCBUF)
            except BlockingIOError:
                return
            except OSError as exc:
                # ENETDOWN is also what a socket reports once when its interface merely goes
                # down (and it is re-hooked when it comes back up): only a vanished one is gone.
                if exc.errno in _VANISHED:
                    if entry.vanished():
                        self._mark_gone(entry)
                    return
                raise CaptureError(f"reading {label} failed: {exc.strerror}") from None
            stamp = None
            vlan = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    stamp = (sec * 1_000_000_000 + nsec) / 1e9  # bit-identical to what pcapng replay computes
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= _AUXDATA.size:
                    status, _len, _snap, _mac, _net, tci, _tpid = _AUXDATA.unpack_from(payload)
                    if status & TP_STATUS_VLAN_VALID:
                        vlan = tci & 0x0FFF
            out.append(RawFrame(label, stamp if stamp is not None else time.time(), addr[2] == PACKET_OUTGOING,
                                bytes(view[:n]), vlan))

    def _mark_gone(self, entry: _Socket) -> None:
        self.gone.add(entry.label)
        entry.read_stats()
        if self._epoll is not None:
            try:
                self._epoll.unregister(entry.sock.fileno())
            except OSError:
                pass

    # ------------------------------------------------------------ counters
    def stats(self) -> list[CaptureStats]:
        """Frames that passed the filter and frames the kernel dropped (queue full), per hop.

        PACKET_STATISTICS resets on every read, so each read is added to running totals.
        """
        for entry in self._open.values():
            entry.read_stats()
        entries = list(self._open.values()) or self._closed
        return [CaptureStats(e.label, e.packets, e.drops) for e in entries]

    @property
    def sniffing(self) -> list[str]:
        """Labels of the hops that were opened (including ones that are gone since)."""
        return [e.label for e in (list(self._open.values()) or self._closed)]
