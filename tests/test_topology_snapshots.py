"""The walk on recorded `ip -d -j link show` snapshots of hosts this kernel cannot build, and live."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tracer.analyze import analyze
from tracer.analyze.checks import static_checks
from tracer.errors import TopologyError
from tracer.model import Evidence, Guest, Role
from tracer.topology import Snapshot, resolve_path, walk

DATA = Path(__file__).parent / "data" / "topology"


def path_of(fixture: str, start: str, mac: str = "fa:16:3e:56:ea:fa"):
    snap = Snapshot.from_ip_json((DATA / fixture).read_text())
    return walk(snap, Guest("g", "libvirt", mac=mac), start)


def roles(path):
    return [(h.name, str(h.role)) for h in path.hops]


def test_kvm_seed_bridge_on_vlan_on_bond():
    path = path_of("kvm-seed-bond0.2222.json", "tap0b5f208b-76")
    assert roles(path) == [("tap0b5f208b-76", "guest-port"), ("brq5dddda71-76", "bridge"),
                           ("bond0.2222", "uplink"), ("bond0", "bond"), ("eno1", "physical"), ("eno2", "physical")]
    vlan = path.hop("bond0.2222")
    assert vlan.details["id"] == 2222 and vlan.details["parent"] == "bond0" and vlan.kind == "vlan"
    assert path.hop("bond0").details["mode"] == "802.3ad"
    assert "tap0e6de0ae-f1" in path.hop("brq5dddda71-76").details["ports"]  # other guests: ports, not uplinks
    assert path.hop("brq5dddda71-76").addr_assign_type == 0


@pytest.mark.parametrize("fixture,mode", [("bond-active-backup.json", "active-backup"),
                                          ("bond-8023ad.json", "802.3ad")])
def test_bridge_on_a_bond(fixture, mode):
    path = path_of(fixture, "vnet0")
    assert roles(path) == [("vnet0", "guest-port"), ("br0", "bridge"), ("bond0", "uplink"),
                           ("eno1", "physical"), ("eno2", "physical")]
    bond = path.hop("bond0")
    assert bond.details["mode"] == mode and bond.details["slaves"] == ["eno1", "eno2"]
    if mode == "active-backup":
        assert bond.details["active_slave"] == "eno1" and path.hop("eno1").details == {"active": True}
        assert path.hop("eno2").details == {}


def test_analysis_on_a_bonded_path_needs_one_slave_only():
    from tests.factories import T0
    from tracer.model import Direction, Observation

    path = path_of("bond-active-backup.json", "vnet0", mac="52:54:00:12:34:56")

    def obs(msg, hop, d, t):
        return Observation(hop, T0 + t, Direction(d), "dhcp", msg, "xid 0x1", src_mac="52:54:00:12:34:56",
                           client_mac="52:54:00:12:34:56")
    seq = []
    for i, msg in enumerate(("DISCOVER", "OFFER", "REQUEST", "ACK")):
        hops = [("vnet0", "in"), ("bond0", "out"), ("eno1", "out")]
        if msg in ("OFFER", "ACK"):
            hops = [("eno1", "in"), ("bond0", "in"), ("vnet0", "out")]
        seq += [obs(msg, h, d, i * 0.01 + j * 0.001) for j, (h, d) in enumerate(hops)]
    report = analyze(path, seq, Evidence(), (T0, T0 + 1), protocol="dhcp", target="g")
    assert report.verdict.status == "ok"


def test_xen_vlan_on_the_netloop_vif_is_walked_and_flagged():
    path = path_of("xen-peth1.json", "vif1.0", mac="00:16:3e:00:00:01")
    assert roles(path)[:3] == [("vif1.0", "guest-port"), ("xenbr52", "bridge"), ("eth1.52", "uplink")]
    assert path.hop("eth1").driver == "netloop" and path.hop("eth1").role is Role.PHYSICAL
    [finding] = [f for f in static_checks(path) if f.code == "vlan-parent"]
    assert "netloop" in finding.evidence[0]


def test_macvtap_guest_goes_to_its_lower_device():
    path = path_of("macvtap-vepa.json", "macvtap0", mac="52:54:00:12:34:56")
    assert roles(path) == [("macvtap0", "guest-port"), ("eno1", "uplink")]
    assert path.hop("macvtap0").details == {"mode": "vepa", "lower": "eno1"}
    assert [f.code for f in static_checks(path)] == ["macvlan-isolation"]


def test_stp_blocking_port_state_is_read():
    path = path_of("stp-blocking.json", "vnet3", mac="52:54:00:00:00:03")
    assert path.hop("vnet3").port_state == "blocking"
    report = analyze(path, [], Evidence(), (0.0, 1.0), protocol="dhcp", target="g")
    assert "stp-blocking" in [f.code for f in report.findings] and report.verdict.status == "stopped"


def test_chained_bridges_are_walked_through_their_patch_veths():
    """Three bridges joined by same-namespace veth pairs (recorded live): the walk crosses every
    pair, and each bridge expects the guest's MAC on its own port towards the guest."""
    from tracer.analyze.findings import fdb_mismatch
    from tracer.model import FdbEntry

    snap = Snapshot.from_json((DATA / "three-bridges-chain.json").read_text())
    mac = "52:54:00:aa:bb:01"
    path = walk(snap, Guest("c-guest", "netns", mac=mac), None, guest_netns="c-guest", guest_dev="eth0")
    assert roles(path) == [("eth0", "guest"), ("kg0", "guest-port"), ("kb1", "bridge"), ("k1-up", "uplink"),
                           ("k2-dn", "patch"), ("kb2", "bridge"), ("k2-up", "uplink"), ("k3-dn", "patch"),
                           ("kb3", "bridge"), ("k3-up", "uplink"), ("eth0", "upstream")]
    assert path.hops[-1].netns == "c-up" and not path.notes
    right = (FdbEntry(mac, "kg0", "kb1"), FdbEntry(mac, "k2-dn", "kb2"), FdbEntry(mac, "k3-dn", "kb3"))
    assert fdb_mismatch(path, Evidence(fdb=right), None) == []
    wrong = FdbEntry(mac, "k2-up", "kb2", ("static", "sticky", "master"))
    [finding] = fdb_mismatch(path, Evidence(fdb=(*right, wrong)), None)
    assert finding.hop == "k2-up" and "the guest is behind k2-dn" in finding.explanation


