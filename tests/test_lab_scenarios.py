"""Each namespace-guest scenario really is the outage it claims to be, proved with the real tools."""

from __future__ import annotations

import pytest

from tests.helpers import count, read, sh, wait_for

pytestmark = pytest.mark.live


def bound(state) -> bool:
    return "tl2-guest: bound" in read(state.info["guest"]["log"])


def test_healthy_guest_gets_a_lease(make_lab):
    state = make_lab("healthy")
    mac = state.info["guest"]["mac"]
    assert wait_for(lambda: bound(state), 15), "the healthy guest's udhcpc never got a lease"
    assert count(state.info["server"]["log"], rf"DHCPACK\(eth0\) \S+ {mac}") >= 1
    assert state.info["target"] == f"tl2-{state.name}-guest"
    assert state.info["bridge"] == f"{state.name}-br" and state.info["uplink"] == f"{state.name}-up"


def test_fdb_mismatch_guest_gets_no_lease_while_dnsmasq_offers(make_lab):
    state = make_lab("fdb-mismatch")
    mac, log = state.info["guest"]["mac"], state.info["server"]["log"]
    assert wait_for(lambda: count(log, rf"DHCPOFFER\(eth0\) \S+ {mac}") >= 2, 15), "dnsmasq never offered"
    assert not bound(state), "the guest got a lease through a bridge whose FDB points away from it"
    fdb = sh("bridge", "fdb", "show", "br", state.info["bridge"])
    assert f"{mac} dev {state.info['uplink']}" in fdb and "sticky" in fdb


def test_own_address_loop_makes_the_kernel_complain(make_lab):
    state = make_lab("own-address-loop")
    line = f"{state.info['bridge']}: received packet on {state.info['uplink']} with own address as source address"
    assert wait_for(lambda: line in sh("dmesg"), 15), f"no kernel line {line!r}"
    assert not bound(state)


def test_upstream_silent_frames_leave_but_nothing_answers(make_lab):
    state = make_lab("upstream-silent")
    ns = state.info["namespaces"][0]
    dropped = lambda: "packets 0 " not in sh("ip", "netns", "exec", ns, "nft", "list", "table", "netdev", "portsec")  # noqa: E731
    assert wait_for(dropped, 15), "port security beyond the uplink never dropped anything"
    assert count(state.info["server"]["log"], "DHCPDISCOVER") == 0
    assert not bound(state)


def test_filter_drop_rule_drops_the_guest_dhcp(make_lab):
    state = make_lab("filter-drop")
    table = f"tl2_{state.name}"
    assert wait_for(lambda: "packets 0 " not in sh("nft", "list", "table", "bridge", table), 15)
    assert count(state.info["server"]["log"], "DHCPDISCOVER") == 0
    assert not bound(state)


def test_bridge_mac_floats_to_the_lowest_port(make_lab):
    state = make_lab("bridge-mac-float")
    fault = state.info["fault"]
    assert fault["bridge_mac_before"] != fault["bridge_mac_after"] == "02:00:00:00:00:01"
    assert read(f"/sys/class/net/{state.info['bridge']}/addr_assign_type").strip() != "3"
    assert wait_for(lambda: bound(state), 15), "the scenario must still serve DHCP"
