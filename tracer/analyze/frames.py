"""From observations to frames: one physical frame seen at several hops, and the exchanges they form.

A frame is identified by what it carries (protocol, message, correlation key) plus the time it
crossed: copies of the same message at different hops within a short span are the same frame; a
retransmission (same xid, seconds later) is a new one. A frame reflected by a loop shows at a hop a
second time in the opposite direction; it is kept as a separate frame travelling the other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.analyze.hops import DOWN, UP
from tracer.model import Observation

SAME_FRAME_SPAN = 0.5
"""Seconds within which copies at different hops are one frame. Host hops are crossed in
microseconds to milliseconds; client retransmissions are at least a second apart."""

DHCP_TO_SERVER = {"DISCOVER", "REQUEST", "DECLINE", "RELEASE", "INFORM"}
DHCP_REPLY_TO = {"DISCOVER": {"OFFER"}, "REQUEST": {"ACK", "NAK"}, "INFORM": {"ACK"}}


@dataclass
class Frame:
    """One message as it travelled, with where (and when) it was seen."""

    protocol: str
    message: str
    key: str
    travel: str
    client_mac: str | None
    seen: dict[tuple[str, str], Observation] = field(default_factory=dict)
    """(hop, direction) -> first observation there."""

    @property
    def first(self) -> float:
        return min(o.time for o in self.seen.values())

    @property
    def last(self) -> float:
        return max(o.time for o in self.seen.values())

    def at(self, hop: str, direction: str) -> Observation | None:
        return self.seen.get((hop, direction))

    @property
    def label(self) -> str:
        return f"{self.message} {self.key}" if self.protocol == "dhcp" else f"ARP {self.message} {self.key}"


def travel_of(obs: Observation, guest_mac: str | None) -> str:
    """Requests travel from the guest up to the wire; replies come down to it."""
    if obs.protocol == "dhcp":
        return UP if obs.message in DHCP_TO_SERVER else DOWN
    if guest_mac:
        return UP if obs.src_mac.lower() == guest_mac.lower() else DOWN
    return UP if obs.message == "request" else DOWN


def frames(observations: list[Observation], guest_mac: str | None, travel_dir: dict) -> list[Frame]:
    """Group observations into frames. `travel_dir(hop, travel)` gives the direction a frame
    travelling that way shows at the hop; a copy with the other direction travels the other way."""
    out: list[Frame] = []
    open_frames: dict[tuple[str, str, str, str], Frame] = {}
    for obs in sorted(observations, key=lambda o: o.time):
        if obs.message == "MALFORMED":
            continue
        travel = travel_of(obs, guest_mac)
        expected = travel_dir.get((obs.hop, travel))
        if expected is not None and obs.direction != expected:
            travel = DOWN if travel == UP else UP  # a reflected copy: it travels the other way
        ident = (obs.protocol, obs.message, obs.key, travel)
        frame = open_frames.get(ident)
        if (
            frame is None
            or obs.time - frame.first > SAME_FRAME_SPAN
            or (obs.hop, str(obs.direction)) in frame.seen
        ):
            frame = Frame(obs.protocol, obs.message, obs.key, travel, obs.client_mac)
            open_frames[ident] = frame
            out.append(frame)
        frame.seen[(obs.hop, str(obs.direction))] = obs
    return out
