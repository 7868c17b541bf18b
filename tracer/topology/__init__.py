"""The kernel's view of a guest's path: from its host-side interface, through masters and lowers,
to whatever leads off the host.

Theory of operation: take one snapshot of every link (host namespace, plus the guest's and any
namespace a veth uplink leads into) in the shape `ip -details -json link show` prints, then walk
it with a pure function. The same walk runs on a snapshot an operator recorded on a host with
bonds and VLANs (which this kernel cannot build), so those paths are tested too.
"""

from __future__ import annotations

from tracer.model import Guest, Path
from tracer.topology.snapshot import Snapshot, capture_live, sysfs_facts
from tracer.topology.walk import walk

__all__ = ["Snapshot", "capture_live", "resolve_path", "walk"]


def resolve_path(
    guest: Guest,
    start_dev: str | None,
    *,
    guest_netns: str | None = None,
    guest_dev: str | None = None,
    peer_ifindex: int | None = None,
) -> Path:
    """The guest's Path from the live kernel. `start_dev` is the host-side interface (tap, veth,
    macvtap, vif); when unknown, the guest's veth peer is found through `guest_netns`."""
    snap = capture_live(guest_netns=guest_netns)
    return walk(snap, guest, start_dev, guest_netns=guest_netns, guest_dev=guest_dev, peer_ifindex=peer_ifindex,
                facts=sysfs_facts)
