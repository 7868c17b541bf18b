"""FDB text parsers on recorded `bridge fdb show` / `brctl showmacs` output (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.evidence.fdb import flag_words, parse_brctl_showmacs, parse_bridge_fdb_show
from tracer.model import FdbEntry

DATA = Path(__file__).parent / "data" / "evidence"
GUEST = "02:47:00:7f:22:02"


def load(name: str) -> str:
    return (DATA / name).read_text()


def test_lab_fdb_show_puts_the_guest_mac_on_the_uplink_static_and_sticky():
    entries = parse_bridge_fdb_show(load("bridge-fdb-show-lab.txt"), bridge="xe1-br", macs=[GUEST.upper()])
    assert entries == [FdbEntry(GUEST, "xe1-up", "xe1-br", ("sticky", "master", "static"))]
    assert not entries[0].local


def test_bridge_filter_keeps_only_master_entries_of_that_bridge():
    entries = parse_bridge_fdb_show(load("bridge-fdb-show-lab.txt"), bridge="xe1-br")
    assert {e.mac for e in entries} == {GUEST, "02:47:00:7f:22:fe", "02:b0:00:7f:22:01", "9e:f6:37:7a:80:95",
                                        "02:f8:4f:7b:82:72"}
    assert all("master" in e.flags and e.bridge == "xe1-br" for e in entries)
    bridge_own = next(e for e in entries if e.mac == "02:b0:00:7f:22:01")
    assert bridge_own.port == "xe1-br" and bridge_own.local


def test_without_a_bridge_self_entries_belong_to_their_device():
    entries = parse_bridge_fdb_show(load("bridge-fdb-show-lab.txt"))
    mcast = [e for e in entries if e.mac == "33:33:00:00:00:01" and e.port.startswith("xe1-")]
    assert {(e.port, e.bridge, e.flags) for e in mcast} == {
        ("xe1-br", "xe1-br", ("self", "permanent")),
        ("xe1-up", "xe1-up", ("self", "permanent")),
        ("xe1-g0", "xe1-g0", ("self", "permanent")),
    }


def test_stats_give_the_age_from_updated_and_learned_entries_have_no_state_word():
    entries = {e.mac: e for e in parse_bridge_fdb_show(load("bridge-fdb-show-stats.txt"), bridge="xe1-br")}
    learned = entries["02:47:00:7f:22:fe"]
    assert learned.flags == ("master",) and learned.age == 4.0 and learned.port == "xe1-up"
    assert entries[GUEST].age == 4.0 and entries[GUEST].flags == ("sticky", "master", "static")


def test_flag_words_extern_learn_sticky_self_permanent():
    by_mac = {e.mac: e for e in parse_bridge_fdb_show(load("bridge-fdb-show-flags.txt"))}
    assert by_mac["52:54:00:12:34:5b"].flags == ("extern_learn", "master")
    assert by_mac["52:54:00:12:34:59"].flags == ("master", "permanent")
    assert by_mac["52:54:00:12:34:57"].flags == ("sticky", "master", "static")
    assert by_mac["52:54:00:12:34:5a"].flags == ("self", "permanent")
    assert by_mac["52:54:00:12:34:5a"].bridge == "vnet0"


@pytest.mark.parametrize(
    ("line", "vlan", "flags", "port"),
    [
        ("52:54:00:12:34:56 dev vnet0 vlan 10 master br0 static", 10, ("master", "static"), "vnet0"),
        ("fa:16:3e:56:ea:fa dev bond0.2222 vlan 2222 used 12/3 master brq5dddda71-76", 2222, ("master",),
         "bond0.2222"),
        ("52:54:00:12:34:56 dev vnet0 vlan 1 extern_learn offload sticky master br0 static", 1,
         ("extern_learn", "offload", "sticky", "master", "static"), "vnet0"),
        ("00:00:00:00:00:00 dev vxlan0 dst 10.0.0.2 self permanent", None, ("self", "permanent"), "vxlan0"),
        ("52:54:00:12:34:56 dev vnet0 master br0 stale", None, ("master", "stale"), "vnet0"),
    ],
)
def test_line_shapes(line, vlan, flags, port):
    (entry,) = parse_bridge_fdb_show(line)
    assert (entry.vlan, entry.flags, entry.port) == (vlan, flags, port)


def test_vlan_entry_age_from_used_updated():
    (entry,) = parse_bridge_fdb_show("fa:16:3e:56:ea:fa dev bond0.2222 vlan 2222 used 12/3 master brq5dddda71-76")
    assert entry.age == 3.0 and entry.bridge == "brq5dddda71-76"


def test_garbage_lines_are_skipped():
    text = "\n".join(["", "Error: something", "zz:zz:zz:zz:zz:zz dev x", "02:47:00:7f:22:02", "dev only"])
    assert parse_bridge_fdb_show(text) == []


def test_flag_words_from_netlink_numbers():
    assert flag_words(0x40, 0x40, 0, True) == ("sticky", "master", "static")
    assert flag_words(0x80, 0x02) == ("self", "permanent")
    assert flag_words(0x02, 0x10, 0, True) == ("extern_learn", "master")
    assert flag_words(0x04, 0, 0x02, True) == ("locked", "master", "stale")


def test_brctl_showmacs_maps_port_numbers():
    entries = parse_brctl_showmacs(load("brctl-showmacs.txt"), {1: "xe1-up", 2: "xe1-g0"}, bridge="xe1-br")
    assert entries[0] == FdbEntry(GUEST, "xe1-up", "xe1-br", ("master",), age=0.0)
    assert entries[1].age == 1.01
    assert entries[2].port == "xe1-g0" and entries[2].local
    assert parse_brctl_showmacs(load("brctl-showmacs.txt"), {})[0].port == "port 1"
