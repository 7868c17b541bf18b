"""The static checks, table-driven from small paths (including hosts this kernel cannot build)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.factories import GUEST_MAC, lab_path
from tracer.analyze.checks import static_checks
from tracer.model import Guest, Hop, Path, Role


def with_hop(path: Path, name: str, **changes) -> Path:
    return Path(path.guest, tuple(replace(h, **changes) if h.name == name else h for h in path.hops))


def codes(path):
    return [f.code for f in static_checks(path)]


def test_a_lab_shaped_healthy_path_has_no_findings():
    assert codes(with_hop(lab_path(), "brq5dddda71-76", addr_assign_type=3)) == []


def test_unset_bridge_address_borrowed_from_lowest_port():
    path = with_hop(lab_path(), "brq5dddda71-76", addr_assign_type=0, mac="02:00:00:00:00:01",
                    details={"ports": {"tap0b5f208b-76": "fe:16:3e:56:ea:fa", "newveth": "02:00:00:00:00:01"}})
    [f] = static_checks(path)
    assert f.code == "bridge-mac-float" and f.severity == "warning"
    assert "borrowed from its lowest port newveth" in f.evidence[1]
    assert f.fix.startswith("ip link set brq5dddda71-76 address 02:00:00:00:00:01")


def test_bridge_address_that_changed_is_an_error():
    path = with_hop(lab_path(), "brq5dddda71-76", addr_assign_type=0, mac="b2:c8:45:94:e4:0a",
                    details={"previous_mac": "b4:99:ba:00:00:01"})
    [f] = static_checks(path)
    assert f.severity == "error" and "was b4:99:ba:00:00:01" in f.evidence[-1]


def xen_path() -> Path:
    return Path(Guest("web1", "xen", mac="00:16:3e:00:00:01"), (
        Hop("vif1.0", "vif", Role.GUEST_PORT, master="xenbr52"),
        Hop("xenbr52", "bridge", Role.BRIDGE, addr_assign_type=3),
        Hop("eth1.52", "vlan", Role.VLAN, master="xenbr52", details={"id": 52, "parent": "eth1"}),
        Hop("eth1", "device", Role.UPLINK, driver="netloop"),
        Hop("peth1", "device", Role.PHYSICAL, driver="tg3"),
    ))


def test_xen_vlan_on_the_renamed_vif_is_found():
    [f] = static_checks(xen_path())
    assert f.code == "vlan-parent" and f.hop == "eth1.52"
    assert "driver netloop" in f.evidence[0] and "peth1" in f.evidence[1]
    assert "peth1.52" in f.fix


def test_vlan_on_the_physical_nic_is_fine():
    path = Path(Guest("vm", "libvirt"), (
        Hop("tap1", "tun", Role.GUEST_PORT, master="br"),
        Hop("br", "bridge", Role.BRIDGE, addr_assign_type=3),
        Hop("bond0.2222", "vlan", Role.VLAN, details={"id": 2222, "parent": "bond0"}),
        Hop("bond0", "bond", Role.BOND, driver="bonding"),
    ))
    assert codes(path) == []


def test_vlan_filtering_with_no_shared_vlan():
    path = with_hop(lab_path(), "tap0b5f208b-76", details={"vlans": [10]})
    path = with_hop(path, "bond0", details={"vlans": [20, 30]})
    path = with_hop(path, "brq5dddda71-76", addr_assign_type=3)
    [f] = static_checks(path)
    assert f.code == "vlan-parent" and "shares no VLAN" in f.explanation


@pytest.mark.parametrize("mode,expected", [("private", ["macvlan-isolation"]), ("vepa", ["macvlan-isolation"]),
                                           ("bridge", [])])
def test_macvlan_modes(mode, expected):
    path = Path(Guest("ct", "lxc", mac=GUEST_MAC), (
        Hop("mv0", "macvlan", Role.GUEST_PORT, details={"mode": mode, "lower": "eth0"}),
        Hop("eth0", "device", Role.UPLINK, driver="e1000e"),
    ))
    assert codes(path) == expected


def test_lxc_none_network_type_warns():
    path = Path(Guest("ct", "lxc", details={"network_type": "none"}), ())
    assert codes(path) == ["macvlan-isolation"]


def test_container_bridged_onto_a_cloud_vm_nic():
    path = with_hop(lab_path(), "bond0", driver="virtio_net", mac="fa:16:3e:00:00:99")
    path = with_hop(path, "brq5dddda71-76", addr_assign_type=3)
    [f] = static_checks(path)
    assert f.code == "upstream-no-reply" and "allowed-address" in f.fix


@pytest.mark.parametrize(("address", "mac"), [
    ("fe80::44ef:33ff:fe24:a19c", "46:ef:33:24:a1:9c"),
    ("fe80::ff:fe00:1/64", "02:00:00:00:00:01"),
    ("fe80::1", None),                        # not EUI-64: spells no MAC
    ("fe80::a8bb:ccdd:eeff:1122", None),      # stable-privacy style
    ("not an address", None),
])
def test_mac_from_eui64(address, mac):
    from tracer.topology.bridge_mac import mac_from_eui64

    assert mac_from_eui64(address) == mac
