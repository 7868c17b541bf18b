"""Replay: the same analysis on what a bundle (or an operator's own captures) recorded.

Only frames that pass a cheap struct-level check (DHCP v4 or ARP, with or without one 802.1Q
tag) reach scapy, so replay speed is set by file reading, not by dissection; memory stays
constant because packets are streamed and only the few DHCP/ARP observations are kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from tracer.analyze import analyze
from tracer.bundle import store
from tracer.bundle.pcapng import DIR_OUT, Reader
from tracer.errors import BundleError
from tracer.model import Evidence, FdbEntry, Guest, Hop, KernelLine, Observation, Path, Report, Role


@dataclass
class ReplayResult:
    report: Report
    problems: list[str] = field(default_factory=list)
    packets: int = 0
    matched: int = 0


def _observations(packets: Iterable, problems: list[str]) -> tuple[list[Observation], int, int]:
    from tracer.capture.dissect import dissect, is_dhcp_or_arp
    from tracer.capture.live import RawFrame

    obs: list[Observation] = []
    total = matched = 0
    for p in packets:
        total += 1
        if not is_dhcp_or_arp(p.data):
            continue
        matched += 1
        obs.append(dissect(RawFrame(p.hop, p.time, p.outgoing, p.data, None)))
    malformed = sum(1 for o in obs if o.message == "MALFORMED")
    if malformed:
        problems.append(f"{malformed} DHCP/ARP frame(s) could not be dissected and were skipped")
    return obs, total, matched


def replay_bundle(directory: str) -> ReplayResult:
    bundle = store.load(directory)
    problems: list[str] = []
    obs, total, matched = _observations(bundle.packets(problems), problems)
    probe = bundle.manifest.get("probe") or {}
    report = analyze(bundle.path, obs, bundle.evidence, bundle.window, protocol=bundle.manifest["protocol"],
                     target=bundle.manifest["target"], sniffed=bundle.hops, replay=True,
                     probes=[probe["key"]] if probe.get("key") else [])
    return ReplayResult(report, problems, total, matched)


# ---------------------------------------------------------------- bring your own captures
ROLE_BY_POSITION = (Role.GUEST_PORT, Role.BRIDGE, Role.UPLINK)
BRIDGE_NAME = re.compile(r"^(br|brq|virbr|xenbr|lxcbr|lxdbr|vmbr)|-br$")


@dataclass(frozen=True, slots=True)
class _Packet:
    hop: str
    time: float
    outgoing: bool
    data: bytes


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
    from tracer.capture.dissect import is_dhcp_or_arp

    problems: list[str] = []
    total = 0

    def packets() -> Iterable[_Packet]:
        """Stream every file; only DHCP/ARP frames go on (and are dissected at once): memory does
        not grow with the file, only with the handful of observations kept."""
        nonlocal total
        for name, file in hops:
            try:
                fh = open(file, "rb")  # noqa: SIM115
            except OSError as exc:
                raise BundleError(f"{file}: {exc.strerror}") from None
            with fh:
                reader = Reader(fh, name=file)
                for rec in reader:
                    total += 1
                    if reader.interfaces[rec.interface].linktype == 1 and is_dhcp_or_arp(rec.data):
                        yield _Packet(name, rec.time, rec.direction == DIR_OUT, rec.data)
                problems.extend(reader.problems)
                bad = {i.linktype for i in reader.interfaces} - {1}
                if bad:
                    problems.append(f"{file}: link type {sorted(bad)} is not Ethernet; its frames were skipped")

    obs, _, matched = _observations(packets(), problems)
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
    return ReplayResult(report, problems, total, matched)


def _role(i: int, name: str, n: int, bridges: set[str]) -> Role:
    """Guest port first, uplink last; in between, a bridge if the saved FDB names it as a master
    or its name looks like one (br0, brq..., virbr0, lab-br), otherwise another hop on the way out."""
    if i == 0:
        return Role.GUEST_PORT
    if i == n - 1:
        return Role.UPLINK
    return Role.BRIDGE if name in bridges or BRIDGE_NAME.search(name) else Role.UPLINK


def _guess_client(obs: list[Observation]) -> str | None:
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
