"""Turning a finished live trace into a bundle (the one place that knows both)."""

from __future__ import annotations

import time

from tracer.bundle import store
from tracer.trace import TraceResult


def record_bundle(directory: str, result: TraceResult, *, target: str, protocol: str) -> None:
    report = result.report
    hops = list(report.sniffed)
    order = [h.label for h in report.path.hops]
    descriptions = {
        h.label: f"{h.role}, hop {order.index(h.label) + 1} of {len(order)}" + (f", netns {h.netns}" if h.netns else "")
        for h in report.path.hops if h.label in hops
    }
    manifest = {
        "target": target,
        "protocol": protocol,
        "window": list(report.window),
        "hops": hops,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "capture": [c.to_dict() for c in result.evidence.capture],
        "probe": result.probe,
        "interrupted": result.interrupted,
        "vanished": result.gone,
        "verdict": report.verdict.to_dict(),
        "findings": [f.code for f in report.findings],
    }
    # tagged(): put a VLAN tag the kernel moved out of the bytes back in, as libpcap does in files
    packets = (store.Packet(f.hop, f.time, f.outgoing, f.tagged()) for f in result.raw)
    store.write(directory, manifest=manifest, path=report.path, packets=packets, evidence=result.evidence,
                hop_descriptions=descriptions)
