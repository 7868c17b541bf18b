"""Network namespaces and Xen domains -> Target, from recorded `ip -j` output and xl samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracer.errors import PrivilegeError, TargetError
from tracer.targets._host import ToolResult
from tracer.targets.netns import NetnsSource, netns_target, nics_from_links, parse_ip_link_json
from tracer.targets.xen import (
    XenSource,
    parse_xl_list,
    parse_xl_list_long,
    parse_xl_network_list,
    renamed_physicals,
    vif_names,
    xen_target,
)

DATA = Path(__file__).parent / "data" / "targets"


def read(name: str) -> str:
    return (DATA / name).read_text()


# ---------------------------------------------------------------- netns
def test_recorded_ip_json_of_a_netns_with_a_veth() -> None:
    links = parse_ip_link_json(read("ip-j-d-link-netns.json"))
    assert [link["ifname"] for link in links] == ["lo", "eth0"]
    t = netns_target("tl2-x-guest", links, spec="tl2-x-guest")
    (nic,) = t.nics  # loopback left out
    assert (nic.type, nic.mac, nic.guest_dev, nic.netns, nic.host_dev) == (
        "veth", "02:00:00:aa:bb:cc", "eth0", "tl2-x-guest", None)
    # what the topology walker needs to find the host end: the peer's ifindex and namespace id
    assert nic.details["peer_ifindex"] == 464 and nic.details["link_netnsid"] == 0
    assert t.running and t.details["netns"] == "tl2-x-guest"


@pytest.mark.parametrize(("link", "words"), [
    ({"ifname": "eth0", "ifindex": 2, "kind": "veth"}, "without a peer ifindex"),
    ({"ifname": "mv0", "ifindex": 3, "kind": "macvlan", "peer_ifindex": 7}, "lower device (ifindex 7)"),
    ({"ifname": "eth9", "ifindex": 4}, "moved in whole"),
])
def test_netns_link_notes(link, words) -> None:
    (nic,) = nics_from_links([link], netns="pid:1")
    assert words in nic.note


def test_only_loopback() -> None:
    t = netns_target("empty", [{"ifname": "lo", "ifindex": 1, "kind": None, "link_type": "loopback"}], spec="empty")
    assert t.nics == () and "only a loopback" in t.notes[0]


@pytest.mark.parametrize(("text", "match"), [
    ("{", "not JSON"), ("{}", "JSON list"), ("[1]", "not an object"), ('[{"ifindex": 2}]', "without a name"),
])
def test_bad_ip_json(text, match) -> None:
    with pytest.raises(TargetError, match=match):
        netns_target("x", parse_ip_link_json(text), spec="x")


def fake_host(tmp_path: Path) -> tuple[Path, Path]:
    """A /run/netns with one namespace file and a /proc with `self`, a process in that namespace,
    one sharing our own namespace, and one with a namespace of its own."""
    run = tmp_path / "netns"
    run.mkdir()
    (run / "tl2-x-guest").write_text("")
    proc = tmp_path / "proc"
    for pid in ("self", 100, 200, 300):
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(f"proc{pid}\n")
    (proc / "self" / "ns" / "net").write_text("")
    os.link(proc / "self" / "ns" / "net", proc / "200" / "ns" / "net")  # same inode: our own namespace
    os.link(run / "tl2-x-guest", proc / "100" / "ns" / "net")  # same inode as the named namespace
    (proc / "300" / "ns" / "net").write_text("")
    return run, proc


def reader_for(links):
    seen = []

    def reader(path):
        seen.append(path)
        return links

    reader.seen = seen
    return reader


def test_netns_by_name(tmp_path) -> None:
    run, proc = fake_host(tmp_path)
    reader = reader_for(parse_ip_link_json(read("ip-j-d-link-netns.json")))
    src = NetnsSource(run_dir=str(run), proc=str(proc), reader=reader)
    assert src.names() == ["tl2-x-guest"]
    t = src.load("tl2-x-guest")
    assert t.nics[0].netns == "tl2-x-guest" and reader.seen == [str(run / "tl2-x-guest")]
    with pytest.raises(TargetError):
        src.load("../etc")


def test_netns_by_pid(tmp_path) -> None:
    run, proc = fake_host(tmp_path)
    src = NetnsSource(run_dir=str(run), proc=str(proc),
                      reader=reader_for(parse_ip_link_json(read("ip-j-d-link-netns.json"))))
    t = src.lookup("pid:100")
    assert t.name == "pid:100" and t.nics[0].netns == "pid:100"
    assert t.details["netns_name"] == "tl2-x-guest" and t.details["comm"] == "proc100"
    assert src.lookup("300").details["pid"] == 300  # a bare number that is a live PID
    assert src.lookup("200") is None  # shares the host's namespace: not a guest
    assert src.lookup("999") is None  # no such process
    assert src.lookup("web1") is None
    with pytest.raises(TargetError, match="shares the host's network namespace"):
        src.lookup("pid:200")
    with pytest.raises(TargetError, match="no process with PID 999"):
        src.lookup("pid:999")


def test_netns_pid_unreadable(tmp_path) -> None:
    proc = tmp_path / "proc"
    (proc / "5").mkdir(parents=True)
    src = NetnsSource(run_dir=str(tmp_path / "none"), proc=str(proc), reader=reader_for([]))
    with pytest.raises(PrivilegeError):
        src.lookup("pid:5")
    assert src.lookup("5") is None


# ---------------------------------------------------------------- xen
def test_xl_list() -> None:
    assert parse_xl_list(read("xl-list.txt")) == [("Domain-0", 0, "r-----"), ("web01", 5, "-b----"),
                                                  ("win-build", 7, "-b----")]


def test_xl_network_list() -> None:
    rows = parse_xl_network_list(read("xl-network-list-7.txt"))
    assert [(r["devid"], r["mac"], r["be_path"]) for r in rows] == [
        (0, "00:16:3e:49:3c:1c", "/local/domain/0/backend/vif/7/0"),
        (1, "00:16:3e:49:3c:1d", "/local/domain/0/backend/vif/7/1"),
    ]


def test_xl_list_long() -> None:
    info = parse_xl_list_long(read("xl-list-l-7.json"))[7]
    assert info["type"] == "hvm" and [n["bridge"] for n in info["nics"]] == ["xenbr0", "eth1"]
    with pytest.raises(TargetError):
        parse_xl_list_long("nope")


def test_vif_names_and_peth_renames() -> None:
    names = ["lo", "eth0", "peth1", "eth1", "xenbr0", "vif7.0", "vif7.0-emu", "vif7.1", "vif12.0", "vifx.0"]
    assert vif_names(names) == {7: {0: ["vif7.0", "vif7.0-emu"], 1: ["vif7.1"]}, 12: {0: ["vif12.0"]}}
    # seed 002: network-bridge renamed the physical eth1 to peth1 and gave eth1 to a netloop stand-in
    assert renamed_physicals(names) == {"eth1": "peth1"}


def test_xen_hvm_domain_with_emulated_tap_and_renamed_physical() -> None:
    ifnames = ["vif7.0", "vif7.0-emu", "vif7.1", "eth1", "peth1"]
    nics = parse_xl_network_list(read("xl-network-list-7.txt"))
    nics += parse_xl_list_long(read("xl-list-l-7.json"))[7]["nics"]
    t = xen_target("win-build", 7, nics=nics, kernel=vif_names(ifnames)[7], dom_type="hvm",
                   renamed=renamed_physicals(ifnames))
    rows = [(n.type, n.host_dev, n.link, n.mac) for n in t.nics]
    assert rows == [("vif", "vif7.0", "xenbr0", "00:16:3e:49:3c:1c"), ("vif", "vif7.1", "eth1", "00:16:3e:49:3c:1d")]
    assert t.nics[0].details["emu_dev"] == "vif7.0-emu" and "emulated tap vif7.0-emu" in t.nics[0].note
    assert "physical NIC is peth1" in t.nics[1].note
    assert t.details == {"domid": 7, "domain_type": "hvm", "renamed_physicals": {"eth1": "peth1"}}


def fake_xl(argv, timeout=0):
    if argv == ["xl", "list"]:
        return ToolResult(stdout=read("xl-list.txt"), returncode=0)
    if argv == ["xl", "network-list", "7"]:
        return ToolResult(stdout=read("xl-network-list-7.txt"), returncode=0)
    if argv == ["xl", "list", "-l", "7"]:
        return ToolResult(stdout=read("xl-list-l-7.json"), returncode=0)
    return ToolResult(stderr="unknown", returncode=1, error="xl failed")


def sys_class_net(tmp_path: Path, names) -> str:
    for name in names:
        (tmp_path / name).mkdir()
    return str(tmp_path)


def test_xen_source_with_xl(tmp_path) -> None:
    src = XenSource(runner=fake_xl, sys_class_net=sys_class_net(tmp_path, ["vif7.0", "vif7.0-emu", "vif7.1"]),
                    use_xl=True)
    assert src.names() == ["web01", "win-build"]
    t = src.load("win-build")
    assert t.details["uuid"] == "5f4e3d2c-1b0a-4998-8776-655443322110"
    assert [n.link for n in t.nics] == ["xenbr0", "eth1"]
    assert src.lookup("7", prefixed=True).name == "win-build"
    assert src.lookup("7") is None  # a bare number is a PID unless written xen:7


def test_xen_source_from_kernel_names_only(tmp_path) -> None:
    src = XenSource(runner=fake_xl, sys_class_net=sys_class_net(tmp_path, ["vif3.0", "vif3.1", "eth0"]),
                    use_xl=False)
    assert src.names() == ["domid-3"]
    t = src.load("domid-3")
    assert [(n.host_dev, n.mac, n.link) for n in t.nics] == [("vif3.0", None, None), ("vif3.1", None, None)]


def test_xl_refused(tmp_path) -> None:
    def refused(argv, timeout=0):
        return ToolResult(stderr="ERROR: Can't open xenctrl: Permission denied", returncode=1,
                          error="xl list failed: permission denied")

    with pytest.raises(PrivilegeError, match="xl needs root"):
        XenSource(runner=refused, sys_class_net=str(tmp_path), use_xl=True).names()
