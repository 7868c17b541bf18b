"""The target data model: invariants, JSON round trips, --nic selection, safe XML."""

from __future__ import annotations

import json

import pytest

from tracer.errors import ExitCode, PrivilegeError, TargetError
from tracer.targets.base import (
    Nic,
    StaticSource,
    Target,
    is_uuid,
    netns_path,
    normalize_mac,
    parse_int,
    parse_xml,
    select_nic,
    uuid_key,
)


def two_nic_target() -> Target:
    return Target(
        name="web1", kind="lxc", running=True,
        nics=(
            Nic(mac="00:16:3E:5D:0A:73", host_dev="b78dc1c8_eth0", link="lxcbr0", type="veth", guest_dev="eth0",
                netns="pid:42", details={"index_name": "net0"}),
            Nic(mac="00:16:3e:2e:f3:8f", host_dev="b78dc1c8_eno1", link="br-mgmt", type="veth", guest_dev="eno1",
                netns="pid:42", details={"index_name": "net1"}),
        ),
        details={"init_pid": 42},
    )


@pytest.mark.parametrize(("text", "mac"), [
    ("fa:16:3e:56:ea:fa", "fa:16:3e:56:ea:fa"),
    ("FA:16:3E:56:EA:FA", "fa:16:3e:56:ea:fa"),
    ("fa-16-3e-56-ea-fa", "fa:16:3e:56:ea:fa"),
    ("fa163e56eafa", "fa:16:3e:56:ea:fa"),
    (" fa:16:3e:56:ea:fa ", "fa:16:3e:56:ea:fa"),
    ("fa:16:3e:56:ea", None),
    ("fa:16-3e:56:ea:fa", None),
    ("00:16:3e:xx:xx:xx", None),
    ("instance-00000347", None),
    (None, None),
    (42, None),
])
def test_normalize_mac(text, mac) -> None:
    assert normalize_mac(text) == mac


def test_uuid_helpers() -> None:
    assert is_uuid("6a7e8f3c-2b1d-4f5e-9c8a-0d1e2f3a4b5c")
    assert is_uuid("4A1C2B3D4E5F60718293A4B5C6D7E8F9")
    assert not is_uuid("instance-00000347")
    assert uuid_key("6A7E8F3C-2b1d-4f5e-9c8a-0d1e2f3a4b5c") == "6a7e8f3c2b1d4f5e9c8a0d1e2f3a4b5c"


@pytest.mark.parametrize(("spec", "path"), [
    ("pid:1234", "/proc/1234/ns/net"),
    ("tl2-lab-guest", "/run/netns/tl2-lab-guest"),
    ("/proc/1/ns/net", "/proc/1/ns/net"),
    (None, None),
    ("", None),
])
def test_netns_path(spec, path) -> None:
    assert netns_path(spec) == path


def test_nic_normalises_and_checks() -> None:
    nic = Nic(mac="FA-16-3E-56-EA-FA", type="bridge")
    assert nic.mac == "fa:16:3e:56:ea:fa"
    with pytest.raises(ValueError):
        Nic(mac="not-a-mac")
    with pytest.raises(ValueError):
        Nic(vlan_id=4096)
    with pytest.raises(ValueError):
        Nic(type="")


@pytest.mark.parametrize(("nic_type", "sniffable"), [
    ("bridge", True), ("direct", True), ("veth", True), ("vif", True),
    ("vhostuser", False), ("user", False), ("hostdev", False), ("empty", False), ("none", False),
])
def test_sniffable(nic_type, sniffable) -> None:
    assert Nic(type=nic_type).sniffable is sniffable


def test_target_checks_kind_and_name() -> None:
    with pytest.raises(ValueError):
        Target(name="", kind="lxc")
    with pytest.raises(ValueError):
        Target(name="x", kind="docker")


def test_target_round_trips_through_json() -> None:
    target = two_nic_target()
    data = json.loads(json.dumps(target.to_dict()))
    assert data["kind"] == "lxc" and data["nics"][0]["mac"] == "00:16:3e:5d:0a:73"
    assert Target.from_dict(data) == target
    assert target.label == "lxc:web1"
    assert target.with_details(matched_by="name").details == {"init_pid": 42, "matched_by": "name"}


