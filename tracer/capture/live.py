"""One AF_PACKET socket per hop: kernel-filtered, kernel-timestamped, direction-aware.

Each socket is created inside the hop's namespace, gets the BPF filter *before* it is bound (so no
unfiltered frame is ever queued), a large receive buffer (a burst of back-to-back DHCP/ARP frames
overflows the default 212 KiB), SO_TIMESTAMPNS (the time the kernel saw the frame, not when we
read it) and PACKET_AUXDATA (the VLAN tag the kernel stripped). The loop copies bytes only; no
scapy per frame here.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from dataclasses import dataclass

from tracer.capture.bpf import attach_filter
from tracer.capture.netns import run_in
from tracer.errors import CaptureError, PrivilegeError
from tracer.model import CaptureStats, hop_label

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 32
SO_TIMESTAMPNS = 35
TP_STATUS_VLAN_VALID = 0x10
RCVBUF = 8 * 1024 * 1024
SNAPLEN = 65535


@dataclass(frozen=True, slots=True)
class HopSpec:
    name: str
    netns: str | None = None

    @property
    def label(self) -> str:
        return hop_label(self.name, self.netns)


@dataclass(frozen=True, slots=True)
class RawFrame:
    hop: str
    time: float
    outgoing: bool
    data: bytes
    vlan: int | None = None


def open_socket(hop: HopSpec) -> tuple[socket.socket, int]:
    """Open, filter and bind the socket for one hop inside its namespace; returns (sock, rcvbuf)."""

    def make() -> tuple[socket.socket, int]:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PrivilegeError("capturing needs CAP_NET_RAW (run as root)") from None
        try:
            attach_filter(sock)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                sock.bind((hop.name, ETH_P_ALL))
            except OSError as exc:
                raise CaptureError(f"cannot capture on {hop.name}"
                                   + (f" in {hop.netns}" if hop.netns else "") + f": {exc.strerror}") from None
            sock.setblocking(False)
            return sock, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except BaseException:
            sock.close()
            raise

    return run_in(hop.netns, make)


class Sniffer:
    """All hops at once. `failed` holds hops that could not be opened (with why), `gone` hops whose
    interface vanished mid-capture; neither raises, so what was captured is never lost."""

    def __init__(self, hops: list[HopSpec]) -> None:
        self.hops = hops
        self.failed: dict[str, str] = {}
        self.gone: set[str] = set()
        self.rcvbuf: dict[str, int] = {}
        self._socks: dict[int, tuple[HopSpec, socket.socket]] = {}
        self._stats: dict[str, list[int]] = {}

    def __enter__(self) -> Sniffer:
        try:
            for hop in self.hops:
                try:
                    sock, size = open_socket(hop)
                except CaptureError as exc:
                    self.failed[hop.label] = str(exc)
                    continue
                self._socks[sock.fileno()] = (hop, sock)
                self.rcvbuf[hop.label] = size
                self._stats[hop.label] = [0, 0]
            if not self._socks:
                raise CaptureError("no hop could be opened: " + "; ".join(self.failed.values()))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, timeout: float) -> list[RawFrame]:
        """Wait up to `timeout` for frames on any hop and drain everything queued."""
        live = [fd for fd, (hop, _) in self._socks.items() if hop.label not in self.gone]
        if not live:
            return []
        try:
            ready, _, _ = select.select(live, [], [], timeout)
        except InterruptedError:
            ready = []
        out: list[RawFrame] = []
        for fd in ready if timeout else live:
            hop, sock = self._socks[fd]
            out.extend(self._drain(hop, sock))
        out.sort(key=lambda f: f.time)
        return out

    def _drain(self, hop: HopSpec, sock: socket.socket) -> list[RawFrame]:
        frames = []
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(SNAPLEN, 1024)
            except BlockingIOError:
                return frames
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV) and not _exists(hop):
                    self.gone.add(hop.label)
                return frames
            ts, vlan = None, None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    ts = (sec * 1_000_000_000 + nsec) / 1e9  # the same float pcapng replay computes
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= 20:
                    status, _l, _s, _m, _n, tci, _tpid = struct.unpack("IIIHHHH", payload[:20])
                    if status & TP_STATUS_VLAN_VALID:
                        vlan = tci & 0x0FFF
            frames.append(RawFrame(hop.label, ts if ts is not None else _now(), addr[2] == PACKET_OUTGOING,
                                   data, vlan))

    def stats(self) -> list[CaptureStats]:
        """Packets and drops per hop (PACKET_STATISTICS resets on read, so we accumulate)."""
        for hop, sock in self._socks.values():
            try:
                packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            except OSError:
                continue
            self._stats[hop.label][0] += packets
            self._stats[hop.label][1] += drops
        return [CaptureStats(name, p, d) for name, (p, d) in self._stats.items()]

    def close(self) -> None:
        if self._socks:
            self.stats()
        for _, sock in self._socks.values():
            sock.close()
        self._socks = {}


def _exists(hop: HopSpec) -> bool:
    try:
        return bool(run_in(hop.netns, lambda: socket.if_nametoindex(hop.name)))
    except Exception:  # noqa: BLE001 - namespace or link gone: either way the hop is gone
        return False


def _now() -> float:
    import time

    return time.time()


