"""Which hops a frame must cross, in which order, and how it looks at each of them."""

from __future__ import annotations

from tracer.model import Direction, Hop, Path, Role

UP = "up"
"""Travelling from the guest towards the wire."""
DOWN = "down"

TRANSIT_ROLES = {Role.GUEST, Role.GUEST_PORT, Role.UPLINK, Role.PATCH, Role.VLAN, Role.BOND, Role.PHYSICAL}
"""Hops every frame of the guest must cross. The bridge device is not one of them: it only sees
flooded frames and frames for the host itself, never unicast forwarded port to port. The upstream
far end (a veth peer in another namespace) is beyond the host and not sniffed."""

# How a frame travelling UP shows at a hop of each role (DOWN is the opposite).
_UP_DIRECTION = {
    Role.GUEST: Direction.OUT,
    Role.GUEST_PORT: Direction.IN,
    Role.BRIDGE: Direction.IN,
    Role.PATCH: Direction.IN,
    Role.UPLINK: Direction.OUT,
    Role.VLAN: Direction.OUT,
    Role.BOND: Direction.OUT,
    Role.PHYSICAL: Direction.OUT,
    Role.UPSTREAM: Direction.IN,
}


def expected_direction(hop: Hop, travel: str) -> Direction:
    up = _UP_DIRECTION[hop.role]
    if travel == UP:
        return up
    return Direction.OUT if up is Direction.IN else Direction.IN


def transit(path: Path, sniffed: set[str] | None, travel: str) -> list[Hop]:
    """The transit hops that were sniffed, in the order a frame travelling `travel` meets them.

    Bond slaves are alternatives (one of them carries a frame), so only a lone physical hop is
    required; with several, the bond (or the VLAN on it) stands for them.
    """
    physical = [h for h in path.hops if h.role is Role.PHYSICAL]
    hops = [
        h for h in path.hops
        if h.role in TRANSIT_ROLES
        and (h.role is not Role.PHYSICAL or len(physical) == 1)
        and (sniffed is None or h.label in sniffed)
    ]
    return hops if travel == UP else list(reversed(hops))


def guest_port(path: Path) -> Hop | None:
    return next((h for h in path.hops if h.role is Role.GUEST_PORT), None)


def bridges(path: Path) -> list[Hop]:
    return [h for h in path.hops if h.role is Role.BRIDGE]


def port_towards_guest(path: Path) -> dict[str, str]:
    """Each bridge's port on the guest's side: where that bridge must have learned the guest's MAC.

    The first bridge's is the guest port; a bridge further out (chained through a veth) has it on
    the patch hop, the veth end that joins it to the bridge before.
    """
    out: dict[str, str] = {}
    last_port: Hop | None = None
    for h in path.hops:
        if h.role in (Role.GUEST_PORT, Role.PATCH):
            last_port = h
        elif h.role is Role.BRIDGE and last_port is not None and last_port.master == h.name:
            out[h.name] = last_port.name
    return out
