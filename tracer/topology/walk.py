"""The walk from a guest's host-side port to the wire, on a Snapshot: pure, no kernel access.

Order of hops: [guest (inside its namespace)] -> guest-port -> bridge -> uplink(s) -> below each
uplink: VLAN parent, bond, bond slaves (physical) -> or, for a veth uplink, its far end in the
other namespace (upstream), or, when its far end is a port of another bridge here, that end
(patch) and on through that bridge. Which bridge ports "lead out" is a judgement: a physical NIC, bond,
VLAN, VXLAN or team does; a tap does not (it is another VM); a veth does when its far end is a
namespace named like an uplink or router (`*-up`, `*uplink*`, `*router*`, `*upstream*`, `qrouter-*`,
`snat-*`), otherwise it is another container.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tracer.errors import TopologyError
from tracer.model import Guest, Hop, Path, Role
from tracer.topology.snapshot import Snapshot

LEADS_OUT = {None, "bond", "vlan", "vxlan", "team", "macvlan", "ipvlan", "bridge", "geneve", "gretap"}
UPLINK_NS_HINTS = ("-up", "uplink", "router", "upstream", "qrouter-", "snat-")
Facts = Callable[[str], dict[str, Any]]


def _kind(link: dict[str, Any]) -> str | None:
    return (link.get("linkinfo") or {}).get("info_kind")


def hop_from(link: dict[str, Any], role: Role, *, netns: str | None = None, facts: Facts | None = None,
             **details: Any) -> Hop:
    info = link.get("linkinfo") or {}
    flags = link.get("flags") or []
    extra = facts(link["ifname"]) if facts and netns is None else {}
    port_state = (info.get("info_slave_data") or {}).get("state") if info.get("info_slave_kind") == "bridge" else None
    return Hop(
        name=link["ifname"], kind=info.get("info_kind") or "device", role=role, ifindex=link.get("ifindex"),
        mac=link.get("address"), mtu=link.get("mtu"), state=link.get("operstate"), admin_up="UP" in flags,
        carrier="LOWER_UP" in flags, promiscuity=link.get("promiscuity"), master=link.get("master"), netns=netns,
        port_state=port_state, driver=link.get("driver") or extra.get("driver"),
        addr_assign_type=link.get("addr_assign_type", extra.get("addr_assign_type")),
        details={k: v for k, v in details.items() if v is not None},
    )


def _peer_netns(snap: Snapshot, link: dict[str, Any]) -> str | None:
    nsid = link.get("link_netnsid")
    return snap.nsids.get(nsid) if isinstance(nsid, int) else None


def leads_out(snap: Snapshot, port: dict[str, Any]) -> bool:
    kind = _kind(port)
    if kind == "veth":
        peer = _same_ns_peer(snap, port)
        if peer is not None and peer.get("master") and peer["master"] != port.get("master"):
            return True  # patched into another bridge on this host
        ns = _peer_netns(snap, port) or ""
        return any(h in ns for h in UPLINK_NS_HINTS) or port["ifname"].endswith("-up")
    if kind == "tun" or port["ifname"].startswith(("vif", "vnet", "tap", "macvtap")):
        return False
    return kind in LEADS_OUT


def _below(snap: Snapshot, link: dict[str, Any], facts: Facts | None, seen: set[str]) -> list[Hop]:
    """What carries an uplink's frames further: VLAN parent, bond and slaves, or a veth's far end."""
    out: list[Hop] = []
    kind = _kind(link)
    if kind == "vlan":
        parent = snap.find(link.get("link")) if link.get("link") else None
        if parent and parent["ifname"] not in seen:
            seen.add(parent["ifname"])
            out.append(_lower_hop(snap, parent, facts))
            out += _below(snap, parent, facts, seen)
    elif kind == "bond":
        data = (link.get("linkinfo") or {}).get("info_data") or {}
        for slave in snap.by_master(link["ifname"]):
            if slave["ifname"] not in seen:
                seen.add(slave["ifname"])
                active = data.get("active_slave") == slave["ifname"]
                out.append(hop_from(slave, Role.PHYSICAL, facts=facts, active=active or None))
    elif kind == "veth":
        ns = _peer_netns(snap, link)
        peer = snap.find(ifindex=link.get("link_index"), netns=ns) if ns in snap.links else None
        if peer:
            out.append(hop_from(peer, Role.UPSTREAM, netns=ns))
    return out


def _lower_hop(snap: Snapshot, link: dict[str, Any], facts: Facts | None) -> Hop:
    kind = _kind(link)
    if kind == "bond":
        data = (link.get("linkinfo") or {}).get("info_data") or {}
        return hop_from(link, Role.BOND, facts=facts, mode=data.get("mode"), active_slave=data.get("active_slave"),
                        slaves=[s["ifname"] for s in snap.by_master(link["ifname"])])
    if kind == "vlan":
        return _vlan_hop(link, Role.VLAN, facts)
    return hop_from(link, Role.PHYSICAL, facts=facts)


def _vlan_hop(link: dict[str, Any], role: Role, facts: Facts | None) -> Hop:
    data = (link.get("linkinfo") or {}).get("info_data") or {}
    return hop_from(link, role, facts=facts, id=data.get("id"), parent=link.get("link"),
                    protocol=data.get("protocol"))


def walk(
    snap: Snapshot,
    guest: Guest,
    start_dev: str | None,
    *,
    guest_netns: str | None = None,
    guest_dev: str | None = None,
    peer_ifindex: int | None = None,
    facts: Facts | None = None,
) -> Path:
    hops: list[Hop] = []
    notes: list[str] = []
    if guest_netns:
        inside = [link for link in snap.links.get(guest_netns, []) if link.get("ifname") != "lo"]
        glink = next((link for link in inside if link.get("ifname") == guest_dev), None) or next(
            (link for link in inside if guest.mac and (link.get("address") or "").lower() == guest.mac.lower()),
            None) or (inside[0] if inside else None)
        if glink is None:
            raise TopologyError(f"{guest.name}: no interface {guest_dev or ''} inside namespace {guest_netns}")
        if _kind(glink) in ("macvlan", "macvtap", "ipvlan"):
            # A macvlan child moved into the guest: no host-side port, its lower device is the way out.
            data = (glink.get("linkinfo") or {}).get("info_data") or {}
            lower = snap.find(ifindex=glink.get("link_index")) if start_dev is None else snap.find(start_dev)
            hops.append(hop_from(glink, Role.GUEST, netns=guest_netns, mode=data.get("mode"),
                                 lower=lower["ifname"] if lower else None))
            if lower is None:
                raise TopologyError(f"{guest.name}: the lower device of its {_kind(glink)} is not on this host")
            hops.append(hop_from(lower, Role.UPLINK, facts=facts))
            hops += _below(snap, lower, facts, {lower["ifname"]})
            return Path(guest, tuple(hops), tuple(notes))
        hops.append(hop_from(glink, Role.GUEST, netns=guest_netns))
        if peer_ifindex is None and start_dev is None:
            peer_ifindex = glink.get("link_index")
    start = snap.find(start_dev) if start_dev else snap.find(ifindex=peer_ifindex) if peer_ifindex else None
    if start is None:
        what = start_dev or (f"the peer (ifindex {peer_ifindex}) of {guest.name}'s interface" if peer_ifindex
                             else f"a host interface for {guest.name}")
        raise TopologyError(f"no interface {what} on this host")
    kind = _kind(start)
    seen = {start["ifname"]}
    if kind in ("macvlan", "macvtap"):
        data = (start.get("linkinfo") or {}).get("info_data") or {}
        hops.append(hop_from(start, Role.GUEST_PORT, facts=facts, mode=data.get("mode"), lower=start.get("link")))
        lower = snap.find(start.get("link")) if start.get("link") else None
        if lower is not None:
            seen.add(lower["ifname"])
            hops.append(hop_from(lower, Role.UPLINK, facts=facts))
            hops += _below(snap, lower, facts, seen)
        return Path(guest, tuple(hops), tuple(notes))
    hops.append(hop_from(start, Role.GUEST_PORT, facts=facts))
    if not start.get("master"):
        notes.append(f"{start['ifname']} is in no bridge")
        return Path(guest, tuple(hops), tuple(notes))
    _through_bridge(snap, start, facts, seen, hops, notes)
    return Path(guest, tuple(hops), tuple(notes))


def _same_ns_peer(snap: Snapshot, link: dict[str, Any]) -> dict[str, Any] | None:
    """A veth's other end when it lives in the same namespace (`ip` then names it in `link`)."""
    if _kind(link) != "veth" or link.get("link_netnsid") is not None or not link.get("link"):
        return None
    return snap.find(link["link"])


