"""Health checks that need no traffic: the seeds' other outages, read off the path itself.

`check` runs these alone (sending and waiting for nothing); every trace adds them to its findings.
"""

from __future__ import annotations

from tracer.model import Finding, Path, Role, Severity

NET_ADDR_SET = 3
"""addr_assign_type when the address was set by userspace: a bridge set so never floats."""
VIRTUAL_DRIVERS = {"netloop", "veth", "tun", "bridge", "macvlan", "vif", "dummy"}
CLOUD_NIC_DRIVERS = {"virtio_net", "vmxnet3", "xen-netfront", "hv_netvsc", "ena", "gve", "netfront"}


def bridge_mac_float(path: Path) -> list[Finding]:
    """A bridge whose address was never set follows its lowest port MAC.

    The kernel (br_stp_recalculate_bridge_id) re-derives an unset bridge address from the lowest
    MAC among its ports each time a port joins or leaves. A container start adds a veth with a
    random MAC; if it is lower, the bridge's MAC (and the host's IP on it) moves, every neighbour's
    ARP cache is now wrong, and the host's traffic stalls until they expire (the host-freeze seed).
    """
    out = []
    for br in (h for h in path.hops if h.role is Role.BRIDGE):
        if br.addr_assign_type is None or br.addr_assign_type == NET_ADDR_SET:
            continue
        ports = br.details.get("ports") or {}
        lowest = min(ports.items(), key=lambda kv: kv[1]) if ports else None
        ev = [f"/sys/class/net/{br.name}/addr_assign_type = {br.addr_assign_type} (not 3: the address was never set)"]
        if lowest and br.mac and lowest[1].lower() == br.mac.lower():
            ev.append(f"{br.name} {br.mac} is borrowed from its lowest port {lowest[0]}")
        changed = br.details.get("previous_mac")
        if changed and br.mac and changed.lower() != br.mac.lower():
            ev.append(br.details.get("previous_mac_evidence")
                      or f"{br.name} changed address: was {changed}, now {br.mac}")
        out.append(Finding(
            code="bridge-mac-float",
            severity=Severity.ERROR if changed and changed != br.mac else Severity.WARNING,
            hop=br.name,
            evidence=tuple(ev),
            explanation=(f"{br.name} has no address of its own, so it takes the lowest MAC of its ports. When a port "
                         "with a lower MAC joins (a new container's random veth), the bridge's MAC changes, the "
                         "host's neighbours keep sending to the old one, and the host's traffic stalls until their "
                         "ARP caches expire."
                         + (f" It already did: it came up as {changed}." if changed and changed != br.mac else "")),
            fix=(f"ip link set {br.name} address {br.mac or 'MAC'}   # and persist it: bridge_hw {br.mac or 'MAC'} "
                 "(ifupdown) or MACAddress= in the .netdev (systemd-networkd)"),
        ))
    return out


def vlan_parent(path: Path) -> list[Finding]:
    """A VLAN sub-interface on something that is not the physical NIC.

    Xen's network-bridge script renames the physical NIC to peth1 and gives its name (eth1) to a
    netloop vif plugged into the bridge. A VLAN built on eth1 then tags frames into a virtual
    interface that goes nowhere near the wire: it comes up without errors and carries nothing.
    """
    out = []
    by_name = {h.name: h for h in path.hops}
    for v in (h for h in path.hops if h.kind == "vlan" or h.role is Role.VLAN):
        parent = v.details.get("parent") or v.details.get("link")
        p = by_name.get(parent) if parent else None
        driver = (p.driver if p else v.details.get("parent_driver")) or ""
        renamed = v.details.get("physical_alias") or (f"p{parent}" if parent and f"p{parent}" in by_name else None)
        if driver not in VIRTUAL_DRIVERS and not renamed:
            continue
        ev = [f"{v.name} is VLAN {v.details.get('id', '?')} on {parent} (driver {driver or 'unknown'})"]
        if renamed:
            ev.append(f"the physical NIC is {renamed}")
        out.append(Finding(
            code="vlan-parent", severity=Severity.ERROR, hop=v.name, evidence=tuple(ev),
            explanation=(f"{v.name} tags frames onto {parent}, which is a virtual interface ({driver or 'renamed'}), "
                         "not the NIC on the wire, so the VLAN carries nothing. Under Xen's network-bridge the "
                         "physical NIC was renamed p" + (parent or "ethX") + "."),
            fix=(f"ip link del {v.name}; ip link add link {renamed or 'PHYSICAL_NIC'} name "
                 f"{(renamed or 'PHYS')}.{v.details.get('id', 'ID')} type vlan id {v.details.get('id', 'ID')}"),
        ))
    return out