@pytest.mark.parametrize(("spec", "host_dev"), [
    ("00:16:3e:2e:f3:8f", "b78dc1c8_eno1"),
    ("00-16-3E-2E-F3-8F", "b78dc1c8_eno1"),
    ("eno1", "b78dc1c8_eno1"),
    ("b78dc1c8_eth0", "b78dc1c8_eth0"),
    ("net1", "b78dc1c8_eno1"),
])
def test_select_nic_by_spec(spec, host_dev) -> None:
    (nic,) = select_nic(two_nic_target(), spec)
    assert nic.host_dev == host_dev


def test_to_guest() -> None:
    target = two_nic_target().with_details(matched_by="prefix")
    guest = target.to_guest(target.nics[1])
    assert (guest.name, guest.kind, guest.mac, guest.nic) == ("web1", "lxc", "00:16:3e:2e:f3:8f", "eno1")
    assert guest.details == {"init_pid": 42, "matched_by": "prefix", "netns": "pid:42"}
    assert target.to_guest().mac is None


def test_select_nic_without_spec_returns_every_nic() -> None:
    assert len(select_nic(two_nic_target(), None)) == 2
    assert len(select_nic(two_nic_target(), "  ")) == 2


def test_select_nic_unknown_lists_the_nics() -> None:
    with pytest.raises(TargetError, match="eth0/b78dc1c8_eth0/00:16:3e:5d:0a:73"):
        select_nic(two_nic_target(), "eth7")


def test_select_nic_ambiguous() -> None:
    target = Target(name="x", kind="netns", nics=(Nic(guest_dev="eth0", type="veth"),
                                                  Nic(guest_dev="eth0", type="macvlan")))
    with pytest.raises(TargetError, match="matches 2 NICs"):
        select_nic(target, "eth0")


def test_select_nic_without_nics() -> None:
    with pytest.raises(TargetError, match="no network interface"):
        select_nic(Target(name="x", kind="lxc"), None)


@pytest.mark.parametrize("text", [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><domain/>',
    '<!DOCTYPE domain SYSTEM "file:///etc/passwd"><domain/>',
    '<domain><name>&xxe;</name></domain><!ENTITY x "y">',
    '<!doctype domain><domain/>',
])
def test_parse_xml_refuses_entity_declarations(text) -> None:
    with pytest.raises(TargetError, match="DOCTYPE or ENTITY"):
        parse_xml(text, origin="x.xml")


def test_parse_xml_reports_line_and_column() -> None:
    with pytest.raises(TargetError, match=r"x\.xml: line 4, column \d+: malformed XML \(mismatched tag\)"):
        parse_xml("<domain>\n  <name>a</name>\n  <uuid>\n</domain>", origin="x.xml")


def test_parse_xml_undefined_entity_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="line 1"):
        parse_xml("<domain><name>&xxe;</name></domain>", origin="x.xml")


def test_parse_int() -> None:
    assert parse_int(" 42 ", what="vlan", origin="f:1", low=0, high=4095) == 42
    with pytest.raises(TargetError, match="f:1: vlan must be a number"):
        parse_int("4x", what="vlan", origin="f:1")
    with pytest.raises(TargetError, match="out of range"):
        parse_int("5000", what="vlan", origin="f:1", low=0, high=4095)


def test_target_errors_exit_2_and_privilege_errors_exit_4() -> None:
    assert TargetError("x").exit_code == ExitCode.USAGE == 2
    assert PrivilegeError("x").exit_code == ExitCode.PRIVILEGES == 4


def test_static_source() -> None:
    src = StaticSource([two_nic_target()])
    assert src.kind == "lxc" and src.names() == ["web1"]
    assert src.load("web1").name == "web1"
    with pytest.raises(TargetError):
        src.load("nope")
    assert [t.name for t in src.targets()] == ["web1"]