def _through_bridge(snap: Snapshot, inport: dict[str, Any], facts: Facts | None, seen: set[str],
                    hops: list[Hop], notes: list[str]) -> None:
    """The bridge `inport` is plugged into, its ports that lead out, and on through chained bridges.

    Two bridges joined by a veth pair in the same namespace (a host bridge patched into a
    provider or Docker bridge, OpenStack's qbr -> br-int style) are one path: the walk crosses the
    pair and goes on from the second bridge, so every hop a frame crosses is sniffed.
    """
    master = inport["master"]
    bridge = snap.find(master)
    if bridge is None:
        raise TopologyError(f"{inport['ifname']} names master {master}, which is not in the snapshot")
    seen.add(master)
    ports = snap.by_master(master)
    hops.append(hop_from(bridge, Role.BRIDGE, facts=facts, ports={p["ifname"]: p.get("address") for p in ports}))
    uplinks = [p for p in ports if p["ifname"] != inport["ifname"] and p["ifname"] not in seen
               and leads_out(snap, p)]
    if not uplinks:
        notes.append(f"{master} has no port that leads off the host (only guests)")
    for up in uplinks:
        seen.add(up["ifname"])
        if _kind(up) == "vlan":
            hops.append(_vlan_hop(up, Role.UPLINK, facts))
        elif _kind(up) == "bond":
            hops.append(replace(_lower_hop(snap, up, facts), role=Role.UPLINK))
        else:
            hops.append(hop_from(up, Role.UPLINK, facts=facts))
        peer = _same_ns_peer(snap, up)
        if peer is not None and peer["ifname"] not in seen and peer.get("master") not in (None, *seen):
            seen.add(peer["ifname"])
            hops.append(hop_from(peer, Role.PATCH, facts=facts))
            _through_bridge(snap, peer, facts, seen, hops, notes)
        else:
            hops += _below(snap, up, facts, seen)
