"""Replay: the same analysis on what a bundle (or an operator's own captures) recorded.

Speed: plain capture files are read by libpcap with the DHCP/ARP filter compiled in C
(tracer.capture.libpcap), bundles by the streaming pcapng reader behind the struct-level pre-check;
either way only DHCP/ARP frames are dissected, by the struct reader (scapy for odd frames).

Memory: packets are streamed, files merged in time order, and only the observations of the most
recent exchanges are kept (`Recent`): a capture ten times longer holds ten times as many
exchanges, not ten times the memory. The verdict is about how the path behaves now, which the
latest exchanges show; older ones are counted and said to be left out.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from tracer.analyze import analyze
from tracer.analyze.verdict import belongs
from tracer.bundle import store
from tracer.bundle.pcapng import DIR_OUT, LINKTYPE_ETHERNET, Reader
from tracer.errors import BundleError
from tracer.model import Evidence, FdbEntry, Guest, Hop, KernelLine, Observation, Path, Report, Role

MAX_EXCHANGES = 2048
"""Exchanges whose frames a replay keeps. A busy capture holds thousands of other clients'
exchanges; give the guest's MAC (--mac, or the bundle's) and only the guest's are kept."""
MAX_FRAMES = 64
"""Frames kept per exchange: 16 retries of a DISCOVER seen at 4 hops."""


@dataclass
class ReplayResult:
    report: Report
    problems: list[str] = field(default_factory=list)
    packets: int | None = 0
    """Packets read; None when libpcap filtered the files in C and counted only the matches."""
    matched: int = 0


class Recent:
    """The observations of the `max_keys` most recent exchanges (DHCP xid, ARP question), at most
    `per_key` frames each; frames of older exchanges, and retries beyond that, are only counted."""

    def __init__(self, mac: str | None = None, *, max_keys: int = MAX_EXCHANGES, per_key: int = MAX_FRAMES) -> None:
        self.mac = mac
        self.max_keys, self.per_key = max_keys, per_key
        self.left_out = 0
        self._by_key: OrderedDict[tuple[str, str], deque[Observation]] = OrderedDict()

    def add(self, o: Observation) -> None:
        if self.mac is not None and not belongs(o, self.mac):
            return
        key = (o.protocol, o.key)
        kept = self._by_key.get(key)
        if kept is None:
            kept = self._by_key[key] = deque(maxlen=self.per_key)
            if len(self._by_key) > self.max_keys:
                self.left_out += len(self._by_key.popitem(last=False)[1])
        else:
            self._by_key.move_to_end(key)
        if len(kept) == self.per_key:
            self.left_out += 1
        kept.append(o)

    def observations(self) -> list[Observation]:
        return sorted((o for kept in self._by_key.values() for o in kept), key=lambda o: o.time)

    def note(self, problems: list[str]) -> None:
        if self.left_out:
            problems.append(f"{self.left_out} DHCP/ARP frame(s) of older exchanges were counted but not analysed "
                            f"(replay keeps the {self.max_keys} most recent exchanges, {self.per_key} frames each)")


def _observations(packets: Iterable, problems: list[str], keep: Recent) -> tuple[int, int]:
    """Dissect the DHCP/ARP packets into `keep`; (packets read, DHCP/ARP frames)."""
    from tracer.capture.dissect import dissect, is_dhcp_or_arp

    total = matched = malformed = 0
    for p in packets:
        total += 1
        if not is_dhcp_or_arp(p.data):
            continue
        matched += 1
        o = dissect(p)
        if o.message == "MALFORMED":
            malformed += 1
        keep.add(o)
    if malformed:
        problems.append(f"{malformed} DHCP/ARP frame(s) could not be dissected and were skipped")
    keep.note(problems)
    return total, matched


def replay_bundle(directory: str) -> ReplayResult:
    bundle = store.load(directory)
    problems: list[str] = []
    keep = Recent((bundle.path.guest.mac or "").lower() or None)
    total, matched = _observations(bundle.packets(problems), problems, keep)
    obs = keep.observations()
    probe = bundle.manifest.get("probe") or {}
    report = analyze(bundle.path, obs, bundle.evidence, bundle.window, protocol=bundle.manifest["protocol"],
                     target=bundle.manifest["target"], sniffed=bundle.hops, replay=True,
                     probes=[probe["key"]] if probe.get("key") else [])
    return ReplayResult(report, problems, total, matched)


# ---------------------------------------------------------------- bring your own captures
BRIDGE_NAME = re.compile(r"^(br|brq|virbr|xenbr|lxcbr|lxdbr|vmbr)|-br$")


