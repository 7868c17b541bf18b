"""Reading and writing capture files without libpcap: pcapng with per-hop interfaces, and pcap.

We write pcapng because it carries what a trace needs and pcap cannot: which hop a packet was seen
on (one Interface Description Block per hop, named like the interface) and which way it went (the
Enhanced Packet Block's epb_flags direction bits, which Wireshark shows as
frame.packet_flags_direction). Reading streams block by block in constant memory; a damaged file
yields what precedes the damage and then says where it stopped, instead of failing whole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from tracer.errors import BundleError

SHB, IDB, EPB, SPB, OPB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000003, 0x00000002
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
PCAP_MAGICS = {0xA1B2C3D4: ("<", 1e-6), 0xD4C3B2A1: (">", 1e-6), 0xA1B23C4D: ("<", 1e-9), 0x4D3CB2A1: (">", 1e-9)}
MAX_BLOCK = 16 * 1024 * 1024
"""A block longer than this is garbage, not a packet (snaplen is at most 256 KiB in practice)."""

DIR_IN, DIR_OUT = 1, 2


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    description: str = ""
    linktype: int = LINKTYPE_ETHERNET
    tsresol: float = 1e-9
    tsdiv: int | None = None
    """Units per second when the resolution is a power of ten: dividing integers by it gives the
    very float the live capture computed, so a replayed timestamp equals the recorded one."""


@dataclass(frozen=True, slots=True)
class Record:
    """One packet as stored: which interface, when, which way (None when the file does not say)."""

    interface: int
    time: float
    data: bytes
    direction: int | None = None
    orig_len: int = 0


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class Writer:
    """Append-only pcapng writer: one section, the interfaces first, then packets."""

    def __init__(self, fh: BinaryIO, interfaces: list[Interface], *, application: str = "tracepath-l2") -> None:
        self._fh = fh
        self._ids = {iface.name: i for i, iface in enumerate(interfaces)}
        shb_opts = _opt(4, application.encode()) + _opt(0, b"")
        fh.write(_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts))
        for iface in interfaces:
            opts = _opt(2, iface.name.encode())
            if iface.description:
                opts += _opt(3, iface.description.encode())
            opts += _opt(9, bytes([9])) + _opt(0, b"")  # if_tsresol: 10^-9 s
            fh.write(_block(IDB, struct.pack("<HHI", iface.linktype, 0, 0) + opts))

    def write(self, interface: str, time: float, data: bytes, direction: int | None = None) -> None:
        ts = int(round(time * 1e9))
        body = struct.pack("<IIIII", self._ids[interface], ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body += data + b"\0" * ((-len(data)) % 4)
        if direction:
            body += _opt(2, struct.pack("<I", direction)) + _opt(0, b"")
        self._fh.write(_block(EPB, body))


class Reader:
    """Stream records from a pcap or pcapng file; `interfaces` fills in as IDBs are read.

    `problems` lists what was skipped (unknown block types are normal and silent; a truncated
    tail or a garbage length is a problem and ends the read).
    """

    def __init__(self, fh: BinaryIO, *, name: str = "capture") -> None:
        self._fh = fh
        self.name = name
        self.interfaces: list[Interface] = []
        self.problems: list[str] = []
        head = fh.read(4)
        if len(head) < 4:
            raise BundleError(f"{name}: empty or truncated file, not a capture")
        (magic,) = struct.unpack("<I", head)
        if magic == SHB:
            self.kind = "pcapng"
            self._iter = self._pcapng(head)
        elif magic in PCAP_MAGICS:
            self.kind = "pcap"
            self._iter = self._pcap(magic)
        else:
            raise BundleError(f"{name}: not a pcap or pcapng file (magic 0x{magic:08x})")

    def __iter__(self) -> Iterator[Record]:
        return self._iter

    # -------------------------------------------------------------- pcap
    def _pcap(self, magic: int) -> Iterator[Record]:
        endian, unit = PCAP_MAGICS[magic]
        rest = self._fh.read(20)
        if len(rest) < 20:
            raise BundleError(f"{self.name}: truncated pcap header")
        _vmaj, _vmin, _tz, _sig, _snap, linktype = struct.unpack(endian + "HHiIII", rest)
        self.interfaces.append(Interface(self.name, linktype=linktype & 0xFFFF, tsresol=unit,
                                         tsdiv=10**6 if unit == 1e-6 else 10**9))
        hdr = struct.Struct(endian + "IIII")
        offset = 24
        while True:
            raw = self._fh.read(16)
            if not raw:
                return
            if len(raw) < 16:
                self.problems.append(f"{self.name}: truncated record header at byte {offset}")
                return
            sec, frac, incl, orig = hdr.unpack(raw)
            if incl > MAX_BLOCK:
                self.problems.append(f"{self.name}: garbage record length {incl} at byte {offset}; stopped there")
                return
            data = self._fh.read(incl)
            if len(data) < incl:
                self.problems.append(f"{self.name}: truncated record at byte {offset}")
                return
            offset += 16 + incl
            yield Record(0, sec + frac * unit, data, None, orig)  # pcap: seconds + fraction, as tcpdump

    # -------------------------------------------------------------- pcapng
    def _pcapng(self, first: bytes) -> Iterator[Record]:
        fh, endian, offset = self._fh, "<", 0
        pending = first
        while True:
            head = pending + fh.read(8 - len(pending))
            pending = b""
            if not head:
                return
            if len(head) < 8:
                self.problems.append(f"{self.name}: truncated block header at byte {offset}")
                return
            btype, length = struct.unpack(endian + "II", head)
            if btype == SHB:
                bom = fh.read(4)
                if len(bom) < 4:
                    self.problems.append(f"{self.name}: truncated section header at byte {offset}")
                    return
                endian = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
                (length,) = struct.unpack(endian + "I", head[4:])
                body = bom + fh.read(max(0, length - 12 - 4)) if length >= 16 else b""
                base = len(self.interfaces)
                self._section_base = base
            else:
                body = b""
            if length < 12 or length % 4 or length > MAX_BLOCK:
                self.problems.append(f"{self.name}: garbage block length {length} at byte {offset}; stopped there")
                return
            if btype != SHB:
                body = fh.read(length - 12)
            trailer = fh.read(4)
            if len(body) < length - 12 or len(trailer) < 4:
                self.problems.append(f"{self.name}: truncated block at byte {offset}")
                return
            offset += length
            if btype == IDB:
                self.interfaces.append(self._idb(body, endian))
            elif btype == EPB:
                rec = self._epb(body, endian)
                if rec is not None:
                    yield rec
            elif btype == SPB and self.interfaces:
                (orig,) = struct.unpack(endian + "I", body[:4])
                yield Record(getattr(self, "_section_base", 0), 0.0, body[4:4 + orig], None, orig)

    def _idb(self, body: bytes, endian: str) -> Interface:
        linktype, _res, _snap = struct.unpack(endian + "HHI", body[:8])
        name, desc, resol, div = f"{self.name}#{len(self.interfaces)}", "", 1e-6, 10**6
        for code, value in _options(body[8:], endian):
            if code == 2:
                name = value.decode(errors="replace").rstrip("\0")
            elif code == 3:
                desc = value.decode(errors="replace").rstrip("\0")
            elif code == 9 and value:
                b = value[0]
                resol = 2.0 ** -(b & 0x7F) if b & 0x80 else 10.0 ** -b
                div = None if b & 0x80 or b > 18 else 10**b
        return Interface(name, desc, linktype, resol, div)

    def _epb(self, body: bytes, endian: str) -> Record | None:
        if len(body) < 20:
            self.problems.append(f"{self.name}: short packet block")
            return None
        iid, hi, lo, incl, orig = struct.unpack(endian + "IIIII", body[:20])
        iid += getattr(self, "_section_base", 0)
        if iid >= len(self.interfaces) or incl > len(body) - 20:
            self.problems.append(f"{self.name}: packet block names interface {iid} or overruns; skipped")
            return None
        data = body[20:20 + incl]
        direction = None
        for code, value in _options(body[20 + incl + ((-incl) % 4):], endian):
            if code == 2 and len(value) >= 4:
                direction = struct.unpack(endian + "I", value[:4])[0] & 0x3 or None
        iface = self.interfaces[iid]
        units = (hi << 32) | lo
        return Record(iid, units / iface.tsdiv if iface.tsdiv else units * iface.tsresol, data, direction, orig)


def _options(buf: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(buf):
        code, length = struct.unpack(endian + "HH", buf[pos:pos + 4])
        if code == 0:
            return
        value = buf[pos + 4:pos + 4 + length]
        if len(value) < length:
            return
        yield code, value
        pos += 4 + length + ((-length) % 4)