def bridge_vlan_filtering(path: Path) -> list[Finding]:
    """With vlan_filtering on, a bridge forwards a frame only between ports that share its VLAN.

    The guest's port and the uplink must have a VLAN in common (the guest's PVID untagged on its
    port, tagged or PVID on the uplink); otherwise the bridge drops everything between them.
    """
    port = next((h for h in path.hops if h.role is Role.GUEST_PORT), None)
    uplink = next((h for h in path.hops if h.role is Role.UPLINK), None)
    if not port or not uplink or port.details.get("vlans") is None or uplink.details.get("vlans") is None:
        return []
    shared = set(port.details["vlans"]) & set(uplink.details["vlans"])
    if shared:
        return []
    return [Finding(
        code="vlan-parent", severity=Severity.ERROR, hop=port.name,
        evidence=(f"bridge vlan: {port.name} carries {sorted(port.details['vlans'])}",
                  f"bridge vlan: {uplink.name} carries {sorted(uplink.details['vlans'])}"),
        explanation=(f"{port.master or 'the bridge'} filters by VLAN and {port.name} shares no VLAN with "
                     f"{uplink.name}, so nothing the guest sends can leave, nor anything come back."),
        fix=f"bridge vlan add dev {uplink.name} vid {min(port.details['vlans'] or [1])}",
    )]


def macvlan_isolation(path: Path) -> list[Finding]:
    """macvlan/macvtap modes decide who may talk to whom, and the host never reaches its children.

    private: no traffic between children of the same lower device; vepa: children reach each
    other only if the external switch hairpins; in every mode the lower device (the host) cannot
    talk to its macvlan children directly. The LXC `none` type shares the host's namespace.
    """
    out = []
    for h in path.hops:
        mode = h.details.get("mode") if h.kind in ("macvlan", "macvtap") else None
        if mode in ("private", "vepa"):
            lower = h.details.get("lower") or h.details.get("link") or "its lower device"
            out.append(Finding(
                code="macvlan-isolation", severity=Severity.WARNING, hop=h.name,
                evidence=(f"{h.name} is {h.kind} in {mode} mode on {lower}",),
                explanation=(f"In {mode} mode, {h.name} cannot reach other {h.kind} children of {lower}"
                             + (" unless the switch hairpins frames back" if mode == "vepa" else "")
                             + "; and the host itself never reaches its macvlan children through " + lower + "."),
                fix=f"use bridge mode (macvlan mode bridge), or a Linux bridge instead of {h.kind}",
            ))
    if "none" in (path.guest.details.get("network_type"), path.guest.details.get("nic_type")):
        out.append(Finding(
            code="macvlan-isolation", severity=Severity.WARNING, hop=None,
            evidence=(f"{path.guest.name}: lxc.net.0.type = none",),
            explanation=("Network type 'none' shares the host's network namespace: the container sees and can "
                         "reconfigure the host's interfaces, and stopping it can stop the host's init."),
            fix="give it its own namespace: lxc.net.0.type = veth (or empty)",
        ))
    return out


def cloud_uplink(path: Path) -> list[Finding]:
    """Guests bridged onto a cloud VM's NIC: the cloud only delivers frames for MACs it assigned.

    OpenStack (and most clouds) enforce port security: frames from a MAC other than the port's are
    dropped, and frames to it are never delivered. A bridged container's DHCP then leaves the
    uplink and nothing answers (the LXD-on-OpenStack seed).
    """
    uplink = next((h for h in path.hops if h.role in (Role.UPLINK, Role.PHYSICAL) and h.driver in CLOUD_NIC_DRIVERS),
                  None)
    if uplink is None or not path.guest.mac or (uplink.mac or "").lower() == path.guest.mac.lower():
        return []
    return [Finding(
        code="upstream-no-reply", severity=Severity.INFO, hop=uplink.name,
        evidence=(f"{uplink.name} is a virtual NIC (driver {uplink.driver}) with MAC {uplink.mac}",
                  f"the guest's MAC {path.guest.mac} is not the NIC's"),
        explanation=("This host is itself a cloud VM. Its provider delivers frames only for the MAC it assigned to "
                     f"{uplink.name}; frames from {path.guest.mac} are dropped beyond the host (port security), and "
                     "the virtual NIC needs promiscuous mode allowed to receive frames for other MACs."),
        fix=("openstack port set --allowed-address ip-address=GUEST_IP,mac-address=" + path.guest.mac
             + " PORT   # or give the guest a port of its own"),
    )]


def static_checks(path: Path) -> list[Finding]:
    return [*bridge_mac_float(path), *vlan_parent(path), *bridge_vlan_filtering(path),
            *macvlan_isolation(path), *cloud_uplink(path)]

