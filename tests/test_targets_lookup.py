"""find_target: name, prefix, digits suffix, UUID, nova UUID, MAC, PID; ambiguity and suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import find_target, list_names, split_query
from tracer.targets.base import Nic, Source, StaticSource, Target
from tracer.targets.libvirt import parse_domain_xml
from tracer.targets.lxc import DictFileSystem, LxcSource
from tracer.targets.lxd import parse_lxd_yaml

DATA = Path(__file__).parent / "data" / "targets"


def read(name: str) -> str:
    return (DATA / name).read_text()


def libvirt_source() -> StaticSource:
    return StaticSource([parse_domain_xml(read(f)) for f in (
        "instance-00000347.xml", "libvirt9-live-multi.xml", "libvirt9-live-vhostuser.xml")], kind="libvirt")


def lxc_source() -> StaticSource:
    return StaticSource([
        Target(name="web1", kind="lxc", nics=(Nic(mac="00:16:3e:00:00:01", host_dev="web1_eth0", link="lxcbr0",
                                                   type="veth"),)),
        Target(name="web2", kind="lxc", nics=(Nic(mac="00:16:3e:00:00:02", host_dev="web2_eth0", link="lxcbr0",
                                                   type="veth"),)),
        Target(name="db-07", kind="lxc", nics=(Nic(mac="00:16:3e:00:00:07", type="veth"),)),
    ], kind="lxc")


def lxd_source() -> StaticSource:
    return StaticSource([parse_lxd_yaml(read("lxd-container-bridged.yaml"), name="c-syslog")], kind="lxd")


def sources() -> list[Source]:
    return [libvirt_source(), lxc_source(), lxd_source()]


FOUND = [
    # query, label, matched_by
    ("instance-00000347", "libvirt:instance-00000347", "name"),
    ("instance-0347", "libvirt:instance-00000347", "digits"),  # nova's instance-%08x, shortened
    ("instance-347", "libvirt:instance-00000347", "digits"),
    ("instance-000003", "libvirt:instance-00000347", "prefix"),
    ("INSTANCE-0000034", "libvirt:instance-00000347", "prefix"),
    ("tgrec-abc", "libvirt:tgrec-00000abc", "digits"),  # hex: nova numbers are %08x
    ("347", "libvirt:instance-00000347", "digits"),
    ("6a7e8f3c-2b1d-4f5e-9c8a-0d1e2f3a4b5c", "libvirt:instance-00000347", "uuid"),  # domain UUID = nova UUID
    ("6A7E8F3C2B1D4F5E9C8A0D1E2F3A4B5C", "libvirt:instance-00000347", "uuid"),
    ("0b5f208b-7611-4c1e-a1e8-5d3f0e2c9a41", "libvirt:instance-00000347", "uuid"),  # its neutron port
    ("3c9d0f1e-5b6a-4c2d-8e7f-0a1b2c3d4e5f", "libvirt:tgrec-00000abc", "uuid"),
    ("4f0b7c3e-9a1d-4e6b-8c2f-1a3b5c7d9e0f", "lxd:c-syslog", "uuid"),  # LXD volatile.uuid
    ("6a7e8f3c", "libvirt:instance-00000347", "uuid_prefix"),
    ("52:54:00:12:34:02", "libvirt:tgrec-00000abc", "mac"),
    ("52-54-00-3B-83-1A", "libvirt:tgrec-vhu", "mac"),
    ("00:16:3e:58:0f:f4", "lxd:c-syslog", "mac"),
    ("web-frontend-2", "libvirt:instance-00000347", "nova_name"),  # nova display name
    ("web1_eth0", "lxc:web1", "host_dev"),
    ("vethe899d39c", "lxd:c-syslog", "host_dev"),
    ("db-7", "lxc:db-07", "digits"),
    ("lxc:web1", "lxc:web1", "name"),
    ("lxd:c-sys", "lxd:c-syslog", "prefix"),
    ("  web2  ", "lxc:web2", "name"),
]


@pytest.mark.parametrize(("query", "label", "how"), FOUND)
def test_found(query, label, how) -> None:
    target = find_target(query, sources=sources())
    assert (target.label, target.details["matched_by"]) == (label, how)
    assert target.details["query"] == split_query(query)[1]


AMBIGUOUS = [
    ("web", ["lxc:web1", "lxc:web2"]),
    ("tgrec", ["libvirt:tgrec-00000abc", "libvirt:tgrec-vhu"]),
    # the recorded domain reuses the seed's MAC and tap name, so both match
    ("fa:16:3e:56:ea:fa", ["libvirt:instance-00000347", "libvirt:tgrec-00000abc"]),
    ("tap0b5f208b-76", ["libvirt:instance-00000347", "libvirt:tgrec-00000abc"]),
]


@pytest.mark.parametrize(("query", "labels"), AMBIGUOUS)
def test_ambiguous_lists_the_matches(query, labels) -> None:
    with pytest.raises(TargetError, match="is ambiguous") as err:
        find_target(query, sources=sources())
    for label in labels:
        assert label in str(err.value)
    assert err.value.exit_code == 2


def test_same_name_in_two_sources_is_ambiguous_until_prefixed() -> None:
    twin = StaticSource([Target(name="web1", kind="lxd")], kind="lxd")
    with pytest.raises(TargetError, match="lxc:web1, lxd:web1"):
        find_target("web1", sources=[lxc_source(), twin])
    assert find_target("lxd:web1", sources=[lxc_source(), twin]).kind == "lxd"


def test_prefix_of_one_and_digits_of_another_is_ambiguous() -> None:
    src = StaticSource([Target(name="instance-00000347", kind="libvirt"),
                        Target(name="instance-0347-old", kind="libvirt")], kind="libvirt")
    with pytest.raises(TargetError, match="instance-00000347, libvirt:instance-0347-old"):
        find_target("instance-0347", sources=[src])


def test_digits_suffix_ambiguous() -> None:
    src = StaticSource([Target(name="instance-00000347", kind="libvirt"), Target(name="vm-347", kind="libvirt")],
                       kind="libvirt")
    with pytest.raises(TargetError, match="ambiguous"):
        find_target("347", sources=[src])


@pytest.mark.parametrize(("query", "suggestion"), [
    ("instanse-00000347", "instance-00000347"),
    ("instance-00000348", "instance-00000347"),
    ("wbe1", "web1"),
    ("c-syslgo", "c-syslog"),
])
def test_unknown_suggests_the_closest_names(query, suggestion) -> None:
    with pytest.raises(TargetError, match=f"did you mean .*{suggestion}") as err:
        find_target(query, sources=sources())
    assert "searched libvirt (3), lxc (3), lxd (1)" in str(err.value)


def test_unknown_without_anything_close() -> None:
    with pytest.raises(TargetError, match="no VM, container or namespace matches 'zzzz'") as err:
        find_target("zzzz", sources=sources())
    assert "did you mean" not in str(err.value)


def test_unknown_mac_and_uuid() -> None:
    with pytest.raises(TargetError, match="a NIC with MAC 02:00:00:00:00:99"):
        find_target("02:00:00:00:00:99", sources=sources())
    with pytest.raises(TargetError, match="a UUID"):
        find_target("00000000-0000-4000-8000-000000000000", sources=sources())


def test_empty_query_and_unknown_kind() -> None:
    with pytest.raises(TargetError, match="no target given"):
        find_target("  ", sources=sources())
    with pytest.raises(TargetError, match="no xen source"):
        find_target("xen:5", sources=sources())


def test_split_query() -> None:
    assert split_query("lxc:web1") == ("lxc", "web1")
    assert split_query("pid:42") == ("netns", "pid:42")
    assert split_query("fa:16:3e:56:ea:fa") == (None, "fa:16:3e:56:ea:fa")
    assert split_query("lxc:") == (None, "lxc:")


class _PidSource(Source):
    kind = "netns"

    def names(self):
        return ["tl2-a-guest"]

    def load(self, name):
        return Target(name=name, kind="netns", running=True)

    def lookup(self, query, *, prefixed=False):
        if query in ("347", "pid:347", "4242", "pid:4242"):
            return Target(name=f"pid:{query.split(':')[-1]}", kind="netns", running=True)
        return None


def test_pid_lookup() -> None:
    t = find_target("4242", sources=[libvirt_source(), _PidSource()])
    assert (t.name, t.details["matched_by"]) == ("pid:4242", "pid")
    assert find_target("pid:347", sources=[libvirt_source(), _PidSource()]).name == "pid:347"


def test_bare_number_that_is_a_pid_and_a_digits_suffix_is_ambiguous() -> None:
    with pytest.raises(TargetError, match="write pid:347 for the process") as err:
        find_target("347", sources=[libvirt_source(), _PidSource()])
    assert "libvirt:instance-00000347" in str(err.value) and "netns:pid:347" in str(err.value)


class _DeniedSource(Source):
    kind = "lxc"

    def names(self):
        raise PrivilegeError("cannot list /var/lib/lxc: permission denied (run as root)")


def test_unknown_with_an_unreadable_source_is_a_privilege_error() -> None:
    with pytest.raises(PrivilegeError, match="could not read: cannot list /var/lib/lxc") as err:
        find_target("web9", sources=[libvirt_source(), _DeniedSource()])
    assert err.value.exit_code == 4
    # a match elsewhere still wins
    assert find_target("instance-0347", sources=[libvirt_source(), _DeniedSource()]).name == "instance-00000347"


def test_malformed_config_of_the_named_target_is_reported_with_file_and_line() -> None:
    fs = DictFileSystem({
        "/lxc/good/config": "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:00:00:01\n",
        "/lxc/bad/config": "lxc.net.0.type = veth\nlxc.net.0 type veth\n",
    })
    src = LxcSource(["/lxc"], fs=fs, use_tools=False, proc="/nonexistent")
    with pytest.raises(TargetError, match=r"/lxc/bad/config:2: not a 'key = value' line"):
        find_target("bad", sources=[src])
    # a MAC search skips the broken one and still finds the good one
    assert find_target("00:16:3e:00:00:01", sources=[src]).name == "good"
    with pytest.raises(TargetError, match=r"skipped unreadable: lxc:bad: /lxc/bad/config:2"):
        find_target("00:16:3e:00:00:99", sources=[src])


def test_include_cycle_through_find_target() -> None:
    fs = DictFileSystem({"/lxc/loop/config": "lxc.include = /lxc/loop/net.conf\n",
                         "/lxc/loop/net.conf": "lxc.include = /lxc/loop/config\n"})
    src = LxcSource(["/lxc"], fs=fs, use_tools=False, proc="/nonexistent")
    with pytest.raises(TargetError, match=r"/lxc/loop/net.conf:1: lxc.include cycle"):
        find_target("loop", sources=[src])


def test_list_names() -> None:
    assert list_names(sources=sources()) == {
        "libvirt": ["instance-00000347", "tgrec-00000abc", "tgrec-vhu"],
        "lxc": ["web1", "web2", "db-07"],
        "lxd": ["c-syslog"],
    }
