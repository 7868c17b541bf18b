"""LXC configs -> Target: modern and legacy keys, includes (seed 000), every network type, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import PrivilegeError, TargetError
from tracer.targets._host import ToolResult
from tracer.targets.lxc import (
    DictFileSystem,
    LxcSource,
    parse_lxc_config,
    parse_lxc_info,
    read_config,
    split_config,
)

DATA = Path(__file__).parent / "data" / "targets"
AIO1 = "aio1_cinder_api_container-b78dc1c8"
AIO1_DIR = f"/var/lib/lxc/{AIO1}"


def parse(text: str, **kw):
    return parse_lxc_config(split_config(text, origin="config"), name=kw.pop("name", "c1"), **kw)


def aio1_fs() -> DictFileSystem:
    return DictFileSystem({f"{AIO1_DIR}/{n}": (DATA / "lxc-aio1" / n).read_text()
                           for n in ("config", "eno1.ini", "eno2.ini")})


def no_tools(argv, timeout=0):
    return ToolResult(error=f"{argv[0]} is not installed")


# ---------------------------------------------------------------- seed 000: legacy keys + lxc.include eno1.ini
def test_seed_000_legacy_keys_with_includes() -> None:
    src = LxcSource(["/var/lib/lxc"], fs=aio1_fs(), use_tools=False, proc="/nonexistent")
    assert src.names() == [AIO1]
    t = src.load(AIO1)
    assert (t.kind, t.running) == ("lxc", False)
    rows = [(n.type, n.guest_dev, n.host_dev, n.link, n.mac) for n in t.nics]
    assert rows == [
        ("veth", "eth0", "b78dc1c8_eth0", "lxcbr0", "00:16:3e:5d:0a:73"),
        ("veth", "eno1", "b78dc1c8_eno1", "br-mgmt", "00:16:3e:2e:f3:8f"),
        ("veth", "eno2", "b78dc1c8_eno2", "br-storage", "00:16:3e:62:7c:11"),
    ]
    assert t.nics[1].details["config"] == f"{AIO1_DIR}/eno1.ini:2"
    assert all(n.details["legacy"] for n in t.nics)
    assert t.details["includes"] == [f"{AIO1_DIR}/eno1.ini", f"{AIO1_DIR}/eno2.ini"]
    assert t.details["hostname"] == "aio1-cinder-api-container-b78dc1c8"
    assert any("centos.common.conf does not exist" in n for n in t.notes)
    assert any("legacy lxc.network" in n for n in t.notes)


def test_legacy_type_starts_a_new_nic() -> None:
    t = parse("lxc.network.type = veth\nlxc.network.link = br0\nlxc.network.type = macvlan\n"
              "lxc.network.macvlan.mode = bridge\nlxc.network.link = eth1\n")
    assert [(n.type, n.link, n.mode) for n in t.nics] == [("veth", "br0", "bridge"), ("macvlan", "eth1", "bridge")]


def test_legacy_key_before_type_is_an_error() -> None:
    with pytest.raises(TargetError, match=r"config:2: lxc.network.link before any lxc.network.type"):
        parse("# net\nlxc.network.link = br0\nlxc.network.type = veth\n")


def test_legacy_indexed_form_of_lxc_2_1() -> None:
    t = parse("lxc.network.0.type = veth\nlxc.network.0.link = br0\nlxc.network.0.veth.pair = p0\n")
    assert [(n.type, n.host_dev, n.link) for n in t.nics] == [("veth", "p0", "br0")]


# ---------------------------------------------------------------- modern keys, recorded from LXC 5.0.2
def test_recorded_lxc5_config_running_with_lxc_info() -> None:
    text = (DATA / "lxc5-busybox-config").read_text()
    info = parse_lxc_info((DATA / "lxc5-info-H.txt").read_text())
    assert (info.state, info.pid, info.links) == ("RUNNING", 8264, ("vethwxH5Kb", "tgrec-c1e1"))
    t = parse_lxc_config(split_config(text, origin="config"), name="tgrec-c1", running=True,
                         init_pid=info.pid, runtime_links=info.links)
    assert t.details["init_pid"] == 8264 and t.details["hostname"] == "tgrec-c1"
    rows = [(n.type, n.mac, n.host_dev, n.link, n.guest_dev, n.netns) for n in t.nics]
    assert rows == [
        # unnamed pair: LXC chose vethwxH5Kb at start, lxc-info's Link: line names it
        ("veth", "00:16:3e:aa:bb:01", "vethwxH5Kb", "tgrec-br", None, "pid:8264"),
        ("veth", "00:16:3e:aa:bb:02", "tgrec-c1e1", "tgrec-br", "eth1", "pid:8264"),
    ]
    assert not any(n.details["legacy"] for n in t.nics)


def test_unnamed_veth_running_points_at_the_netns() -> None:
    t = parse("lxc.net.0.type = veth\nlxc.net.0.link = br0\n", running=True, init_pid=99)
    (nic,) = t.nics
    assert nic.host_dev is None and nic.netns == "pid:99"
    assert "peer ifindex in pid:99" in nic.note


def test_unnamed_veth_stopped() -> None:
    t = parse("lxc.net.0.type = veth\nlxc.net.0.link = br0\n")
    assert "not running" in t.nics[0].note and t.nics[0].netns is None
    assert any("not running" in n for n in t.notes)


def test_modern_indices_are_ordered_numerically_and_cleared() -> None:
    t = parse("lxc.net.10.type = veth\nlxc.net.10.link = b10\nlxc.net.2.type = veth\nlxc.net.2.link = b2\n")
    assert [n.link for n in t.nics] == ["b2", "b10"]
    assert [n.details["index_name"] for n in t.nics] == ["net2", "net10"]
    assert parse("lxc.net.0.type = veth\nlxc.net =\nlxc.net.1.type = empty\n").nics[0].type == "empty"
    assert len(parse("lxc.net.0.type = veth\nlxc.net.0 =\n").nics) == 0


def test_later_value_wins_and_empty_value_clears() -> None:
    t = parse("lxc.net.0.type = veth\nlxc.net.0.link = a\nlxc.net.0.link = b\nlxc.net.0.veth.pair = p\n"
              "lxc.net.0.veth.pair =\n")
    assert t.nics[0].link == "b" and t.nics[0].host_dev is None


# ---------------------------------------------------------------- every network type (seed 003)
TYPES = [
    ("lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.veth.pair = v0\nlxc.net.0.veth.vlan.id = 10\n"
     "lxc.net.0.veth.vlan.tagged.id = 20\nlxc.net.0.veth.vlan.tagged.id = 30\n",
     ("veth", "v0", "lxcbr0", "bridge", 10), "vlan_tagged", [20, 30]),
    ("lxc.net.0.type = veth\nlxc.net.0.veth.mode = router\nlxc.net.0.veth.pair = r0\n",
     ("veth", "r0", None, "router", None), None, "router mode"),
    ("lxc.net.0.type = macvlan\nlxc.net.0.macvlan.mode = bridge\nlxc.net.0.link = lxcbr1\n",
     ("macvlan", None, "lxcbr1", "bridge", None), None, "macvlan (bridge) on lxcbr1"),
    ("lxc.net.0.type = macvlan\nlxc.net.0.link = eth0\n",
     ("macvlan", None, "eth0", "private", None), None, "macvlan (private)"),
    ("lxc.net.0.type = ipvlan\nlxc.net.0.link = eth0\n",
     ("ipvlan", None, "eth0", "l3", None), None, "DHCP cannot work"),
    ("lxc.net.0.type = vlan\nlxc.net.0.link = eth0\nlxc.net.0.vlan.id = 10\n",
     ("vlan", None, "eth0", None, 10), None, "VLAN 10 device on eth0"),
    ("lxc.net.0.type = phys\nlxc.net.0.link = eth2\n",
     ("phys", None, "eth2", None, None), None, "moved into the container"),
    ("lxc.net.0.type = empty\n", ("empty", None, None, None, None), None, "only has a loopback"),
    ("lxc.net.0.type = none\n", ("none", None, None, None, None), None, "shares the host's network namespace"),
    # the seed's legacy spellings of the same types
    ("lxc.network.type = vlan\nlxc.network.flags = up\nlxc.network.link = eth0\nlxc.network.vlan.id = 10\n"
     "lxc.network.hwaddr = 00:16:3e:fd:84:da\n", ("vlan", None, "eth0", None, 10), None, "VLAN 10"),
    ("lxc.network.type = phys\nlxc.network.hwaddr = 08:00:27:f9:8f:2e\nlxc.network.flags = up\n"
     "lxc.network.link = eth2\nlxc.network.ipv4 = 192.168.1.135/24\nlxc.network.ipv4.gateway = 192.168.1.254\n",
     ("phys", None, "eth2", None, None), "ipv4", ["192.168.1.135/24"]),
    ("lxc.network.type = none\nlxc.network.flags = up\nlxc.network.hwaddr = 00:16:3e:0c:42:31\n",
     ("none", None, None, None, None), None, "host's network namespace"),
]


@pytest.mark.parametrize(("text", "row", "detail", "expect"), TYPES)
def test_network_types(text, row, detail, expect) -> None:
    (nic,) = parse(text, running=True, init_pid=7).nics
    assert (nic.type, nic.host_dev, nic.link, nic.mode, nic.vlan_id) == row
    if detail:
        assert nic.details[detail] == expect
    else:
        assert expect in nic.note
    assert nic.netns == (None if nic.type == "none" else "pid:7")


def test_hwaddr_template_is_not_a_mac() -> None:
    (nic,) = parse("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\n").nics
    assert nic.mac is None and nic.details["hwaddr_template"] == "00:16:3e:xx:xx:xx"


def test_nic_without_type() -> None:
    (nic,) = parse("lxc.net.0.link = br0\n").nics
    assert nic.type == "unset" and "no type" in nic.note


# ---------------------------------------------------------------- malformed lines
@pytest.mark.parametrize(("text", "match"), [
    ("lxc.net.0.type = veth\nthis is not a config line\n", r"config:2: not a 'key = value' line"),
    ("lxc.net.0.type veth\n", r"config:1: not a 'key = value' line"),
    ("= veth\n", r"config:1: not a 'key = value' line"),
    ("net.0.type = veth\n", r"config:1: unknown key 'net.0.type'"),
    ("lxc.net.x.type = veth\n", r"config:1: lxc.net.x.type: the NIC index must be a number"),
    ("lxc.net.0.type = tun\n", r"config:1: unknown network type 'tun'"),
    ("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:zz:00:01\n", r"config:2: invalid MAC"),
    ("lxc.net.0.type = vlan\nlxc.net.0.vlan.id = ten\n", r"config:2: vlan.id must be a number"),
    ("lxc.net.0.type = vlan\nlxc.net.0.vlan.id = 5000\n", r"config:2: vlan.id 5000 is out of range"),
    ("lxc.net.0.type = veth\nlxc.net.0.veth.vlan.tagged.id = x\n", r"config:2: veth.vlan.tagged.id"),
])
def test_malformed_lines(text, match) -> None:
    with pytest.raises(TargetError, match=match):
        parse(text)


# ---------------------------------------------------------------- includes
def test_include_cycle_names_the_line_and_chain() -> None:
    fs = DictFileSystem({
        "/c/config": "lxc.net.0.type = veth\nlxc.include = /c/a.conf\n",
        "/c/a.conf": "# a\nlxc.include = /c/b.conf\n",
        "/c/b.conf": "lxc.include = /c/a.conf\n",
    })
    with pytest.raises(TargetError, match=r"/c/b.conf:1: lxc.include cycle: /c/a.conf -> /c/b.conf -> /c/a.conf"):
        read_config("/c/config", fs=fs)


def test_self_include_is_a_cycle() -> None:
    fs = DictFileSystem({"/c/config": "lxc.include = /c/config\n"})
    with pytest.raises(TargetError, match="cycle"):
        read_config("/c/config", fs=fs)


def test_diamond_include_is_not_a_cycle() -> None:
    fs = DictFileSystem({
        "/c/config": "lxc.include = /c/a.conf\nlxc.include = /c/b.conf\n",
        "/c/a.conf": "lxc.include = /c/common.conf\n",
        "/c/b.conf": "lxc.include = /c/common.conf\n",
        "/c/common.conf": "lxc.arch = x86_64\n",
    })
    assert [ln.key for ln in read_config("/c/config", fs=fs).lines] == ["lxc.arch", "lxc.arch"]


def test_include_directory_reads_conf_files_in_order(tmp_path) -> None:
    inc = tmp_path / "net.d"
    inc.mkdir()
    (inc / "20-eth1.conf").write_text("lxc.net.1.type = veth\nlxc.net.1.link = b1\n")
    (inc / "10-eth0.conf").write_text("lxc.net.0.type = veth\nlxc.net.0.link = b0\n")
    (inc / "README").write_text("not a config")
    (inc / ".conf").write_text("lxc.net.9.type = veth\n")  # LXC wants at least one char before .conf
    (tmp_path / "config").write_text(f"lxc.include = {inc}\n")
    text = read_config(str(tmp_path / "config"))
    t = parse_lxc_config(text.lines, name="c")
    assert [n.link for n in t.nics] == ["b0", "b1"]
    assert text.files[1:] == [str(inc / "10-eth0.conf"), str(inc / "20-eth1.conf")]


def test_relative_include_is_taken_from_the_including_file(tmp_path) -> None:
    (tmp_path / "eno1.ini").write_text("lxc.network.type = veth\nlxc.network.link = br-mgmt\n")
    (tmp_path / "config").write_text("lxc.include = eno1.ini\n")
    t = parse_lxc_config(read_config(str(tmp_path / "config")).lines, name="c")
    assert t.nics[0].link == "br-mgmt"


def test_include_depth_is_bounded() -> None:
    files = {f"/c/{i}.conf": f"lxc.include = /c/{i + 1}.conf\n" for i in range(40)}
    with pytest.raises(TargetError, match="nested deeper"):
        read_config("/c/0.conf", fs=DictFileSystem(files))


def test_missing_config_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="no such LXC config"):
        read_config("/nope/config", fs=DictFileSystem({}))


def test_unreadable_config_is_a_privilege_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "config").write_text("lxc.net.0.type = veth\n")

    def denied(path, limit=0):
        raise PrivilegeError(f"cannot read {path}: permission denied (run as root)")

    monkeypatch.setattr("tracer.targets._host.read_file", denied)
    with pytest.raises(PrivilegeError):
        read_config(str(tmp_path / "config"))


# ---------------------------------------------------------------- lxc-info and the host
def test_parse_lxc_info_stopped_and_missing() -> None:
    assert parse_lxc_info("Name:           c1\nState:          STOPPED\n").pid is None
    assert parse_lxc_info("c1 doesn't exist\n").state is None


def fake_lxc_tools(lxcpath: str, infos: dict[str, str]):
    calls = []

    def runner(argv, timeout=0):
        calls.append(argv)
        if argv == ["lxc-config", "lxc.lxcpath"]:
            return ToolResult(stdout=f"{lxcpath}\n", returncode=0)
        if argv[0] == "lxc-info":
            text = infos.get(argv[2])
            if text is None:
                return ToolResult(stderr=f"{argv[2]} doesn't exist", returncode=1, error="lxc-info failed")
            return ToolResult(stdout=text, returncode=0)
        return ToolResult(error="unexpected")

    runner.calls = calls
    return runner


def test_source_with_lxc_tools(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TRACEPATH_L2_LXCPATH", raising=False)
    monkeypatch.setattr("tracer.targets.lxc.DEFAULT_LXCPATH", str(tmp_path / "default"))
    lxcpath = tmp_path / "lxc"
    (lxcpath / "tgrec-c1").mkdir(parents=True)
    (lxcpath / "tgrec-c1" / "config").write_text((DATA / "lxc5-busybox-config").read_text())
    (lxcpath / "stopped").mkdir()
    (lxcpath / "stopped" / "config").write_text("lxc.net.0.type = veth\nlxc.net.0.veth.pair = s0\n")
    (lxcpath / "not-a-container").mkdir()
    runner = fake_lxc_tools(str(lxcpath), {"tgrec-c1": (DATA / "lxc5-info-H.txt").read_text()})
    src = LxcSource(runner=runner, proc="/nonexistent")
    assert src.lxcpaths()[0] == str(lxcpath)
    assert sorted(src.names()) == ["stopped", "tgrec-c1"]
    t = src.load("tgrec-c1")
    assert t.running and t.details["init_pid"] == 8264 and t.details["lxcpath"] == str(lxcpath)
    assert t.nics[0].host_dev == "vethwxH5Kb"
    s = src.load("stopped")
    assert not s.running and s.nics[0].host_dev == "s0"
    with pytest.raises(TargetError):
        src.load("not-a-container")


def test_source_finds_init_pid_in_proc_without_lxc_info(tmp_path) -> None:
    lxcpath = tmp_path / "lxc"
    (lxcpath / "c1").mkdir(parents=True)
    (lxcpath / "c1" / "config").write_text("lxc.net.0.type = veth\nlxc.net.0.link = br0\n")
    proc = tmp_path / "proc"
    for pid, cmdline, ppid in ((8263, f"[lxc monitor] {lxcpath} c1", 1), (8264, "init", 8263),
                               (8265, "/bin/sh /etc/init.d/rcS", 8264), (9000, f"[lxc monitor] {lxcpath} c2", 1)):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")
        (proc / str(pid) / "stat").write_text(f"{pid} (x y) S {ppid} 1 1 0")
    src = LxcSource([str(lxcpath)], runner=no_tools, proc=str(proc), use_tools=False)
    t = src.load("c1")
    assert t.running and t.details["init_pid"] == 8264 and t.nics[0].netns == "pid:8264"


def test_env_lxcpath_and_missing_dirs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRACEPATH_L2_LXCPATH", f"{tmp_path}/a:{tmp_path}/b")
    src = LxcSource(runner=no_tools, use_tools=True)
    assert src.lxcpaths() == [f"{tmp_path}/a", f"{tmp_path}/b", "/var/lib/lxc"]
    assert LxcSource([str(tmp_path / "none")], runner=no_tools).names() == []
    extra = LxcSource(extra=[f"{tmp_path}/x"], runner=no_tools, use_tools=False)
    assert extra.lxcpaths() == [f"{tmp_path}/x", f"{tmp_path}/a", f"{tmp_path}/b", "/var/lib/lxc"]
