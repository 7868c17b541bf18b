"""libvirt domain XML -> Target, from recorded libvirt 9.0 XML and the KVM seed's instance-00000347."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from tracer.errors import PrivilegeError, TargetError
from tracer.targets._host import ToolResult
from tracer.targets.libvirt import (
    VHOSTUSER_NOTE,
    LibvirtNetwork,
    LibvirtSource,
    parse_domain_xml,
    parse_network_xml,
    parse_virsh_names,
)

DATA = Path(__file__).parent / "data" / "targets"


def read(name: str) -> str:
    return (DATA / name).read_text()


def networks() -> dict[str, LibvirtNetwork]:
    nets = {}
    for path in sorted(DATA.glob("libvirt*-net-*.xml")):
        net = parse_network_xml(path.read_text(), origin=path.name)
        nets[net.name] = net
    return nets


def nic_rows(target):
    return [(n.type, n.mac, n.host_dev, n.link, n.mode) for n in target.nics]


# ---------------------------------------------------------------- the seed's instance
def test_seed_instance_00000347() -> None:
    t = parse_domain_xml(read("instance-00000347.xml"), origin="virsh dumpxml instance-00000347")
    assert (t.name, t.kind, t.running) == ("instance-00000347", "libvirt", True)
    (nic,) = t.nics
    assert (nic.type, nic.mac, nic.host_dev, nic.link) == (
        "bridge", "fa:16:3e:56:ea:fa", "tap0b5f208b-76", "brq5dddda71-76")
    assert nic.details["alias"] == "net0" and nic.details["model"] == "virtio"
    assert nic.netns is None and nic.note is None and nic.sniffable


def test_seed_nova_metadata() -> None:
    t = parse_domain_xml(read("instance-00000347.xml"))
    assert t.details["uuid"] == t.details["nova_uuid"] == "6a7e8f3c-2b1d-4f5e-9c8a-0d1e2f3a4b5c"
    nova = t.details["nova"]
    assert nova["namespace"] == "http://openstack.org/xmlns/libvirt/nova/1.1"
    assert nova["name"] == "web-frontend-2"
    assert nova["flavor"]["name"] == "m1.small" and nova["flavor"]["vcpus"] == "1"
    assert nova["project"] == {"name": "web", "uuid": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}
    assert nova["root"]["type"] == "image"
    assert nova["ports"] == [{"uuid": "0b5f208b-7611-4c1e-a1e8-5d3f0e2c9a41", "ips": ["10.0.22.57"]}]
    # the tap is named after the neutron port: tap + the port UUID's first 11 characters
    assert t.nics[0].details["neutron_port"] == "0b5f208b-7611-4c1e-a1e8-5d3f0e2c9a41"
    assert t.nics[0].details["ips"] == ["10.0.22.57"]


def test_nova_metadata_namespace_1_0() -> None:
    xml = read("instance-00000347.xml").replace("libvirt/nova/1.1", "libvirt/nova/1.0")
    t = parse_domain_xml(xml)
    assert t.details["nova"]["name"] == "web-frontend-2"


def test_foreign_metadata_is_not_nova() -> None:
    xml = read("instance-00000347.xml").replace("http://openstack.org/xmlns/libvirt/nova/1.1",
                                                "http://example.org/other")
    t = parse_domain_xml(xml)
    assert "nova" not in t.details and "nova_uuid" not in t.details


# ---------------------------------------------------------------- recorded libvirt 9.0, every type
LIVE_MULTI = [
    ("bridge", "fa:16:3e:56:ea:fa", "tap0b5f208b-76", "tgrec-br", None),
    ("network", "52:54:00:12:34:02", "vnet9", "tgrec-virbr", None),
    # a network in forward mode='bridge' is shown live as type='bridge' with network= and bridge=
    ("bridge", "52:54:00:12:34:03", "vnet10", "tgrec-br", None),
    # a macvtap network (forward mode='vepa') is shown live as type='direct'
    ("direct", "52:54:00:12:34:06", "macvtap2", "tgrec-v0", "vepa"),
    ("direct", "52:54:00:12:34:04", "macvtap3", "tgrec-v0", "bridge"),
    ("ethernet", "52:54:00:12:34:05", "tgrec-tap", None, None),
]


@pytest.mark.parametrize("fixture", ["libvirt9-live-multi.xml", "libvirt9-status-multi.xml"])
def test_recorded_live_and_status_xml_agree(fixture) -> None:
    t = parse_domain_xml(read(fixture), origin=fixture)
    assert t.name == "tgrec-00000abc" and t.running
    assert nic_rows(t) == LIVE_MULTI
    assert [n.details.get("network") for n in t.nics] == [None, "tgrec-net", "tgrec-hostbr", "tgrec-mvtnet",
                                                          None, None]
    assert t.details["nova"]["ports"][0]["uuid"].startswith("0b5f208b")


def test_status_file_carries_qemu_pid_and_state() -> None:
    t = parse_domain_xml(read("libvirt9-status-multi.xml"))
    assert t.details["state"] == "running" and t.details["pid"] == 7684 and t.details["id"] == 9
    # in the status file a network NIC keeps type='network' and says what it became in <actual>
    assert [n.details["declared_type"] for n in t.nics] == ["bridge", "network", "network", "network",
                                                            "direct", "ethernet"]


def test_ethernet_note() -> None:
    t = parse_domain_xml(read("libvirt9-live-multi.xml"))
    assert "plugs it nowhere" in t.nics[5].note


def test_vhostuser_cannot_be_sniffed() -> None:
    for fixture in ("libvirt9-live-vhostuser.xml", "libvirt9-status-vhostuser.xml"):
        t = parse_domain_xml(read(fixture), origin=fixture)
        vhu, user = t.nics
        assert (vhu.type, vhu.host_dev, vhu.mac) == ("vhostuser", None, "52:54:00:3b:83:1a")
        assert vhu.note == VHOSTUSER_NOTE and "cannot be sniffed from the kernel" in vhu.note
        assert vhu.details["socket_path"] == "/tmp/tgrec/vhost-user1" and vhu.details["socket_mode"] == "server"
        assert not vhu.sniffable
        assert user.type == "user" and not user.sniffable and "slirp" in user.note
    assert parse_domain_xml(read("libvirt9-status-vhostuser.xml")).details["state"] == "paused"


def test_inactive_domain_resolves_networks() -> None:
    t = parse_domain_xml(read("libvirt-inactive-network.xml"), networks=networks().get)
    assert not t.running and "not running" in t.notes[0]
    rows = [(n.type, n.host_dev, n.link, n.mode, n.vlan_id) for n in t.nics]
    assert rows == [
        ("network", None, "virbr0", None, None),
        ("direct", None, None, "bridge", None),
        ("direct", None, "eno1", "private", None),
        ("bridge", None, "ovsbr0", None, 42),
        ("user", None, None, None, None),
        ("hostdev", None, None, None, None),
    ]
    assert t.nics[1].details["forward_devs"] == ["eth2", "eth3"] and "macvtap pool" in t.nics[1].note
    assert t.nics[1].details["portgroup"] == "engineering"
    assert "Open vSwitch" in t.nics[3].note and t.nics[3].details["interfaceid"].startswith("8c7b6a59")
    assert t.nics[5].details["pci"]["slot"] == "0x10" and "passthrough" in t.nics[5].note


def test_hostdev_network_pool() -> None:
    pool = LibvirtNetwork(name="default", forward_mode="hostdev")
    t = parse_domain_xml(read("libvirt-inactive-network.xml"), networks=lambda name: pool)
    assert t.nics[0].type == "hostdev" and not t.nics[0].sniffable and "passthrough" in t.nics[0].note


def test_unknown_network_is_a_note_not_an_error() -> None:
    t = parse_domain_xml(read("libvirt-inactive-network.xml"), networks=lambda name: None)
    assert t.nics[0].link is None and "bridge is unknown" in t.nics[0].note


@pytest.mark.parametrize(("fixture", "bridge", "mode", "devs"), [
    ("libvirt-net-default.xml", "virbr0", "nat", ()),
    ("libvirt-net-macvtap-pool.xml", None, "bridge", ("eth2", "eth3")),
    ("libvirt9-net-tgrec-net.xml", "tgrec-virbr", None, ()),
    ("libvirt9-netstatus-tgrec-net.xml", "tgrec-virbr", None, ()),
    ("libvirt9-net-tgrec-hostbr.xml", "tgrec-br", "bridge", ()),
    ("libvirt9-netstatus-tgrec-mvtnet.xml", None, "vepa", ("tgrec-v0",)),
])
def test_network_xml(fixture, bridge, mode, devs) -> None:
    net = parse_network_xml(read(fixture), origin=fixture)
    assert (net.bridge, net.forward_mode, net.forward_devs) == (bridge, mode, devs)


def test_libvirt_lxc_domain_enters_the_container() -> None:
    t = parse_domain_xml(read("libvirt-lxc-status.xml"))
    assert t.details["virt_type"] == "lxc" and t.details["init_pid"] == 20423
    (nic,) = t.nics
    assert (nic.host_dev, nic.link, nic.guest_dev, nic.netns) == ("vnet3", "virbr0", "eth0", "pid:20423")


# ---------------------------------------------------------------- malformed input
@pytest.mark.parametrize(("xml", "match"), [
    ("<domain><name>x</name>", "line 1, column"),
    ("<domain type='kvm'>\n<uuid>u</uuid>\n</domain>", "without a <name>"),
    ("<network><name>n</name></network>", "expected <domain>"),
    ("<domstatus state='running'/>", "without a <domain>"),
    ("<domain><name>x</name><devices><interface><mac address='fa:16:3e:00:00:01'/></interface></devices></domain>",
     "has no type"),
    ("<domain><name>x</name><devices><interface type='bridge'><mac address='zz'/></interface></devices></domain>",
     "invalid MAC"),
    ("<domain><name>x</name><devices><interface type='bridge'><vlan><tag id='9999'/></vlan></interface>"
     "</devices></domain>", "out of range"),
    ("<domstatus state='running' pid='abc'><domain><name>x</name></domain></domstatus>", "must be a number"),
    ("", "malformed XML"),
    ("not xml at all", "malformed XML"),
])
def test_malformed_domain_xml(xml, match) -> None:
    with pytest.raises(TargetError, match=match):
        parse_domain_xml(xml, origin="dom.xml")


def test_malformed_network_xml() -> None:
    with pytest.raises(TargetError, match="without a <name>"):
        parse_network_xml("<network><bridge name='b'/></network>")
    with pytest.raises(TargetError, match="without a <network>"):
        parse_network_xml("<networkstatus/>")


def test_parse_virsh_names() -> None:
    assert parse_virsh_names(read("virsh-list-all-name.txt")) == ["tgrec-00000abc", "tgrec-vhu"]


# ---------------------------------------------------------------- reading the host (no root needed)
def state_tree(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    etc = tmp_path / "etc"
    (run / "qemu").mkdir(parents=True)
    (run / "network").mkdir()
    (etc / "qemu" / "networks").mkdir(parents=True)
    shutil.copy(DATA / "libvirt9-status-multi.xml", run / "qemu" / "tgrec-00000abc.xml")
    (run / "qemu" / "tgrec-00000abc.pid").write_text("7684")
    shutil.copy(DATA / "libvirt-inactive-network.xml", etc / "qemu" / "builder.xml")
    shutil.copy(DATA / "libvirt-net-default.xml", etc / "qemu" / "networks" / "default.xml")
    shutil.copy(DATA / "libvirt-net-macvtap-pool.xml", run / "network" / "macvtap-pool.xml")
    return run, etc


def no_tools(argv, timeout=0):
    return ToolResult(error=f"{argv[0]} is not installed")


def test_state_files_without_binding_or_virsh(tmp_path) -> None:
    run, etc = state_tree(tmp_path)
    src = LibvirtSource(run_dir=str(run), etc_dir=str(etc), use_python=False, use_virsh=False, runner=no_tools)
    assert sorted(src.names()) == ["builder", "tgrec-00000abc"]
    live = src.load("tgrec-00000abc")
    assert live.running and nic_rows(live) == LIVE_MULTI
    assert live.details["source"].endswith("tgrec-00000abc.xml")
    stopped = src.load("builder")
    assert not stopped.running
    assert stopped.nics[0].link == "virbr0"  # from /etc/libvirt/qemu/networks/default.xml
    assert stopped.nics[1].details["forward_devs"] == ["eth2", "eth3"]  # from /run/libvirt/network
    with pytest.raises(TargetError):
        src.load("nope")


def test_state_files_unreadable_is_a_privilege_error(tmp_path, monkeypatch) -> None:
    run, etc = state_tree(tmp_path)

    def denied(path):
        raise PrivilegeError(f"cannot list {path}: permission denied (run as root)")

    monkeypatch.setattr("tracer.targets._host.list_dir", denied)
    src = LibvirtSource(run_dir=str(run), etc_dir=str(etc), use_python=False, use_virsh=False, runner=no_tools)
    with pytest.raises(PrivilegeError, match="permission denied"):
        src.names()


def fake_virsh(calls):
    def runner(argv, timeout=0):
        calls.append(argv)
        if argv[:2] != ["virsh", "-c"]:
            return ToolResult(error="unexpected")
        cmd = argv[3:]
        if cmd == ["list", "--all", "--name"]:
            return ToolResult(stdout="instance-00000347\nbuilder\n\n", returncode=0)
        if cmd == ["dumpxml", "instance-00000347"]:
            return ToolResult(stdout=read("instance-00000347.xml"), returncode=0)
        if cmd == ["dumpxml", "builder"]:
            return ToolResult(stdout=read("libvirt-inactive-network.xml"), returncode=0)
        if cmd == ["net-dumpxml", "default"]:
            return ToolResult(stdout=read("libvirt-net-default.xml"), returncode=0)
        return ToolResult(stderr="error: failed to get network", returncode=1, error="virsh failed: not found")
    return runner


def test_virsh(tmp_path) -> None:
    calls: list[list[str]] = []
    src = LibvirtSource(run_dir=str(tmp_path / "none"), etc_dir=str(tmp_path / "none"), use_python=False,
                        use_virsh=True, runner=fake_virsh(calls))
    assert src.names() == ["instance-00000347", "builder"]
    t = src.load("instance-00000347")
    assert t.details["source"] == "virsh -c qemu:///system" and t.nics[0].host_dev == "tap0b5f208b-76"
    b = src.load("builder")
    assert b.nics[0].link == "virbr0" and b.nics[1].link is None
    assert ["virsh", "-c", "qemu:///system", "net-dumpxml", "default"] in calls


def test_virsh_refused_is_a_privilege_error(tmp_path) -> None:
    def refused(argv, timeout=0):
        return ToolResult(stderr="error: authentication failed: access denied", returncode=1,
                          error="virsh failed: authentication failed")
    src = LibvirtSource(run_dir=str(tmp_path / "none"), etc_dir=str(tmp_path / "none"), use_python=False,
                        use_virsh=True, runner=refused)
    with pytest.raises(PrivilegeError, match="refused"):
        src.names()


def test_nothing_installed_finds_nothing(tmp_path) -> None:
    src = LibvirtSource(run_dir=str(tmp_path / "none"), etc_dir=str(tmp_path / "none"), use_python=False,
                        use_virsh=False, runner=no_tools)
    assert src.names() == []
    assert list(src.targets()) == []


class _FakeDomain:
    def __init__(self, name, xml, active):
        self._name, self._xml, self._active = name, xml, active

    def name(self):
        return self._name

    def XMLDesc(self, flags):  # noqa: N802 - libvirt's API
        return self._xml

    def isActive(self):  # noqa: N802
        return self._active


class _FakeConn:
    def __init__(self, domains, nets):
        self.domains, self.nets = domains, nets

    def listAllDomains(self, flags):  # noqa: N802
        return list(self.domains.values())

    def lookupByName(self, name):  # noqa: N802
        return self.domains[name]

    def networkLookupByName(self, name):  # noqa: N802
        return types.SimpleNamespace(XMLDesc=lambda flags: self.nets[name])

    def close(self):
        return 0


def test_libvirt_python_is_preferred_when_importable(tmp_path, monkeypatch) -> None:
    domains = {
        "instance-00000347": _FakeDomain("instance-00000347", read("instance-00000347.xml"), 1),
        "builder": _FakeDomain("builder", read("libvirt-inactive-network.xml"), 0),
    }
    fake = types.ModuleType("libvirt")
    fake.openReadOnly = lambda uri: _FakeConn(domains, {"default": read("libvirt-net-default.xml")})
    fake.registerErrorHandler = lambda handler, ctx: None
    monkeypatch.setitem(sys.modules, "libvirt", fake)
    monkeypatch.delenv("TRACEPATH_L2_NO_LIBVIRT_PYTHON", raising=False)

    def must_not_run(argv, timeout=0):
        raise AssertionError(f"virsh used although libvirt-python answered: {argv}")

    src = LibvirtSource(run_dir=str(tmp_path), etc_dir=str(tmp_path), use_virsh=True, runner=must_not_run)
    assert sorted(src.names()) == ["builder", "instance-00000347"]
    t = src.load("instance-00000347")
    assert t.running and t.details["source"] == "libvirt-python qemu:///system"
    b = src.load("builder")
    assert not b.running and b.nics[0].link == "virbr0"


def test_broken_binding_falls_back_to_virsh(tmp_path, monkeypatch) -> None:
    fake = types.ModuleType("libvirt")

    def fail(uri):
        raise RuntimeError("libvirtError: Failed to connect socket")

    fake.openReadOnly = fail
    fake.registerErrorHandler = lambda handler, ctx: None
    monkeypatch.setitem(sys.modules, "libvirt", fake)
    calls: list[list[str]] = []
    src = LibvirtSource(run_dir=str(tmp_path), etc_dir=str(tmp_path), use_virsh=True, runner=fake_virsh(calls))
    assert "instance-00000347" in src.names()
    assert calls[0][-3:] == ["list", "--all", "--name"]
