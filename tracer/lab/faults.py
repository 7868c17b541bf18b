"""The outages, each applied to (and reverted from) a running base lab.

Keeping a fault separate from the base lets the tests boot one QEMU guest and move its lab from
healthy to fdb-mismatch and back; every fault records what it adds so teardown removes it even if
revert was never called.
"""

from __future__ import annotations

from pathlib import Path

from tracer.errors import EnvironmentMissing, LabError
from tracer.lab.names import LabNames
from tracer.lab.shell import quiet, run
from tracer.lab.state import LabState


def fdb_mismatch(state: LabState, names: LabNames, guest_mac: str) -> dict[str, str]:
    """The KVM seed: the bridge believes the guest's MAC lives behind the uplink.

    A plain static entry would roam back on the guest's next frame; `sticky` pins it, so the
    guest's DISCOVER still leaves through the uplink but the unicast OFFER coming back is sent
    "back where the MAC lives" (the port it arrived on) and the bridge drops it.
    """
    state.add("fdb", [guest_mac, names.uplink])
    run(["bridge", "fdb", "replace", guest_mac, "dev", names.uplink, "master", "static", "sticky"])
    return {"fdb": f"{guest_mac} dev {names.uplink} master static sticky"}


def revert_fdb_mismatch(state: LabState, names: LabNames, guest_mac: str) -> None:
    quiet(["bridge", "fdb", "del", guest_mac, "dev", names.uplink, "master"])
    if [guest_mac, names.uplink] in state.fdb:
        state.fdb.remove([guest_mac, names.uplink])
        state.save()


def own_address_loop(state: LabState, names: LabNames) -> dict[str, str]:
    """The KVM seed's real cause: a mis-cabled LAG upstream mirrors broadcast/multicast back.

    The upstream port reflects every group-addressed frame (tc u32 on the I/G bit + mirred), so
    the guest's broadcast DISCOVER returns on the uplink and the bridge learns the guest's MAC
    there, and the bridge's own IGMP queries (querier on, 1 s interval) return with the bridge's
    own MAC as source, which the kernel logs as "received packet on ... with own address".
    """
    ns = names.upstream_ns
    run(["tc", "qdisc", "add", "dev", "eth0", "ingress"], netns=ns)
    run(["tc", "filter", "add", "dev", "eth0", "ingress", "protocol", "all", "u32",
         "match", "u8", "0x01", "0x01", "at", "-14",
         "action", "mirred", "egress", "mirror", "dev", "eth0"], netns=ns)
    run(["ip", "link", "set", names.bridge, "type", "bridge", "mcast_querier", "1",
         "mcast_query_interval", "100", "mcast_startup_query_interval", "100"])
    return {"loop": f"tc mirred mirror of group frames on {ns}:eth0", "querier": names.bridge}


def revert_own_address_loop(state: LabState, names: LabNames) -> None:
    quiet(["tc", "qdisc", "del", "dev", "eth0", "ingress"], netns=names.upstream_ns)
    quiet(["ip", "link", "set", names.bridge, "type", "bridge", "mcast_querier", "0"])


def upstream_port_security(state: LabState, names: LabNames, allowed_mac: str) -> dict[str, str]:
    """The LXD-on-OpenStack seed: the cloud port beyond the uplink drops every unknown source MAC.

    The rule lives in the upstream namespace (netdev ingress on its eth0), i.e. "in the cloud",
    so nothing on the host shows it: frames leave the uplink and no answer ever comes back.
    """
    rules = (
        "table netdev portsec {\n"
        "  chain ingress {\n"
        "    type filter hook ingress device eth0 priority 0; policy accept;\n"
        f"    ether saddr != {allowed_mac} counter drop comment \"port security: unknown MAC\"\n"
        "  }\n"
        "}\n"
    )
    run(["nft", "-f", "-"], netns=names.upstream_ns, input=rules)
    return {"port_security": f"only {allowed_mac} may send beyond {names.uplink}"}


def revert_upstream_port_security(state: LabState, names: LabNames) -> None:
    quiet(["nft", "delete", "table", "netdev", "portsec"], netns=names.upstream_ns)


def filter_drop(state: LabState, names: LabNames, guest_mac: str) -> dict[str, str]:
    """An nftables bridge-family rule on the host drops the guest's DHCP requests as they cross.

    Like a forgotten anti-spoofing or "no rogue DHCP" rule: it sits in the bridge forward hook,
    so the DISCOVER is seen on the guest's port and never on the uplink.
    """
    table = names.nft_table
    state.add("nft_tables", ["bridge", table])
    rules = (
        f"table bridge {table} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"    ether saddr {guest_mac} udp dport 67 counter drop comment \"tl2 lab: drop guest DHCP\"\n"
        "  }\n"
        "}\n"
    )
    run(["nft", "-f", "-"], input=rules)
    return {"nft": f"table bridge {table} chain forward: ether saddr {guest_mac} udp dport 67 drop"}


