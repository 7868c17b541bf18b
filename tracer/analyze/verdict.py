"""Deciding: did a complete exchange cross every hop, and if not, where did it stop?

Precedence, most telling first: a complete exchange that crossed every sniffed hop means the
path works (ok). Otherwise the most recent frame that stopped for certain (seen at one hop and
missing at the next for longer than the hop grace) says where (stopped). A request that crossed
the whole host and got no reply within the reply grace stops "upstream". A hop that is down or
blocking stops everything even when no frame was seen. Otherwise nothing certain was seen yet
(inconclusive), and the caller may keep waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tracer.analyze import findings as rules
from tracer.analyze.checks import static_checks
from tracer.analyze.findings import Stop
from tracer.analyze.frames import DHCP_REPLY_TO, DHCP_TO_SERVER, Frame, frames
from tracer.analyze.hops import DOWN, UP, expected_direction, guest_port, transit
from tracer.model import Evidence, Finding, Observation, Path, Report, Severity, Status, Verdict

UPSTREAM = "upstream"
"""Pseudo-hop beyond the last host hop: where requests go when nothing answers."""


@dataclass(frozen=True, slots=True)
class Timing:
    hop_grace: float = 0.25
    """A frame seen at one hop must show at the next within this. Host hops take microseconds (a
    frame crosses a bridge in one softirq; 4 us measured receive to drop), timestamps are the
    kernel's, and every socket is drained before "now" is taken, so the grace only has to cover a
    softirq deferred to ksoftirqd on a loaded host and one poll of the capture loop (trace.POLL). It is
    most of the time from the decisive frame to the verdict, so it is kept that small."""
    reply_grace: float = 3.0
    """A server must answer within this after the request left the host."""


@dataclass(frozen=True, slots=True)
class Crossing:
    frame: Frame
    hops: tuple[str, ...]
    """Transit hops in travel order (sniffed only)."""
    crossed: tuple[bool, ...]

    @property
    def complete(self) -> bool:
        return bool(self.hops) and all(self.crossed)

    @property
    def reach(self) -> int:
        """Index of the furthest hop the frame reached, -1 if none."""
        return max((i for i, c in enumerate(self.crossed) if c), default=-1)


def analyze(
    path: Path,
    observations: Iterable[Observation],
    evidence: Evidence,
    window: tuple[float, float],
    *,
    protocol: str,
    target: str,
    sniffed: Iterable[str] | None = None,
    timing: Timing = Timing(),
    replay: bool = False,
    probes: Iterable[str] = (),
) -> Report:
    """The whole analysis. `window[1]` is "now" for a live run and the recorded end for a replay."""
    sniffed_set = set(sniffed) if sniffed is not None else {h.label for h in path.hops}
    mac = (path.guest.mac or "").lower() or None
    mine = [o for o in observations if o.protocol == protocol and belongs(o, mac)]
    travel_dir = {(h.label, t): str(expected_direction(h, t)) for h in path.hops for t in (UP, DOWN)
                  if h.label in sniffed_set}
    crossings = [_crossing(f, path, sniffed_set) for f in frames(mine, mac, travel_dir)]
    # A frame first seen before the window opened crossed while the sockets were still being
    # opened one hop after another: the hops opened last may have missed it, so it proves nothing.
    crossings = [c for c in crossings if c.reach >= 0 and c.frame.first >= window[0]]
    end = window[1]

    verdict, stop, focus, certain = _decide(crossings, protocol, end, timing, set(probes))
    found = _findings(path, evidence, stop)
    if verdict is None:
        blocker = next((f for f in found if f.code in ("link-down", "stp-blocking", "not-attached")
                        and f.severity is Severity.ERROR), None)
        if blocker is not None:
            verdict = Verdict(Status.STOPPED, f"nothing can cross {blocker.hop}: {blocker.evidence[0]}",
                              _between_static(path, blocker.hop))
            certain = True
        elif mine:
            verdict = Verdict(Status.INCONCLUSIVE, "frames seen, but no exchange is complete or certainly stopped yet")
        else:
            verdict = Verdict(Status.INCONCLUSIVE, f"no {protocol.upper()} frame of {path.guest.name} seen yet")
    return Report(
        target=target, protocol=protocol, path=path,
        observations=tuple(sorted(mine, key=lambda o: o.time)),
        verdict=verdict, findings=tuple(found), window=window, certain=certain, focus=focus,
        sniffed=tuple(h.label for h in path.hops if h.label in sniffed_set), replay=replay,
    )


def belongs(o: Observation, mac: str | None) -> bool:
    """Whether the frame is part of the exchanges of the guest with MAC `mac` (lower case)."""
    if mac is None:
        return True
    macs = {(o.client_mac or "").lower(), o.src_mac.lower(), o.dst_mac.lower()}
    return mac in macs


def _crossing(frame: Frame, path: Path, sniffed: set[str]) -> Crossing:
    hops = transit(path, sniffed, frame.travel)
    crossed = tuple(frame.at(h.label, str(expected_direction(h, frame.travel))) is not None for h in hops)
    return Crossing(frame, tuple(h.label for h in hops), crossed)


def _decide(
    crossings: list[Crossing], protocol: str, end: float, timing: Timing, probes: set[str]
) -> tuple[Verdict | None, Stop | None, str | None, bool]:
    complete = _complete_exchanges(crossings, protocol, probes)
    if complete:
        key, msgs = complete[-1]
        hops = next(c.hops for c in crossings if c.frame.key == key)
        return (Verdict(Status.OK, f"{' '.join(msgs)} {key} crossed every hop ({' > '.join(hops)})"),
                None, key, True)

    stops: list[Stop] = []
    replies: dict[str, list[Crossing]] = {}  # by key, so matching requests to replies stays linear
    for c in crossings:
        if c.frame.travel == DOWN:
            replies.setdefault(c.frame.key, []).append(c)
    for c in crossings:
        if c.complete:
            if c.frame.travel == UP and _expects_reply(c.frame):
                if _replied(c, replies.get(c.frame.key, ())):
                    continue
                if end - c.frame.last >= timing.reply_grace:
                    stops.append(Stop(c.frame.label, c.frame.key, c.frame.travel, c.hops[-1], UPSTREAM, c.frame.last))
            continue
        last, missing = c.hops[c.reach], c.hops[c.reach + 1] if c.reach + 1 < len(c.hops) else None
        if missing is None:
            continue
        if end - c.frame.last >= timing.hop_grace:
            stops.append(Stop(c.frame.label, c.frame.key, c.frame.travel, last, missing, c.frame.last))
    if not stops:
        return None, None, None, False
    # Prefer a stop inside the host (it explains more) over "no reply", then the most recent.
    stop = max(stops, key=lambda s: (s.missing != UPSTREAM, s.time))
    if stop.missing == UPSTREAM:
        msg = f"{stop.label} left {stop.last_seen}; no reply came back"
    else:
        msg = f"{stop.label} reached {stop.last_seen} but not {stop.missing}"
    # A frame that stopped for certain does not un-stop: the trace can end now.
    return Verdict(Status.STOPPED, msg, (stop.last_seen, stop.missing)), stop, stop.key, True


def _expects_reply(frame: Frame) -> bool:
    if frame.protocol == "dhcp":
        return frame.message in DHCP_REPLY_TO
    return frame.message == "request"


def _replied(request: Crossing, replies: Iterable[Crossing]) -> bool:
    """Any reply to this request seen at any hop (whether it then reached the guest is another frame)."""
    wanted = DHCP_REPLY_TO.get(request.frame.message, set()) if request.frame.protocol == "dhcp" else {"reply"}
    return any(c.frame.message in wanted and c.frame.first >= request.frame.first - 0.001 for c in replies)


def _complete_exchanges(crossings: list[Crossing], protocol: str, probes: set[str]) -> list[tuple[str, list[str]]]:
    """Keys whose exchange completed with every frame crossing every hop, oldest first.

    An exchange our own probe started is complete once its DISCOVER and OFFER crossed every hop
    both ways: the probe never sends a REQUEST (it must not take a lease), and a request and its
    reply crossing the whole path in both directions is what "the path works" means.
    """
    done: dict[str, list[str]] = {}
    order: list[str] = []
    for c in sorted(crossings, key=lambda c: c.frame.first):
        if c.complete:
            msgs = done.setdefault(c.frame.key, [])
            if c.frame.message not in msgs:
                msgs.append(c.frame.message)
            if c.frame.key not in order:
                order.append(c.frame.key)
    out = []
    for key in order:
        msgs = done[key]
        if protocol == "dhcp":
            ok = "ACK" in msgs and "REQUEST" in msgs
            if "DISCOVER" in msgs:
                ok = ok and "OFFER" in msgs
            if key in probes and {"DISCOVER", "OFFER"} <= set(msgs):
                ok = True
            if not ok and "INFORM" in msgs and "ACK" in msgs:
                ok = True
        else:
            ok = {"request", "reply"} <= set(msgs)
        if ok:
            out.append((key, msgs))
    return out


def _findings(path: Path, evidence: Evidence, stop: Stop | None) -> list[Finding]:
    found = [
        *rules.fdb_mismatch(path, evidence, stop),
        *rules.own_address_loop(path, evidence),
        *rules.filter_drops(path, evidence),
        *rules.kernel_drops(path, evidence, stop),
        *rules.upstream_no_reply(path, stop),
        *rules.static_findings(path, evidence),
        *static_checks(path),
    ]
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(found, key=lambda f: order[f.severity])


def _between_static(path: Path, hop: str | None) -> tuple[str, str] | None:
    names = [h.label for h in path.hops]
    if hop not in names:
        return None
    i = names.index(hop)
    port = guest_port(path)
    prev = names[i - 1] if i > 0 else (path.guest.name if port and port.label == hop else hop)
    return (prev, hop)


__all__ = ["analyze", "Timing", "DHCP_TO_SERVER"]
