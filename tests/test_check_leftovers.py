"""leftover-veth from small inventories (pure, no root): seed 000's blocked veth names, libvirt fixed
taps, orphans, and no false alarms on a healthy host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.analyze.leftovers import (
    ConfiguredLink,
    GuestConfig,
    HostLink,
    Inventory,
    leftover_findings,
    leftovers,
    relevant,
)
from tracer.hosttools import ToolResult
from tracer.model import Severity
from tracer.targets.libvirt import LibvirtSource
from tracer.targets.lxc import DictFileSystem, LxcSource
from tracer.topology.inventory import libvirt_guests, links_from_ip_json, lxc_guests

DATA = Path(__file__).parent / "data" / "targets"
AIO1 = "aio1_cinder_api_container-b78dc1c8"
AIO1_DIR = f"/var/lib/lxc/{AIO1}"

CONFIG = "/var/lib/lxc/tl2-x-ct/config"
PAIR_LINE = f"lxc.net.0.veth.pair = x-ct0 in {CONFIG} (line 14)"


def no_tools(argv, timeout=0):
    return ToolResult(error=f"{argv[0]} is not installed")


def veth(name: str, index: int, **kw) -> HostLink:
    kw.setdefault("flags", ("BROADCAST", "MULTICAST", "UP", "LOWER_UP"))
    return HostLink(name=name, ifindex=index, kind="veth", mtu=1500, **kw)


def stopped_ct(name: str = "tl2-x-ct", pair: str = "x-ct0", origin: str = PAIR_LINE) -> GuestConfig:
    return GuestConfig(name=name, kind="lxc", running=False, state="STOPPED",
                       links=(ConfiguredLink(pair, origin, "veth", "x-br"),))


def seed_links() -> tuple[HostLink, ...]:
    """x-ct0 as seed 000 showed it: UP in the bridge, LOWERLAYERDOWN, its peer down beside it."""
    return (HostLink("x-br", 10, kind="bridge", flags=("UP", "LOWER_UP"), operstate="UP"),
            veth("x-ct0", 110, peer="x-ct0-p", master="x-br", operstate="LOWERLAYERDOWN",
                 flags=("NO-CARRIER", "BROADCAST", "MULTICAST", "UP")),
            veth("x-ct0-p", 109, peer="x-ct0", operstate="DOWN", flags=("BROADCAST", "MULTICAST")))


# ---------------------------------------------------------------- a stopped container whose name is taken
def test_modern_key_blocks_the_start() -> None:
    inv = Inventory(guests=(stopped_ct(),), links=seed_links(), netns_ids=frozenset())
    [lo] = leftovers(inv)
    f = lo.finding
    assert (f.code, f.severity, f.hop, f.fix) == ("leftover-veth", Severity.ERROR, "x-ct0", "ip link del x-ct0")
    assert f.evidence[0] == PAIR_LINE
    assert f.evidence[1].startswith("ip link show x-ct0: 110: x-ct0@x-ct0-p: <NO-CARRIER,")
    assert "master x-br" in f.evidence[1] and "state LOWERLAYERDOWN" in f.evidence[1]
    assert "Failed to create veth pair" in f.explanation and "File exists" in f.explanation
    assert "x-ct0-p" in f.explanation  # deleting one end removes both
    assert (lo.link, lo.ifindex, lo.guest, lo.bridge, lo.removable) == ("x-ct0", 110, "lxc:tl2-x-ct", "x-br", True)
    assert lo.command == "ip link del x-ct0"
    assert leftover_findings(inv) == [f]


def test_the_peer_is_not_reported_and_a_free_name_is_nothing() -> None:
    inv = Inventory(guests=(stopped_ct(),), links=seed_links(), netns_ids=frozenset())
    assert [lo.link for lo in leftovers(inv)] == ["x-ct0"]
    free = Inventory(guests=(stopped_ct(),), links=seed_links()[:1], netns_ids=frozenset())
    assert leftovers(free) == []


def test_seed_000_legacy_keys_and_included_files() -> None:
    fs = DictFileSystem({f"{AIO1_DIR}/{n}": (DATA / "lxc-aio1" / n).read_text()
                         for n in ("config", "eno1.ini", "eno2.ini")})
    src = LxcSource(["/var/lib/lxc"], fs=fs, use_tools=False, proc="/nonexistent")
    [guest] = lxc_guests(src)
    assert (guest.kind, guest.name, guest.running) == ("lxc", AIO1, False)
    origins = {c.name: c.origin for c in guest.links}
    assert origins["b78dc1c8_eth0"] == f"lxc.network.veth.pair = b78dc1c8_eth0 in {AIO1_DIR}/config (line 20)"
    assert origins["b78dc1c8_eno1"] == (f"lxc.network.veth.pair = b78dc1c8_eno1 in {AIO1_DIR}/eno1.ini "
                                        f"(line 8, included from {AIO1_DIR}/config)")
    links = (veth("vethBMO7RR", 109, peer="b78dc1c8_eth0", operstate="DOWN", flags=("BROADCAST", "MULTICAST")),
             veth("b78dc1c8_eth0", 110, peer="vethBMO7RR", master="lxcbr0", operstate="LOWERLAYERDOWN"),
             veth("b78dc1c8_eno1", 112, peer="vethQ1", master="br-mgmt"),
             veth("vethQ1", 111, peer="b78dc1c8_eno1"))
    found = leftovers(Inventory(guests=(guest,), links=links, netns_ids=frozenset()))
    assert [(lo.link, lo.finding.fix) for lo in found] == [("b78dc1c8_eth0", "ip link del b78dc1c8_eth0"),
                                                            ("b78dc1c8_eno1", "ip link del b78dc1c8_eno1")]
    assert found[1].finding.evidence[0] == origins["b78dc1c8_eno1"]
    assert all(lo.finding.severity == Severity.ERROR for lo in found)


def test_a_running_container_owns_its_link() -> None:
    running = GuestConfig("tl2-x-ct", "lxc", running=True, state="RUNNING",
                          links=(ConfiguredLink("x-ct0", PAIR_LINE, "veth", "x-br"),), runtime=("x-ct0",))
    links = (veth("x-ct0", 110, peer_ifindex=2, netnsid=3, master="x-br"),)
    assert leftovers(Inventory(guests=(running,), links=links, netns_ids=frozenset({3}))) == []


def test_a_name_two_configs_claim_is_a_conflict_not_a_leftover() -> None:
    other = GuestConfig("web2", "lxc", running=True, state="RUNNING", runtime=("x-ct0",))
    links = (veth("x-ct0", 110, peer_ifindex=2, netnsid=3, master="x-br"),)
    [lo] = leftovers(Inventory(guests=(stopped_ct(), other), links=links, netns_ids=frozenset({3})))
    assert lo.finding.severity == Severity.ERROR and not lo.removable
    assert "ip link del" not in lo.finding.fix and "lxc:web2" in lo.finding.explanation


# ---------------------------------------------------------------- libvirt: fixed <target dev>
FIXED_TAP_XML = """<domain type='kvm'>
  <name>{name}</name>
  <uuid>6f1d8c2e-0b7a-4a53-9d55-1c2b3a4d5e6f</uuid>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:56'/>
      <source bridge='br0'/>
      <target dev='{dev}'{managed}/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"""


def libvirt_tree(tmp_path: Path, *, managed: str = "") -> LibvirtSource:
    etc = tmp_path / "etc"
    (etc / "qemu").mkdir(parents=True)
    (tmp_path / "run" / "qemu").mkdir(parents=True)
    (etc / "qemu" / "web1.xml").write_text(FIXED_TAP_XML.format(name="web1", dev="web1-tap0", managed=managed))
    return LibvirtSource(run_dir=str(tmp_path / "run"), etc_dir=str(etc), use_python=False, use_virsh=False,
                         runner=no_tools)


def tap(name: str, index: int, *, carrier: bool = False, persist: bool = True, **kw) -> HostLink:
    flags = ("BROADCAST", "MULTICAST", "UP", "LOWER_UP") if carrier else ("NO-CARRIER", "BROADCAST", "MULTICAST", "UP")
    return HostLink(name, index, kind="tun", tun_type="tap", persist=persist, flags=flags, mtu=1500, **kw)


def test_libvirt_fixed_target_dev_of_a_stopped_domain(tmp_path) -> None:
    [guest] = libvirt_guests(libvirt_tree(tmp_path), runner=no_tools)
    assert (guest.kind, guest.name, guest.running) == ("libvirt", "web1", False)
    [conf] = guest.links
    assert conf.name == "web1-tap0" and conf.managed and conf.bridge == "br0"
    assert conf.origin.startswith("<target dev='web1-tap0'/> of interface 0 (type bridge, bridge br0) in libvirt "
                                  "domain web1")
    [lo] = leftovers(Inventory(guests=(guest,), links=(tap("web1-tap0", 40, master="br0"),), netns_ids=frozenset()))
    f = lo.finding
    assert (f.code, f.severity, f.hop, f.fix) == ("leftover-veth", Severity.ERROR, "web1-tap0", "ip link del web1-tap0")
    assert f.evidence[0] == conf.origin and f.evidence[1].startswith("ip link show web1-tap0: 40: web1-tap0:")
    assert "virsh start web1" in f.explanation and lo.guest == "libvirt:web1"


def test_libvirt_managed_no_expects_the_tap(tmp_path) -> None:
    [guest] = libvirt_guests(libvirt_tree(tmp_path, managed=" managed='no'"), runner=no_tools)
    assert not guest.links[0].managed
    assert leftovers(Inventory(guests=(guest,), links=(tap("web1-tap0", 40),), netns_ids=frozenset())) == []


def test_orphan_libvirt_tap() -> None:
    stopped = GuestConfig("instance-00000348", "libvirt", running=False, state="shut off")
    running = GuestConfig("instance-00000347", "libvirt", running=True, state="running", runtime=("vnet3",))
    links = (tap("vnet7", 50, master="br0"), tap("vnet3", 51, master="br0"),
             tap("tap0b5f208b-76", 52, carrier=True), tap("vnet9", 53, persist=False), tap("mytap", 54))
    found = leftovers(Inventory(guests=(stopped, running), links=links, netns_ids=frozenset()))
    assert [lo.link for lo in found] == ["vnet7"]
    f = found[0].finding
    assert (f.severity, f.fix, found[0].bridge) == (Severity.WARNING, "ip link del vnet7", "br0")
    assert "no QEMU" in " ".join(f.evidence)
    # libvirt unreadable: nobody can tell which taps are in use
    assert leftovers(Inventory(guests=(), links=links, netns_ids=frozenset(), libvirt_read=False)) == []


# ---------------------------------------------------------------- orphan veths
def test_orphan_veth_whose_peer_namespace_is_gone() -> None:
    links = (veth("x-up", 20, peer_ifindex=2, netnsid=0, master="x-br"),
             veth("old-ct0", 21, peer_ifindex=2, netnsid=7, master="x-br", operstate="UP"))
    [lo] = leftovers(Inventory(links=links, netns_ids=frozenset({0})))
    f = lo.finding
    assert (lo.link, f.severity, f.hop, f.fix, lo.bridge) == ("old-ct0", Severity.WARNING, "old-ct0",
                                                             "ip link del old-ct0", "x-br")
    assert "nsid 7" in f.evidence[1] and "link-netnsid 7" in f.evidence[0]
    # unknown namespaces: never guess
    assert leftovers(Inventory(links=links, netns_ids=None)) == []


def test_relevant_to_a_target() -> None:
    orphan = veth("old-ct0", 21, peer_ifindex=2, netnsid=7, master="x-br")
    elsewhere = veth("old-ct1", 22, peer_ifindex=2, netnsid=8, master="y-br")
    inv = Inventory(guests=(stopped_ct(), stopped_ct("tl2-y-ct", "y-ct0")),
                    links=(*seed_links(), veth("y-ct0", 30, peer="z", master="y-br"), orphan, elsewhere),
                    netns_ids=frozenset())
    everything = leftovers(inv)
    assert [lo.link for lo in everything] == ["x-ct0", "y-ct0", "old-ct0", "old-ct1"]
    mine = relevant(everything, guest="lxc:tl2-x-ct", bridges={"x-br"})
    assert [lo.link for lo in mine] == ["x-ct0", "old-ct0"]
    assert [lo.link for lo in relevant(everything, guest="netns:other", bridges=())] == []


# ---------------------------------------------------------------- no false alarms
def test_healthy_host_has_no_leftovers() -> None:
    guests = (GuestConfig("tl2-h-ct", "lxc", running=True, state="RUNNING",
                          links=(ConfiguredLink("h-ct0", "lxc.net.0.veth.pair = h-ct0 in c", "veth", "h-br"),),
                          runtime=("h-ct0",)),
              GuestConfig("instance-00000347", "libvirt", running=True, state="running", runtime=("vnet0",)),
              GuestConfig("quiet", "lxc", running=False, state="STOPPED",
                          links=(ConfiguredLink("q-ct0", "lxc.net.0.veth.pair = q-ct0 in c", "veth", "h-br"),)))
    links = (HostLink("lo", 1, flags=("LOOPBACK", "UP", "LOWER_UP")), HostLink("eth0", 2, flags=("UP", "LOWER_UP")),
             HostLink("h-br", 3, kind="bridge"), veth("h-up", 4, peer_ifindex=2, netnsid=0, master="h-br"),
             veth("h-g0", 5, peer_ifindex=2, netnsid=1, master="h-br"),
             veth("h-ct0", 6, peer_ifindex=2, netnsid=2, master="h-br"), tap("vnet0", 7, carrier=True, persist=False),
             veth("patch-a", 8, peer="patch-b"), veth("patch-b", 9, peer="patch-a"))
    assert leftovers(Inventory(guests=guests, links=links, netns_ids=frozenset({0, 1, 2}))) == []


# ---------------------------------------------------------------- reading `ip -d -j link show`
def test_links_from_ip_json() -> None:
    text = json.dumps([
        {"ifindex": 1706, "link": "x-ct0-p", "ifname": "x-ct0", "flags": ["NO-CARRIER", "BROADCAST", "UP"],
         "mtu": 1500, "master": "x-br", "operstate": "LOWERLAYERDOWN", "linkinfo": {"info_kind": "veth"}},
        {"ifindex": 1701, "link_index": 2, "ifname": "x-up", "flags": ["UP", "LOWER_UP"], "link_netnsid": 0,
         "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"}},
        {"ifindex": 1918, "ifname": "vnet7", "flags": ["BROADCAST"], "operstate": "DOWN",
         "linkinfo": {"info_kind": "tun", "info_data": {"type": "tap", "persist": True}}},
        {"ifname": "broken"},
    ])
    ct0, up, vnet = links_from_ip_json(text)
    assert (ct0.peer, ct0.netnsid, ct0.master, ct0.kind) == ("x-ct0-p", None, "x-br", "veth")
    assert (up.peer, up.peer_ifindex, up.netnsid) == (None, 2, 0)
    assert (vnet.kind, vnet.tun_type, vnet.persist, vnet.lower_up) == ("tun", "tap", True, False)
    recorded = links_from_ip_json((DATA / "ip-j-d-link-netns.json").read_text())
    assert [(link.name, link.netnsid) for link in recorded][:2] == [("lo", None), ("eth0", 0)]


@pytest.mark.parametrize("text", ["not json", "{}"])
def test_links_from_bad_ip_json(text) -> None:
    from tracer.errors import TargetError

    if text == "{}":
        assert links_from_ip_json(text) == []
    else:
        with pytest.raises(TargetError):
            links_from_ip_json(text)


def test_lxc_source_without_containers(tmp_path) -> None:
    src = LxcSource([str(tmp_path)], use_tools=False, proc="/nonexistent")
    assert lxc_guests(src) == []
