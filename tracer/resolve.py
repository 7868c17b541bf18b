"""Target name -> Path(s): the one step every command starts with.

The configuration (libvirt XML, LXC/LXD config) says what *should* be wired; the kernel says
what *is*. Where they disagree (a configured bridge that does not exist, a stopped guest whose
port is gone) we say so in one line rather than guess a path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any

from tracer.analyze.checks import NET_ADDR_SET
from tracer.errors import TargetError, UsageError
from tracer.model import Guest, Path, Role


def resolve_all(query: str, nic: str | None = None) -> list[Path]:
    """Every NIC's path (or just the one `nic` names)."""
    from tracer.targets import find_target
    from tracer.targets.base import select_nic

    target = find_target(query)
    nics = list(select_nic(target, nic))
    return [path_for(target, n) for n in nics]


def resolve_one(query: str, nic: str | None = None) -> Path:
    """The single path a trace follows; a multi-NIC guest needs --nic."""
    paths = resolve_all(query, nic)
    if len(paths) > 1:
        choices = ", ".join(f"{p.guest.mac or '?'} ({p.guest.nic or p.hops[0].name if p.hops else '?'})"
                            for p in paths)
        raise UsageError(f"{paths[0].guest.name} has {len(paths)} NICs: choose one with --nic ({choices})")
    return paths[0]


def path_for(target: Any, nic: Any) -> Path:
    from tracer.topology import resolve_path

    details: dict[str, Any] = {k: v for k, v in target.details.items()
                               if k in ("uuid", "nova_uuid", "network_type", "ipv4", "gateway", "config")}
    details.update({k: v for k, v in nic.details.items() if k in ("ipv4", "gateway", "network")})
    if nic.link:
        details["expected_bridge"] = nic.link
    guest = Guest(name=target.name, kind=target.kind, mac=nic.mac, nic=nic.guest_dev or nic.host_dev,
                  details={**details, "nic_type": nic.type, **({"mode": nic.mode} if nic.mode else {}),
                           **({"vlan_id": nic.vlan_id} if nic.vlan_id else {})})
    if nic.type in ("vhostuser", "none", "empty"):
        note = nic.note or {"none": "network type none: the guest shares the host's namespace",
                            "empty": "network type empty: the guest has only a loopback"}.get(nic.type, nic.type)
        return Path(guest, (), notes=(note,))
    if nic.link and nic.type in ("bridge", "bridged", "network", "veth") and not _exists(nic.link):
        raise TargetError(f"{target.name}: its configuration names bridge {nic.link}, which does not exist on "
                          "this host")
    if nic.host_dev and not nic.netns and not _exists(nic.host_dev):
        if nic.link and not target.running:
            return _configured_path(guest, nic)
        state = "" if target.running else " (the guest is not running)"
        raise TargetError(f"{target.name}: its interface {nic.host_dev} does not exist on this host{state}")
    if not nic.host_dev and not nic.netns:
        raise TargetError(f"{target.name}: cannot tell which host interface carries NIC {nic.mac or '?'}"
                          + ("" if target.running else " (the guest is not running)"))
    return with_bridge_history(resolve_path(guest, nic.host_dev, guest_netns=nic.netns, guest_dev=nic.guest_dev,
                                            peer_ifindex=nic.details.get("peer_ifindex")))


def with_bridge_history(path: Path) -> Path:
    """Note on each unpinned bridge the MAC it came up with, when that is not its MAC now."""
    from tracer.topology.bridge_mac import earlier_mac

    hops = []
    for h in path.hops:
        if h.role is Role.BRIDGE and h.addr_assign_type not in (None, NET_ADDR_SET):
            found = earlier_mac(h.name, h.mac, h.netns)
            if found:
                h = replace(h, details={**h.details, "previous_mac": found[0], "previous_mac_evidence": found[1]})
        hops.append(h)
    return replace(path, hops=tuple(hops))


def _configured_path(guest: Guest, nic: Any) -> Path:
    """A stopped guest: the path its configuration will plug into, its own port marked absent.

    What an operator wants before starting it: is the bridge there, does it lead out, and is the
    port name free (leftover-veth)?
    """
    from tracer.topology import capture_live, walk
    from tracer.topology.snapshot import sysfs_facts

    snap = capture_live()
    snap.links[None].append({"ifname": nic.host_dev, "master": nic.link, "operstate": "NOTPRESENT", "flags": [],
                             "address": None, "linkinfo": {"info_kind": "veth" if nic.type == "veth" else "tun"}})
    path = with_bridge_history(walk(snap, guest, nic.host_dev, facts=sysfs_facts))
    hops = tuple(replace(h, details={**h.details, "absent": "the guest is not running"})
                 if h.name == nic.host_dev and h.role is Role.GUEST_PORT else h for h in path.hops)
    return Path(path.guest, hops, (*path.notes, f"{guest.name} is not running: {nic.host_dev} will be "
                                                     f"created in {nic.link} when it starts"))


def _exists(dev: str) -> bool:
    return FsPath(f"/sys/class/net/{dev}").exists()
