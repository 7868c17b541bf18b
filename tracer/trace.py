"""The live trace: resolve, open every sniffer, (probe), watch until the verdict is certain.

Order matters: every socket and the evidence collectors are open *before* anything is sent, so
the first frame of a probe is never missed; the analysis runs on each poll with "now" passed in as
data, so the trace ends as soon as waiting longer cannot change the answer. Whatever happens
(Ctrl-C, an interface vanishing, the timeout) the frames already captured are analysed and
reported: nothing seen is ever lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracer.analyze import analyze
from tracer.errors import require_root
from tracer.model import Evidence, Observation, Path, Report, Role

POLL = 0.05
"""Longest wait for frames between two analyses: a stop becomes certain at most this long after
its grace ran out, and the analysis of a handful of frames costs well under a millisecond."""


@dataclass
class TraceResult:
    """The report plus what the live run knows about itself (for the bundle and the renderer)."""

    report: Report
    observations: list[Observation]
    evidence: Evidence
    raw: list = field(default_factory=list)
    """RawFrames as captured, for --record."""
    interrupted: bool = False
    gone: list[str] = field(default_factory=list)
    probe: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)


def sniffable(path: Path) -> list:
    """Every hop we can open a socket on: all but the far end beyond the host."""
    from tracer.capture.live import HopSpec

    return [HopSpec(h.name, h.netns) for h in path.hops if h.role is not Role.UPSTREAM]


def run_trace(
    path: Path,
    *,
    target: str,
    protocol: str,
    timeout: float,
    probe: bool = False,
    tick: Callable[[float], None] | None = None,
) -> TraceResult:
    """Capture on every hop of `path` until the verdict is certain or `timeout` passes."""
    require_root("tracing")
    from tracer.capture.dissect import dissect, prepare
    from tracer.capture.live import Sniffer
    from tracer.evidence.collect import EvidenceCollector

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    hops = sniffable(path)
    bridges = [h.name for h in path.hops if h.role is Role.BRIDGE]
    macs = [path.guest.mac] if path.guest.mac else []
    observations: list[Observation] = []
    raw: list = []
    interrupted = False
    probe_info = None
    host_hops = [h.name for h in hops if not h.netns]
    with Sniffer(hops, partial=True) as sniffer, EvidenceCollector(bridges, macs, host_hops) as collector:
        start = time.time()
        timings["open"] = time.monotonic() - t0
        if probe:
            probe_info = send_probe(path, protocol)
        probes = [probe_info["key"]] if probe_info and probe_info.get("key") else []
        prepare()
        report = None
        try:
            while True:
                frames = sniffer.poll(POLL)
                raw.extend(frames)
                observations.extend(dissect(f) for f in frames)
                collector.poll()
                now = time.time()
                report = analyze(path, observations, collector.snapshot(), (start, now), protocol=protocol,
                                 target=target, sniffed=_sniffed(hops, sniffer), probes=probes)
                if report.certain or sniffer.gone or now - start >= timeout:
                    break
                if tick:
                    tick(max(0.0, timeout - (now - start)))
        except KeyboardInterrupt:
            interrupted = True
        # One last drain: frames already queued in the kernel belong to this window.
        frames = sniffer.poll(0)
        raw.extend(frames)
        observations.extend(dissect(f) for f in frames)
        end = time.time()
        gone = sorted(sniffer.gone)
        evidence = replace(collector.finish(), capture=tuple(sniffer.stats()))
        sniffed = _sniffed(hops, sniffer)
    t1 = time.monotonic()
    report = analyze(path, observations, evidence, (start, end), protocol=protocol, target=target, sniffed=sniffed,
                     probes=probes)
    timings["analyze"] = time.monotonic() - t1
    timings["total"] = time.monotonic() - t0
    return TraceResult(report, observations, evidence, raw, interrupted, gone, probe_info, timings)


def _sniffed(hops: list, sniffer) -> list[str]:
    return [h.label for h in hops if h.label not in sniffer.failed]


def send_probe(path: Path, protocol: str) -> dict:
    """Send one request from the guest's own interface, when the guest side can be entered.

    This is the only place the tool transmits; it runs only with --probe, and it configures
    nothing (a raw frame from the guest's MAC), so there is nothing to undo.
    """
    from tracer.capture import probe

    guest = next((h for h in path.hops if h.role is Role.GUEST), None)
    if guest is None or not guest.netns or not path.guest.mac:
        return {"sent": False, "why": "the guest side cannot be entered from the host (a VM): waiting for its "
                "own retries instead"}
    if protocol == "dhcp":
        xid = probe.send_dhcp_discover(guest.netns, guest.name, path.guest.mac)
        return {"sent": True, "what": f"DHCP DISCOVER xid 0x{xid:08x}", "key": f"xid 0x{xid:08x}",
                "from": guest.label}
    sender, target = probe_arp_addresses(path)
    if target is None:
        return {"sent": False, "why": "no address to ARP for: the guest has no lease and no gateway"}
    probe.send_arp_request(guest.netns, guest.name, path.guest.mac, sender, target)
    return {"sent": True, "what": f"ARP who-has {target} tell {sender}", "key": f"who-has {target} tell {sender}",
            "from": guest.label}


def probe_arp_addresses(path: Path) -> tuple[str, str | None]:
    """The guest's own address and its gateway, as the resolver read them from the guest side."""
    guest = path.guest.details
    return guest.get("ipv4") or "0.0.0.0", guest.get("gateway") or guest.get("dhcp_server")
