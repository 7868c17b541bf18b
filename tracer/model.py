"""The data every stage passes on: no I/O, no scapy, no clock.

Resolve produces a Path, capture and replay produce Observations, the evidence collectors produce
Evidence, and the pure analysis turns those into a Report. Everything here is a frozen dataclass
that round-trips through plain JSON, because a bundle recorded on one host must give the same
verdict on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class _Record:
    """Plain-JSON round trip shared by the simple records (unknown keys are ignored on load, so an
    older tool reads a newer bundle's records)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


def hop_label(name: str, netns: str | None) -> str:
    return f"{netns}:{name}" if netns else name


class Role(StrEnum):
    """Where a hop sits on the path, guest first, wire last."""

    GUEST = "guest"
    """The guest's own interface (inside a container netns; invisible for a VM)."""
    GUEST_PORT = "guest-port"
    """The host end of the guest's cable: tap, veth peer, macvtap, vif."""
    BRIDGE = "bridge"
    BOND = "bond"
    VLAN = "vlan"
    """A VLAN sub-interface on the way out (bond0.2222)."""
    UPLINK = "uplink"
    """The bridge port (or lower device) that leads off the host or out of the lab."""
    PHYSICAL = "physical"
    """A physical NIC under a bond or VLAN."""
    PATCH = "patch"
    """The far end of a veth joining two bridges on this host: the next bridge's port towards the guest."""
    UPSTREAM = "upstream"
    """The far end of a veth uplink in another namespace (lab upstream, a router namespace)."""


@dataclass(frozen=True, slots=True)
class Hop(_Record):
    """One interface on the path with the kernel facts that decide whether frames cross it."""

    name: str
    kind: str
    """Link kind as netlink reports it: bridge, veth, tun, macvlan, macvtap, bond, vlan, vxlan, device."""
    role: Role
    ifindex: int | None = None
    mac: str | None = None
    mtu: int | None = None
    state: str | None = None
    """operstate: UP, DOWN, LOWERLAYERDOWN, UNKNOWN..."""
    admin_up: bool | None = None
    carrier: bool | None = None
    promiscuity: int | None = None
    master: str | None = None
    netns: str | None = None
    """None for the host's own namespace; otherwise the namespace name or 'pid:N'."""
    port_state: str | None = None
    """Bridge port STP state (forwarding, blocking, learning, listening, disabled) when a bridge port."""
    driver: str | None = None
    addr_assign_type: int | None = None
    """0 permanent, 1 random, 2 stolen, 3 set by user: a bridge with 0..2 floats with its ports."""
    details: dict[str, Any] = field(default_factory=dict)
    """Kind-specific facts: bond mode and active slave, VLAN id and parent, macvlan mode, lower."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a hop needs a name")
        object.__setattr__(self, "role", Role(self.role))

    @property
    def label(self) -> str:
        """Unique along a path: the guest's eth0 and the host's eth0 are different hops."""
        return hop_label(self.name, self.netns)


@dataclass(frozen=True, slots=True)
class Guest(_Record):
    """Who the path belongs to, as the target lookup found it."""

    name: str
    kind: str
    """libvirt, lxc, lxd, netns, xen."""
    mac: str | None = None
    nic: str | None = None
    """The guest-side NIC name (eth0) or the host-side name when the inside is invisible."""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Path:
    """The ordered hops from the guest to the last interface the host can see."""

    guest: Guest
    hops: tuple[Hop, ...]
    notes: tuple[str, ...] = ()
    """Things the resolver could not follow, in words (vhostuser, a missing bridge...)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hops", tuple(self.hops))
        object.__setattr__(self, "notes", tuple(self.notes))

    def hop(self, label: str) -> Hop | None:
        """The hop with this label (netns:name inside a namespace, the bare name on the host)."""
        return next((h for h in self.hops if h.label == label), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guest": self.guest.to_dict(),
            "hops": [h.to_dict() for h in self.hops],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Path:
        return cls(
            guest=Guest.from_dict(data["guest"]),
            hops=tuple(Hop.from_dict(h) for h in data["hops"]),
            notes=tuple(data.get("notes", ())),
        )


# ---------------------------------------------------------------- what the sniffers saw
class Direction(StrEnum):
    """Which way a frame crossed the hop, from the hop's own point of view (sll_pkttype).

    On a tap, frames *from* the guest arrive as `in` (received by the host) and frames *to* the
    guest leave as `out`; on an uplink veth the OFFER coming from the wire is `in`.
    """

    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Observation(_Record):
    """One DHCP or ARP frame seen at one hop, reduced to what correlation needs."""

    hop: str
    time: float
    """Kernel timestamp, seconds since the epoch."""
    direction: Direction
    protocol: str
    """dhcp or arp."""
    message: str
    """DHCP: DISCOVER, OFFER, REQUEST, ACK, NAK, DECLINE, RELEASE, INFORM. ARP: request, reply.
    MALFORMED for a frame the kernel filter passed but the dissector could not read."""
    key: str
    """Correlation key: 'xid 0x3903f326' for DHCP, 'who-has 198.18.0.1 tell 198.18.0.148' for ARP."""
    src_mac: str = ""
    dst_mac: str = ""
    client_mac: str | None = None
    """DHCP chaddr, or the ARP sender for a request / the target for a reply: whose exchange it is."""
    xid: int | None = None
    vlan: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """yiaddr, server id, requested address; ARP sender/target addresses."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))


# ---------------------------------------------------------------- what the kernel said meanwhile
@dataclass(frozen=True, slots=True)
class FdbEntry(_Record):
    """A bridge forwarding-database entry for a MAC the analysis cares about."""

    mac: str
    port: str
    """The bridge port the entry points at (the bridge itself for the bridge's own address)."""
    bridge: str
    flags: tuple[str, ...] = ()
    """Words as `bridge fdb show` prints them: permanent, static, sticky, self, master, extern_learn."""
    vlan: int | None = None
    age: float | None = None
    """Seconds since last used/updated, when the kernel says (learned entries)."""
    time: float | None = None
    """When this entry was read (entries are sampled during the capture window)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def local(self) -> bool:
        return "permanent" in self.flags


@dataclass(frozen=True, slots=True)
class KernelLine(_Record):
    """One kernel log line (from /dev/kmsg or a saved dmesg) that arrived during the window."""

    text: str
    time: float | None = None


DROP_NOISE_PREFIXES = ("TCP_", "UNIX_", "IP_")
DROP_NOISE_REASONS = ("QUEUE_PURGE", "SOCKET_CLOSE", "NO_SOCKET", "SOCKET_FILTER", "PKT_TOO_SMALL", "OTHERHOST",
                      "UNHANDLED_PROTO", "NOMEM")
"""Drop reasons about a host's own IP stack or a local socket, never about the L2 path: TCP state
checks, a socket closed with frames still queued (every packet socket, ours included, does that
when it closes), IP input errors (a namespace receiving traffic for an address it does not have),
frames for another host's MAC. The collector leaves them out in the kernel's own event filter (a
flood into one namespace made 300k IP_INADDRERRORS events a second) and the analysis ignores them
in bundles recorded before it did."""
BRIDGE_FUNCTION_PREFIXES = ("br_", "__br_", "nbp_")


def drop_reason_is_noise(reason: str) -> bool:
    return reason.startswith(DROP_NOISE_PREFIXES) or reason in DROP_NOISE_REASONS


def in_bridge_code(location: str) -> bool:
    """Whether a drop location (`br_handle_frame_finish+0x392/0x690`) is a bridge function."""
    return location.split("+", 1)[0].startswith(BRIDGE_FUNCTION_PREFIXES)


@dataclass(frozen=True, slots=True)
class DropEvent(_Record):
    """A kernel skb drop (tracepoint skb:kfree_skb) of a frame on the path."""

    reason: str
    """NETFILTER_DROP, BRIDGE_INGRESS_STP_STATE, LOCAL_MAC, ... (the enum name without SKB_DROP_REASON_)."""
    location: str
    """The dropping function, e.g. br_handle_frame_finish+0x1a3/0x5c0."""
    time: float | None = None
    hop: str | None = None
    """The interface the kernel names (rx_sk/dev), when the tracepoint gives one."""
    protocol: str | None = None
    """Ethertype as the tracepoint prints it (0x0800, 0x0806)."""

    @property
    def explains_a_stop(self) -> bool:
        """Whether this drop can be why a frame stopped on the path.

        NOT_SPECIFIED counts only in bridge code: this kernel family frees a frame the FDB sends
        back to its ingress port (the fdb-mismatch outage) with a plain kfree_skb(); elsewhere it is
        mostly the host's own copy of a broadcast no local socket wanted.
        """
        if drop_reason_is_noise(self.reason):
            return False
        return self.reason != "NOT_SPECIFIED" or in_bridge_code(self.location)


@dataclass(frozen=True, slots=True)
class FilterRule(_Record):
    """A packet filter rule on the path that drops (or may drop) L2 traffic."""

    source: str
    """nft, ebtables, iptables-physdev, nwfilter."""
    table: str
    chain: str
    rule: str
    """The rule as its tool prints it."""
    family: str | None = None
    packets: int | None = None
    """The rule's counter, when it has one: a counter that grows during the window is proof."""
    hop: str | None = None
    """The interface the rule names (iifname/oifname/physdev), when it names one."""


@dataclass(frozen=True, slots=True)
class CaptureStats(_Record):
    """Per-hop socket counters: the proof that a missing frame was not lost by us."""

    hop: str
    packets: int
    drops: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the kernel told us during the capture window, beside the frames."""

    fdb: tuple[FdbEntry, ...] = ()
    kernel: tuple[KernelLine, ...] = ()
    drops: tuple[DropEvent, ...] = ()
    filters: tuple[FilterRule, ...] = ()
    filters_before: tuple[FilterRule, ...] = ()
    """The same rules read at the start of the window, so counters can be compared."""
    capture: tuple[CaptureStats, ...] = ()
    notes: tuple[str, ...] = ()
    """What could not be collected and why (no tracefs, not root for kmsg, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fdb": [e.to_dict() for e in self.fdb],
            "kernel": [e.to_dict() for e in self.kernel],
            "drops": [e.to_dict() for e in self.drops],
            "filters": [e.to_dict() for e in self.filters],
            "filters_before": [e.to_dict() for e in self.filters_before],
            "capture": [e.to_dict() for e in self.capture],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            fdb=tuple(FdbEntry.from_dict(e) for e in data.get("fdb", ())),
            kernel=tuple(KernelLine.from_dict(e) for e in data.get("kernel", ())),
            drops=tuple(DropEvent.from_dict(e) for e in data.get("drops", ())),
            filters=tuple(FilterRule.from_dict(e) for e in data.get("filters", ())),
            filters_before=tuple(FilterRule.from_dict(e) for e in data.get("filters_before", ())),
            capture=tuple(CaptureStats(**e) for e in data.get("capture", ())),
            notes=tuple(data.get("notes", ())),
        )


# ---------------------------------------------------------------- what the analysis concludes
class Severity(StrEnum):
    ERROR = "error"
    """Explains why frames stop."""
    WARNING = "warning"
    """Will break something, or already breaks something else."""
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosis with everything needed to believe it and act on it."""

    code: str
    """Stable code: fdb-mismatch, own-address-loop, kernel-drop, filter-drop, ... (DESIGN.md)."""
    severity: Severity
    hop: str | None
    evidence: tuple[str, ...]
    """The facts, quoted as the kernel or the tools state them."""
    explanation: str
    """Why this stops frames, in words a learner can follow."""
    fix: str
    """What an operator would type."""

    def __post_init__(self) -> None:
        if not (self.code and self.evidence and self.explanation and self.fix):
            raise ValueError(f"finding {self.code!r} needs evidence, an explanation and a fix")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "evidence", tuple(self.evidence))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": str(self.severity), "hop": self.hop,
                "evidence": list(self.evidence), "explanation": self.explanation, "fix": self.fix}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(data["code"], data["severity"], data.get("hop"), tuple(data["evidence"]),
                   data["explanation"], data["fix"])


class Status(StrEnum):
    OK = "ok"
    STOPPED = "stopped"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    message: str
    between: tuple[str, str] | None = None
    """[last hop seen, first hop missing] when stopped."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.between is not None:
            object.__setattr__(self, "between", tuple(self.between))

    def to_dict(self) -> dict[str, Any]:
        return {"status": str(self.status), "between": list(self.between) if self.between else None,
                "message": self.message}


@dataclass(frozen=True, slots=True)
class Report:
    """The whole answer: what was traced, what was seen, where it stopped and why."""

    target: str
    protocol: str
    path: Path
    observations: tuple[Observation, ...]
    verdict: Verdict
    findings: tuple[Finding, ...]
    window: tuple[float, float]
    """Start and end of the capture window (epoch seconds): time is data, never the clock."""
    certain: bool = False
    """True when waiting longer cannot change the verdict (the trace may stop early)."""
    focus: str | None = None
    """The correlation key of the exchange the verdict is about (the ladder shows it)."""
    sniffed: tuple[str, ...] = ()
    """The hops that were actually captured on (a hop not sniffed cannot be 'missing')."""
    replay: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "protocol": self.protocol,
            "path": [
                {k: h.to_dict()[k] for k in ("name", "kind", "role", "mac", "mtu", "state", "netns", "master")}
                for h in self.path.hops
            ],
            "observations": [
                {"hop": o.hop, "time": round(o.time - self.window[0], 6), "direction": str(o.direction),
                 "message": o.message, "key": o.key}
                for o in self.observations
            ],
            "verdict": self.verdict.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "focus": self.focus,
            "sniffed": list(self.sniffed),
            "replay": self.replay,
        }