def replay_files(
    hops: list[tuple[str, str]],
    *,
    protocol: str,
    mac: str | None = None,
    fdb_text: str | None = None,
    dmesg_text: str | None = None,
) -> ReplayResult:
    """Replay plain tcpdump captures, one file per hop, listed guest side first.

    The first hop is the guest's port (tap/veth), the last the uplink, hops in between whose name
    looks like a bridge are bridges. tcpdump files carry no direction, so it is inferred from the
    source MAC: the guest's frames are received on its port and sent out of the uplink.
    """
    if not hops:
        raise BundleError("replay needs a bundle directory or at least one --hop NAME=FILE")
    problems: list[str] = []
    keep = Recent(mac.lower() if mac else None)
    streams = [_HopStream(name, file, problems) for name, file in hops]
    total, matched = _observations(heapq.merge(*streams, key=lambda p: p.time), problems, keep)
    counted = all(s.counted for s in streams)
    obs = keep.observations()
    known_bridges = set(re.findall(r"\bmaster (\S+)", fdb_text or ""))
    roles = [_role(i, n, len(hops), known_bridges) for i, (n, _) in enumerate(hops)]
    guest_mac = (mac or _guess_client(obs) or "").lower() or None
    obs = [_with_direction(o, roles[[n for n, _ in hops].index(o.hop)], guest_mac) for o in obs]
    path = Path(Guest(guest_mac or "unknown guest", "capture", mac=guest_mac),
                tuple(Hop(n, "bridge" if r is Role.BRIDGE else "device", r) for (n, _), r in zip(hops, roles,
                                                                                                  strict=True)))
    evidence = Evidence(
        fdb=tuple(_fdb_from_text(fdb_text or "")),
        kernel=tuple(KernelLine(line) for line in (dmesg_text or "").splitlines() if line.strip()),
    )
    times = [o.time for o in obs] or [0.0]
    window = (min(times), max(times) + 30.0)  # the operator captured for a while after the last frame
    report = analyze(path, obs, evidence, window, protocol=protocol, target=path.guest.name,
                     sniffed=[n for n, _ in hops], replay=True)
    return ReplayResult(report, problems, total if counted else None, matched)


class _HopStream:
    """One hop's file as a stream of DHCP/ARP packets: libpcap with the filter in C when it can
    open the file, else the Python reader (which explains what is wrong with a file it cannot read)."""

    def __init__(self, name: str, file: str, problems: list[str]) -> None:
        from tracer.capture.bpf import OFFLINE_EXPRESSION
        from tracer.capture.libpcap import open_filtered

        self.name, self.file, self.problems = name, file, problems
        self._fast = open_filtered(file, OFFLINE_EXPRESSION) if os.path.isfile(file) else None

    @property
    def counted(self) -> bool:
        """Whether every packet of the file went through Python (libpcap's filter counts nothing)."""
        return self._fast is None

    def __iter__(self) -> Iterator[store.Packet]:
        yield from self._python() if self._fast is None else self._filtered(self._fast)

    def _filtered(self, fast: Any) -> Iterator[store.Packet]:
        try:
            if fast.linktype != LINKTYPE_ETHERNET:
                self._not_ethernet({fast.linktype})
                return
            for t, data in fast.frames():
                yield store.Packet(self.name, t, False, data)
            if fast.error:
                self.problems.append(f"{self.file}: {fast.error}; the frames before it were read")
        finally:
            fast.close()

    def _python(self) -> Iterator[store.Packet]:
        try:
            fh = open(self.file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise BundleError(f"{self.file}: {exc.strerror}") from None
        with fh:
            reader = Reader(fh, name=self.file)
            for rec in reader:
                if reader.interfaces[rec.interface].linktype == LINKTYPE_ETHERNET:
                    yield store.Packet(self.name, rec.time, rec.direction == DIR_OUT, rec.data)
            self.problems.extend(reader.problems)
            self._not_ethernet({i.linktype for i in reader.interfaces} - {LINKTYPE_ETHERNET})

    def _not_ethernet(self, linktypes: set[int]) -> None:
        if linktypes:
            self.problems.append(f"{self.file}: link type {sorted(linktypes)} is not Ethernet; its frames were skipped")


def _role(i: int, name: str, n: int, bridges: set[str]) -> Role:
    """Guest port first, uplink last; in between, a bridge if the saved FDB names it as a master
    or its name looks like one (br0, brq..., virbr0, lab-br), otherwise another hop on the way out."""
    if i == 0:
        return Role.GUEST_PORT
    if i == n - 1:
        return Role.UPLINK
    return Role.BRIDGE if name in bridges or BRIDGE_NAME.search(name) else Role.UPLINK


def _guess_client(obs: list[Observation]) -> str | None:
    """The client of most DHCP frames among the exchanges kept (the most recent ones)."""
    clients = Counter(o.client_mac for o in obs if o.protocol == "dhcp" and o.client_mac)
    return clients.most_common(1)[0][0] if clients else None


def _with_direction(o: Observation, role: Role, guest_mac: str | None) -> Observation:
    from_guest = guest_mac is not None and o.src_mac.lower() == guest_mac
    if role is Role.GUEST_PORT:
        d = "in" if from_guest else "out"
    elif role is Role.BRIDGE:
        d = "in"
    else:
        d = "out" if from_guest else "in"
    return Observation(**{**o.to_dict(), "direction": d})


def _fdb_from_text(text: str) -> list[FdbEntry]:
    from tracer.evidence.fdb import parse_bridge_fdb_show

    return list(parse_bridge_fdb_show(text)) if text else []


def read_text(file: str | None) -> str | None:
    if file is None:
        return None
    try:
        return FsPath(file).read_text(errors="replace")
    except OSError as exc:
        raise BundleError(f"{file}: {exc.strerror}") from None
