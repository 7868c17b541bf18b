"""LXD: the YAML subset parser, `lxc config show --expanded` and backup.yaml -> Target, the client."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import PrivilegeError, TargetError
from tracer.targets._host import ToolResult
from tracer.targets._yaml import parse_yaml
from tracer.targets.lxd import LxdSource, parse_lxd_list, parse_lxd_yaml

DATA = Path(__file__).parent / "data" / "targets"

try:
    import yaml as pyyaml
except ImportError:  # PyYAML is not a dependency: the comparisons below are skipped without it
    pyyaml = None


def read(name: str) -> str:
    return (DATA / name).read_text()


# ---------------------------------------------------------------- the YAML subset
YAML_CASES = [
    ("a: 1\nb: x\n", {"a": 1, "b": "x"}),
    ("a:\n  b:\n    c: d\n", {"a": {"b": {"c": "d"}}}),
    ("profiles:\n- default\n- lan\n", {"profiles": ["default", "lan"]}),
    ("profiles:\n  - default\n", {"profiles": ["default"]}),
    ("- a: 1\n  b: 2\n- c\n", [{"a": 1, "b": 2}, "c"]),
    ("- - a\n  - b\n", [["a", "b"]]),
    ("k: \"0\"\nv: '[{\"Isuid\":true}]'\n", {"k": "0", "v": '[{"Isuid":true}]'}),
    ("k: 'it''s'\n", {"k": "it's"}),
    ('k: "tab\\there \\u00e9 \\x41 \\\\ \\""\n', {"k": 'tab\there é A \\ "'}),
    ("devices: {}\nsnapshots: []\n", {"devices": {}, "snapshots": []}),
    ("f: [a, 'b c', {d: e}]\n", {"f": ["a", "b c", {"d": "e"}]}),
    ("e: false\nt: true\nn: null\nt2: ~\nempty:\n", {"e": False, "t": True, "n": None, "t2": None, "empty": None}),
    ("mac: 00:16:30:12:34:56\n", {"mac": "00:16:30:12:34:56"}),
    ("u: |\n  line1\n   indented\n\n  line3\nnext: 1\n", {"u": "line1\n indented\n\nline3\n", "next": 1}),
    ("u: |-\n  a\n  b\n", {"u": "a\nb"}),
    ("u: |+\n  a\n\n", {"u": "a\n\n"}),
    ("u: >\n  folded\n  text\n\n  para\n", {"u": "folded text\npara\n"}),
    ("# comment\n---\na: b # trailing\n...\n", {"a": "b"}),
    ("q: \"one\n  two\n\n  three\"\n", {"q": "one two\nthree"}),
    ("p: plain\n  continued\n", {"p": "plain continued"}),
    ('"quoted key": v\n', {"quoted key": "v"}),
    ("url: http://x:80/y\n", {"url": "http://x:80/y"}),
    ("", None),
]


@pytest.mark.parametrize(("text", "value"), YAML_CASES)
def test_yaml_subset(text, value) -> None:
    assert parse_yaml(text) == value


@pytest.mark.skipif(pyyaml is None, reason="PyYAML not installed")
@pytest.mark.parametrize(("text", "value"), [c for c in YAML_CASES if "00:16:30" not in c[0]])
def test_yaml_subset_agrees_with_pyyaml(text, value) -> None:
    assert pyyaml.safe_load(text) == value


@pytest.mark.parametrize(("text", "match"), [
    ("a: b\n b: c\n", "line 2"),
    ("a: &x 1\nb: *x\n", "anchors"),
    ("a: !!str 1\n", "tags"),
    ("a: 'open\n", "unterminated"),
    ("a: [1, 2\n", "unterminated flow"),
    ("a:\n\t- b\n", "tab"),
    ("---\na: 1\n---\nb: 2\n", "one plain YAML document"),
    ("a: \"\\q\"\n", "unknown escape"),
    ("a: b\n- c\n", "sequence item"),
    ("a: 'x' y\n", "text after a quoted scalar"),
    ("%YAML 1.2\n---\na: 1\n", "directives"),
])
def test_yaml_errors(text, match) -> None:
    with pytest.raises(TargetError, match=match):
        parse_yaml(text, origin="doc.yaml")


@pytest.mark.parametrize("name", ["lxd-container-bridged.yaml", "lxd-vm.yaml", "lxd-backup.yaml"])
@pytest.mark.skipif(pyyaml is None, reason="PyYAML not installed")
def test_lxd_samples_parse_like_pyyaml(name) -> None:
    # YAML 1.1 turns `created_at: 2024-03-01T10:11:12Z` into a datetime (and an unquoted
    # 00:16:30:12:34:56 into a base-60 number, see lxd-container-multi.yaml); LXD means strings.
    assert _without_times(parse_yaml(read(name))) == _without_times(pyyaml.safe_load(read(name)))


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if not str(k).endswith("_at")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


lxd_keys = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True).filter(
    lambda k: k not in ("y", "n", "yes", "no", "on", "off", "true", "false", "null") and not k.endswith(("-", ".")))
lxd_values = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9 ._/-]{0,20}", fullmatch=True).map(str.strip).filter(bool),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    st.booleans(),
    st.integers(min_value=0, max_value=10**6),
)
lxd_docs = st.recursive(
    st.dictionaries(lxd_keys, lxd_values, max_size=5),
    lambda children: st.dictionaries(lxd_keys, st.one_of(children, st.lists(lxd_values, max_size=3)), max_size=4),
    max_leaves=20,
)


@pytest.mark.skipif(pyyaml is None, reason="PyYAML not installed")
@settings(max_examples=200, deadline=None)
@given(lxd_docs)
def test_yaml_round_trip_of_go_yaml_like_documents(doc) -> None:
    text = pyyaml.safe_dump(doc, default_flow_style=False, allow_unicode=True, sort_keys=True, width=60)
    assert parse_yaml(text) == pyyaml.safe_load(text)


# ---------------------------------------------------------------- LXD configs
def test_container_on_a_managed_network() -> None:
    t = parse_lxd_yaml(read("lxd-container-bridged.yaml"), name="C-Syslog", init_pid=4242)
    assert (t.name, t.kind, t.running) == ("C-Syslog", "lxd", True)  # volatile.last_state.power: RUNNING
    assert t.details["uuid"] == "4f0b7c3e-9a1d-4e6b-8c2f-1a3b5c7d9e0f" and t.details["init_pid"] == 4242
    (nic,) = t.nics
    assert (nic.type, nic.mac, nic.host_dev, nic.link, nic.guest_dev, nic.netns) == (
        "bridged", "00:16:3e:58:0f:f4", "vethe899d39c", "lxdbr0", "eth0", "pid:4242")
    assert nic.details == {"device": "eth0", "network": "lxdbr0", "managed_network": True}
    assert "managed network 'lxdbr0'" in nic.note


def test_container_with_bridged_macvlan_and_physical_nics_stopped() -> None:
    t = parse_lxd_yaml(read("lxd-container-multi.yaml"), name="router")
    assert not t.running  # volatile.last_state.power: STOPPED
    rows = [(n.details["device"], n.type, n.mac, n.host_dev, n.link, n.mode, n.vlan_id, n.guest_dev)
            for n in t.nics]
    assert rows == [
        ("eth0", "bridged", "00:16:30:12:34:56", None, "br0", None, 2222, "eth0"),
        ("eth1", "macvlan", "00:16:3e:aa:01:02", None, "enp5s0", "bridge", None, "eth1"),
        ("eth2", "physical", "00:16:3e:aa:01:03", None, "enp6s0f1", None, None, "eth2"),
    ]
    assert "vanishes from the host" in t.nics[2].note


def test_virtual_machine_has_a_tap_and_no_netns() -> None:
    t = parse_lxd_yaml(read("lxd-vm.yaml"), name="vm1", running=True, init_pid=777)
    assert t.details["instance_type"] == "virtual-machine"
    (nic,) = t.nics
    assert (nic.host_dev, nic.link, nic.netns) == ("tap3c1b9f42", "br-lan", None)


def test_backup_yaml() -> None:
    t = parse_lxd_yaml(read("lxd-backup.yaml"), origin="backup.yaml")
    assert (t.name, t.running, t.details["status"]) == ("db1", True, "Running")
    assert t.nics[0].host_dev == "veth71a2b3c4" and t.nics[0].mac == "00:16:3e:7b:21:9c"


@pytest.mark.parametrize(("text", "match"), [
    ("- a\n- b\n", "expected a YAML mapping"),
    ("config: [a]\n", "'config' is not a mapping"),
    ("config: {}\ndevices:\n  eth0: nic\n", "device 'eth0' is not a mapping"),
    ("devices:\n  eth0:\n    type: nic\n    nictype: bridged\n    hwaddr: zz\n", "invalid MAC"),
    ("devices:\n  eth0:\n    type: nic\n    nictype: bridged\n    vlan: x\n", "vlan must be a number"),
])
def test_malformed_lxd_yaml(text, match) -> None:
    with pytest.raises(TargetError, match=match):
        parse_lxd_yaml(text, name="x", origin="x.yaml")
    with pytest.raises(TargetError, match="no instance name"):
        parse_lxd_yaml("config: {}\n", origin="x.yaml")


@pytest.mark.parametrize(("nictype", "host", "link", "words"), [
    ("p2p", "vethp2p0", None, "no bridge"),
    ("routed", "vethr0", None, "routes"),
    ("ipvlan", None, "eth0", "no DHCP"),
    ("sriov", None, "eth0", "SR-IOV"),
    ("ovn", "vethovn", None, "OVN"),
    ("frobnicate", None, None, "unknown LXD nictype"),
])
def test_other_nictypes(nictype, host, link, words) -> None:
    text = (f"config:\n  volatile.eth0.host_name: {host or ''}\ndevices:\n  eth0:\n    type: nic\n"
            f"    nictype: {nictype}\n    parent: eth0\n")
    (nic,) = parse_lxd_yaml(text, name="x", running=True).nics
    assert (nic.type, nic.host_dev, nic.link) == (nictype, host, link) and words in nic.note


def test_parse_lxd_list() -> None:
    assert parse_lxd_list("c1,RUNNING,4242\nc2,STOPPED,0\nvm1,RUNNING,\n") == {
        "c1": ("RUNNING", 4242), "c2": ("STOPPED", None), "vm1": ("RUNNING", None)}


# ---------------------------------------------------------------- the client and the files
def fake_client(tmp_path: Path):
    client = tmp_path / "lxc"
    client.write_text("#!/bin/sh\n")
    client.chmod(0o755)

    def runner(argv, timeout=0):
        if argv[1:] == ["list", "--format", "csv", "-c", "nsp"]:
            return ToolResult(stdout="C-Syslog,RUNNING,4242\nrouter,STOPPED,0\n", returncode=0)
        if argv[1:4] == ["config", "show", "--expanded"]:
            name = argv[4]
            fixture = {"C-Syslog": "lxd-container-bridged.yaml", "router": "lxd-container-multi.yaml"}.get(name)
            if fixture:
                return ToolResult(stdout=read(fixture), returncode=0)
            return ToolResult(stderr="Error: Instance not found", returncode=1, error="failed: not found")
        return ToolResult(error="unexpected")

    return str(client), runner


def test_source_uses_lxds_client(tmp_path) -> None:
    client, runner = fake_client(tmp_path)
    src = LxdSource(client=client, runner=runner, dirs=[])
    assert src.names() == ["C-Syslog", "router"]
    t = src.load("C-Syslog")
    assert t.running and t.details["init_pid"] == 4242 and t.nics[0].netns == "pid:4242"
    assert not src.load("router").running
    with pytest.raises(TargetError, match="no LXD instance"):
        src.load("nope")


def test_something_else_called_lxc_is_not_lxds_client(tmp_path) -> None:
    other = tmp_path / "lxc"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)

    def runner(argv, timeout=0):
        return ToolResult(stderr="lxc: unknown option --format", returncode=2, error="failed: unknown option")

    assert LxdSource(client=str(other), runner=runner, dirs=[]).client() is None


def test_refused_client_is_a_privilege_error(tmp_path) -> None:
    client = tmp_path / "lxc"
    client.write_text("")
    client.chmod(0o755)

    def runner(argv, timeout=0):
        return ToolResult(stderr="Error: Get \"http://unix.socket/1.0\": dial unix: permission denied",
                          returncode=1, error="failed: permission denied")

    with pytest.raises(PrivilegeError, match="lxd group"):
        LxdSource(client=str(client), runner=runner, dirs=[]).names()


def test_source_reads_backup_yaml_without_a_client(tmp_path) -> None:
    lxd_dir = tmp_path / "lxd"
    inst = lxd_dir / "storage-pools" / "default" / "containers" / "db1"
    inst.mkdir(parents=True)
    shutil.copy(DATA / "lxd-backup.yaml", inst / "backup.yaml")
    (lxd_dir / "containers").mkdir()
    (lxd_dir / "containers" / "db1").symlink_to(inst)
    proc = tmp_path / "proc"
    for pid, cmdline, ppid in ((500, f"[lxc monitor] {lxd_dir}/containers db1", 1), (501, "/sbin/init", 500)):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode())
        (proc / str(pid) / "stat").write_text(f"{pid} (init) S {ppid} 1")

    def no_tools(argv, timeout=0):
        return ToolResult(error="not installed")

    src = LxdSource(client="/nonexistent/lxc", runner=no_tools, dirs=[str(lxd_dir)], proc=str(proc))
    assert src.names() == ["db1"]
    t = src.load("db1")
    assert t.running and t.details["init_pid"] == 501 and t.nics[0].netns == "pid:501"
    assert t.details["source"].endswith("backup.yaml")


def test_no_lxd_at_all(tmp_path) -> None:
    def no_tools(argv, timeout=0):
        return ToolResult(error="not installed")

    src = LxdSource(client="/nonexistent/lxc", runner=no_tools, dirs=[str(tmp_path / "none")])
    assert src.names() == [] and list(src.targets()) == []