def test_missing_start_interface_is_a_topology_error():
    with pytest.raises(TopologyError, match="no interface nosuch0"):
        path_of("bond-8023ad.json", "nosuch0")


def test_snapshot_json_round_trip():
    snap = Snapshot.from_ip_json((DATA / "kvm-seed-bond0.2222.json").read_text())
    again = Snapshot.from_json(snap.to_json())
    assert again.links == snap.links
    with pytest.raises(TopologyError):
        Snapshot.from_json("{not json")


@pytest.mark.live
def test_live_lab_walk_from_the_guest_namespace(make_lab):
    state = make_lab("healthy")
    n = state.name
    path = resolve_path(Guest(state.info["target"], "netns", mac=state.info["guest"]["mac"]), None,
                        guest_netns=f"tl2-{n}-guest")
    assert roles(path) == [("eth0", "guest"), (f"{n}-g0", "guest-port"), (f"{n}-br", "bridge"),
                           (f"{n}-up", "uplink"), ("eth0", "upstream")]
    assert path.hops[0].netns == f"tl2-{n}-guest" and path.hops[-1].netns == f"tl2-{n}-up"
    assert path.hop(f"{n}-g0").port_state == "forwarding" and path.hop(f"{n}-g0").master == f"{n}-br"
    assert path.hop(f"{n}-br").addr_assign_type == 3  # the lab pins the bridge address
    subprocess.run(["ip", "link", "set", f"{n}-g0", "down"], check=True)
    down = resolve_path(Guest("g", "netns"), f"{n}-g0")
    assert down.hop(f"{n}-g0").admin_up is False