def ebtables_drop(state: LabState, names: LabNames, guest_port: str) -> dict[str, str]:
    """An ebtables rule on the guest's port drops its DHCP requests in the bridge's FORWARD chain.

    ebtables is where libvirt, OpenStack's old anti-spoofing and many hand-made setups put L2
    rules; on Debian 12 it is ebtables-nft, so the rule lives in nftables' `bridge filter` table,
    where `nft list ruleset` shows it in a form `ebtables -L` users do not recognise.
    """
    spec = ["-i", guest_port, "-p", "IPv4", "--ip-proto", "udp", "--ip-dport", "67", "-j", "DROP"]
    if not quiet(["nft", "list", "table", "bridge", "filter"]):
        state.add("nft_tables", ["bridge", "filter"])  # ebtables creates it: remove it with the lab
    state.add("xt_rules", ["ebtables", "filter", "FORWARD", *spec])
    run(["ebtables", "-t", "filter", "-I", "FORWARD", *spec])
    return {"ebtables": f"ebtables -t filter FORWARD {' '.join(spec)}"}


def forward_drop(state: LabState, names: LabNames, guest_port: str) -> dict[str, str]:
    """With br_netfilter, bridged IPv4 crosses the host's iptables FORWARD chain: a DROP there eats it.

    The classic: Docker sets the FORWARD policy to DROP, br_netfilter is loaded (bridge-nf-call-
    iptables = 1), and every bridged VM loses DHCP. This lab drops only its own guest's requests
    (a physdev match on its port), so the host's other traffic is untouched.
    """
    key = "net.bridge.bridge-nf-call-iptables"
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not knob.exists():
        raise EnvironmentMissing("br_netfilter is not available: iptables never sees bridged frames here")
    if knob.read_text().strip() != "1":
        state.sysctls.setdefault(key, knob.read_text().strip())
        state.save()
        run(["sysctl", "-qw", f"{key}=1"])
    spec = ["-m", "physdev", "--physdev-in", guest_port, "-p", "udp", "--dport", "67",
            "-m", "comment", "--comment", f"tl2 lab {names.lab}", "-j", "DROP"]
    state.add("xt_rules", ["iptables", "filter", "FORWARD", *spec])
    run(["iptables", "-t", "filter", "-I", "FORWARD", *spec])
    return {"iptables": f"iptables -t filter -I FORWARD {' '.join(spec)}"}


def nwfilter_drop(state: LabState, names: LabNames, domain: str, mac: str) -> dict[str, str]:
    """A libvirt nwfilter on the VM's interface that drops its DHCP requests.

    nwfilter is how libvirt (and OpenStack's older libvirt firewall driver) does anti-spoofing:
    `clean-traffic` and friends become ebtables/iptables chains per tap that name the tap once and
    drop in a chain of their own. A filter without `allow-dhcp` (or with a stale DHCPSERVER) is
    a classic reason a VM boots and never gets its lease. Applied live with `virsh update-device`.
    """
    name = f"tl2-{names.lab}-dhcp"
    state.add("nwfilters", name)
    # libvirt writes the ports of a direction='in' rule swapped into the chain for frames *from* the
    # guest (FI-vnetN: --sport 68 --dport 67): this drops the guest's DISCOVER and REQUEST.
    rule = (f"<filter name='{name}' chain='ipv4'>\n  <rule action='drop' direction='in' priority='100'>\n"
            "    <udp srcportstart='67' dstportstart='68'/>\n  </rule>\n</filter>\n")
    run(["virsh", "-c", "qemu:///system", "nwfilter-define", "/dev/stdin"], input=rule)
    _update_interface(domain, mac, name, check=True)
    return {"nwfilter": name}


def revert_nwfilter_drop(state: LabState, names: LabNames, domain: str, mac: str) -> None:
    _update_interface(domain, mac, None)
    name = f"tl2-{names.lab}-dhcp"
    quiet(["virsh", "-c", "qemu:///system", "nwfilter-undefine", name])
    if name in state.nwfilters:
        state.nwfilters.remove(name)
        state.save()


