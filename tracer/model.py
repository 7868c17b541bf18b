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
    UPSTREAM = "upstream"
    """The far end of a veth uplink in another namespace (lab upstream, a router namespace)."""


@dataclass(frozen=True, slots=True)
class Hop:
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["role"] = str(self.role)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hop:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Guest:
    """Who the path belongs to, as the target lookup found it."""

    name: str
    kind: str
    """libvirt, lxc, lxd, netns, xen."""
    mac: str | None = None
    nic: str | None = None
    """The guest-side NIC name (eth0) or the host-side name when the inside is invisible."""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Guest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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

    def hop(self, name: str) -> Hop | None:
        return next((h for h in self.hops if h.name == name), None)

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
