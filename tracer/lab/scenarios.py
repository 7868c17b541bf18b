"""The catalogue: each scenario is one outage from the seeds, as a fault on the base lab.

A scenario says what it rebuilds, which seed it comes from, which guests it works with, and what a
learner should try next: the lab is a teaching tool before it is a test fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracer.lab import faults
from tracer.lab.names import LabNames
from tracer.lab.state import LabState

GUESTS = ("ns", "vm", "lxc")


@dataclass(frozen=True, slots=True)
class Context:
    """What a fault needs to know about the lab it is applied to."""

    state: LabState
    names: LabNames
    guest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    seed: str
    apply: Callable[[Context], dict[str, Any]] | None = None
    revert: Callable[[Context], None] | None = None
    guests: tuple[str, ...] = GUESTS
    pin_bridge_mac: bool = True
    start_guest: bool = True
    dhcp_server: bool = True
    try_next: tuple[str, ...] = field(default_factory=tuple)


def _none(ctx: Context) -> dict[str, Any]:
    return {}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "guest -- bridge -- uplink -- dnsmasq: every DHCP exchange completes",
            "the baseline every seed starts from",
            try_next=(
                "tracepath-l2 --dhcp {target}    # a full DORA at every hop",
                "tracepath-l2 --arp {target}",
            ),
        ),
        Scenario(
            "fdb-mismatch",
            "the bridge FDB holds the guest's MAC on the uplink port: OFFERs reach the uplink, never the guest",
            "Tracing DHCP through linux bridges in kvm (seed 002)",
            apply=lambda c: faults.fdb_mismatch(c.state, c.names, c.guest["mac"]),
            revert=lambda c: faults.revert_fdb_mismatch(c.state, c.names, c.guest["mac"]),
            try_next=(
                "bridge fdb show br {bridge} | grep -i {mac}   # which port does the bridge think?",
                "tracepath-l2 --dhcp {target}",
            ),
        ),
        Scenario(
            "own-address-loop",
            "an upstream L2 loop mirrors broadcasts back: the kernel logs 'received packet on ... with own "
            "address as source address' and learns the guest's MAC on the uplink",
            "Tracing DHCP through linux bridges in kvm, the UPDATE (seed 002)",
            apply=lambda c: faults.own_address_loop(c.state, c.names),
            revert=lambda c: faults.revert_own_address_loop(c.state, c.names),
            try_next=(
                "dmesg | grep 'own address'",
                "bridge fdb show br {bridge} | grep -i {mac}",
                "tracepath-l2 --dhcp {target}",
            ),
        ),
        Scenario(
            "upstream-silent",
            "frames leave the uplink and nothing answers: port security beyond the host drops unknown MACs",
            "LXD containers bridged into an OpenStack network (seed 001)",
            apply=lambda c: faults.upstream_port_security(c.state, c.names, c.names.bridge_mac),
            revert=lambda c: faults.revert_upstream_port_security(c.state, c.names),
            try_next=("tracepath-l2 --dhcp {target}   # the last hop that sees anything is the uplink",),
        ),
        Scenario(
            "filter-drop",
            "an nftables bridge-family rule drops the guest's DHCP as it crosses the bridge",
            "a forgotten anti-rogue-DHCP rule",
            apply=lambda c: faults.filter_drop(c.state, c.names, c.guest["mac"]),
            revert=lambda c: faults.revert_filter_drop(c.state, c.names),
            try_next=("nft list ruleset bridge", "tracepath-l2 --dhcp {target}"),
        ),
        Scenario(
            "ebtables-drop",
            "an ebtables rule on the guest's port drops its DHCP requests in the bridge's FORWARD chain",
            "an L2 anti-spoofing rule left behind by a hand-made or older cloud setup",
            apply=lambda c: faults.ebtables_drop(c.state, c.names, c.guest["port"]),
            revert=lambda c: faults.revert_xt_rules(c.state),
            try_next=("ebtables -t filter -L FORWARD --Lc --Ln", "tracepath-l2 check {target}",
                      "tracepath-l2 --dhcp {target}"),
        ),
        Scenario(
            "forward-drop",
            "br_netfilter hands bridged frames to iptables, whose FORWARD chain drops the guest's DHCP",
            "Docker's FORWARD policy DROP on a host that also bridges VMs",
            apply=lambda c: faults.forward_drop(c.state, c.names, c.guest["port"]),
            revert=lambda c: faults.revert_xt_rules(c.state),
            try_next=("cat /proc/sys/net/bridge/bridge-nf-call-iptables", "iptables -S FORWARD -v",
                      "tracepath-l2 --dhcp {target}"),
        ),
        Scenario(
            "nwfilter-drop",
            "a libvirt nwfilter on the VM's interface drops its DHCP requests (anti-spoofing without allow-dhcp)",
            "libvirt/OpenStack nwfilter anti-spoofing (clean-traffic and friends)",
            apply=lambda c: faults.nwfilter_drop(c.state, c.names, c.guest["domain"], c.guest["mac"]),
            revert=lambda c: faults.revert_nwfilter_drop(c.state, c.names, c.guest["domain"], c.guest["mac"]),
            guests=("vm",),
            try_next=("virsh nwfilter-binding-list", "virsh nwfilter-dumpxml {nwfilter}",
                      "tracepath-l2 --dhcp {target}"),
        ),
        Scenario(
            "leftover-veth",
            "a stopped LXC container whose veth pair name already exists on the host: lxc-start fails "
            "with 'File exists'",
            "Find and remove veth's used for LXC (seed 000)",
            apply=lambda c: {"leftover": _leftover(c)},
            guests=("lxc",),
            start_guest=False,
            try_next=("lxc-start -n {target} -d   # fails: File exists", "ip link show {leftover}",
                      "tracepath-l2 check {target}"),
        ),
        Scenario(
            "bridge-mac-float",
            "a bridge whose address was never set takes the lowest port MAC: a new port with a lower MAC "
            "changes it",
            "LXC host network freezing (seed 004)",
            apply=lambda c: faults.bridge_mac_float(c.state, c.names),
            pin_bridge_mac=False,
            try_next=("ip link show {bridge}   # compare with bridge_mac_before",
                      "cat /sys/class/net/{bridge}/addr_assign_type   # 3 would mean pinned",
                      "tracepath-l2 check {target}"),
        ),
        Scenario(
            "stp-blocking",
            "the guest's bridge port held in STP blocking state: it drops everything but BPDUs",
            "a port spanning tree blocked (or a forward_delay nobody waited for)",
            apply=lambda c: faults.stp_blocking(c.state, c.names, c.guest["port"]),
            revert=lambda c: faults.revert_stp_blocking(c.state, c.names, c.guest["port"]),
            try_next=("bridge link show   # look at the state column", "tracepath-l2 check {target}"),
        ),
        Scenario(
            "mtu-mismatch",
            "the uplink's MTU is smaller than the rest of the path: DHCP passes, full-size frames do not",
            "an overlay/VLAN uplink whose MTU the guests were never lowered to",
            apply=lambda c: faults.mtu_mismatch(c.state, c.names),
            revert=lambda c: faults.revert_mtu_mismatch(c.state, c.names),
            try_next=("ip link show {bridge}; ip -d link show master {bridge}", "tracepath-l2 check {target}"),
        ),
        Scenario(
            "vm",
            "a libvirt/QEMU (TCG) guest instance-00000347 booting busybox and asking for DHCP in a loop",
            "Tracing DHCP through linux bridges in kvm (seed 002)",
            guests=("vm",),
            try_next=("virsh dumpxml {target} | grep -A5 '<interface'", "tracepath-l2 --dhcp {target}"),
        ),
    )
}


def _leftover(ctx: Context) -> str:
    from tracer.lab import container

    return container.make_leftover_veth(ctx.state, ctx.names.lab)


def default_guest(scenario: Scenario) -> str:
    return scenario.guests[0]