def _update_interface(domain: str, mac: str, filterref: str | None, *, check: bool = False) -> None:
    try:
        run(["virsh", "-c", "qemu:///system", "update-device", domain, "/dev/stdin", "--live"],
            input=_interface_xml(domain, mac, filterref=filterref))
    except Exception:
        if check:
            raise
        # revert is best effort: teardown destroys the domain, and its filter binding with it


def _interface_xml(domain: str, mac: str, *, filterref: str | None) -> str:
    """The domain's live <interface> for `mac`, with `filterref` set (or removed)."""
    import xml.etree.ElementTree as ET  # libvirt's own output: no entities to expand

    root = ET.fromstring(run(["virsh", "-c", "qemu:///system", "dumpxml", domain]).stdout)
    for iface in root.iter("interface"):
        m = iface.find("mac")
        if m is None or (m.get("address") or "").lower() != mac.lower():
            continue
        for old in iface.findall("filterref"):
            iface.remove(old)
        if filterref:
            ET.SubElement(iface, "filterref", {"filter": filterref})
        return ET.tostring(iface, encoding="unicode")
    raise LabError(f"{domain} has no interface with MAC {mac}")


def revert_xt_rules(state: LabState) -> None:
    """Delete exactly the ebtables/iptables rules the lab inserted (the fault's revert and teardown)."""
    for rule in reversed(list(state.xt_rules)):
        tool, table, chain, *spec = rule
        quiet([tool, "-t", table, "-D", chain, *spec])
        state.xt_rules.remove(rule)
    state.save()


def revert_filter_drop(state: LabState, names: LabNames) -> None:
    quiet(["nft", "delete", "table", "bridge", names.nft_table])
    if ["bridge", names.nft_table] in state.nft_tables:
        state.nft_tables.remove(["bridge", names.nft_table])
        state.save()


def bridge_mac_float(state: LabState, names: LabNames) -> dict[str, str]:
    """The host-freeze seed: a new port with a lower MAC joins a bridge whose address was never set.

    The kernel then re-derives the bridge address from the lowest port MAC, the host's ARP peers
    keep sending to the old one, and the host's traffic stalls until their caches expire.
    """
    before = _mac_of(names.bridge)
    # A host's bridge has had IPv6 since boot: its link-local spells the MAC it came up with, which
    # is how `check` proves the address moved. (Lab links otherwise run without IPv6.)
    run(["sysctl", "-qw", f"net.ipv6.conf.{names.bridge}.addr_gen_mode=0"])
    run(["sysctl", "-qw", f"net.ipv6.conf.{names.bridge}.disable_ipv6=0"])
    newport = f"{names.lab}-nv"
    state.add("links", newport)
    run(["ip", "link", "add", newport, "address", "02:00:00:00:00:01", "type", "veth",
         "peer", "name", f"{names.lab}-nvp"])
    run(["ip", "link", "set", newport, "master", names.bridge, "up"])
    after = _mac_of(names.bridge)
    return {"bridge_mac_before": before, "bridge_mac_after": after, "new_port": newport}


def _mac_of(dev: str) -> str:
    with open(f"/sys/class/net/{dev}/address") as f:
        return f.read().strip()


def stp_blocking(state: LabState, names: LabNames, guest_port: str) -> dict[str, str]:
    """Spanning tree switched on with a long forward delay: every port restarts in listening, then
    learning, and drops all but BPDUs for 2 x forward_delay (here 2 x 30 s). The outage of a bridge
    whose STP someone enabled (or a port STP blocked) while guests were expected to boot at once."""
    run(["ip", "link", "set", names.bridge, "type", "bridge", "forward_delay", "3000", "stp_state", "1"])
    # Ports already forwarding keep forwarding; a port that comes (back) up starts over in listening.
    run(["ip", "link", "set", guest_port, "down"])
    run(["ip", "link", "set", guest_port, "up"])
    return {"stp": f"{names.bridge}: STP on, forward_delay 30 s; {guest_port} listening then learning"}


def revert_stp_blocking(state: LabState, names: LabNames, guest_port: str) -> None:
    quiet(["ip", "link", "set", names.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])


def mtu_mismatch(state: LabState, names: LabNames) -> dict[str, str]:
    """The uplink with a smaller MTU than the rest of the path: DHCP and ARP still pass (small
    frames), full-size frames from the guest die at the uplink. The classic after-effect of an
    overlay or VLAN uplink whose MTU nobody lowered the guests to."""
    run(["ip", "link", "set", names.uplink, "mtu", "1400"])
    return {"mtu": f"{names.uplink} mtu 1400, the rest of the path 1500"}


def revert_mtu_mismatch(state: LabState, names: LabNames) -> None:
    quiet(["ip", "link", "set", names.uplink, "mtu", "1500"])
