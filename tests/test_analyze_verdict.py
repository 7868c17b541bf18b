"""Table-driven tests of the pure analysis: no root, no sockets, no clock."""

from __future__ import annotations

import pytest

from tests.factories import DOWN_HOPS, GUEST_MAC, T0, UP_HOPS, arp, crossing, dora, lab_path
from tracer.analyze import analyze
from tracer.model import DropEvent, Evidence, FdbEntry, FilterRule, KernelLine, Status

TAP, BR, UPLINK = "tap0b5f208b-76", "brq5dddda71-76", "bond0"


def run(observations, evidence=None, end=10.0, path=None, protocol="dhcp", sniffed=None):
    return analyze(path or lab_path(), observations, evidence or Evidence(), (T0, T0 + end), protocol=protocol,
                   target="instance-00000347", sniffed=sniffed)


def codes(report):
    return [f.code for f in report.findings]


def test_full_dora_at_every_hop_is_ok_and_certain():
    report = run(dora())
    assert report.verdict.status is Status.OK and report.certain
    assert report.focus == "xid 0x3903f326"
    assert "DISCOVER OFFER REQUEST ACK" in report.verdict.message
    assert codes(report) == []


def test_vm_path_without_guest_hop_is_ok():
    obs = [o for o in dora() if o.hop != "tl2-t-guest:eth0"]
    assert run(obs, path=lab_path(guest_hop=False)).verdict.status is Status.OK


def test_offer_stops_between_uplink_and_tap_with_fdb_mismatch():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("OFFER", 0.01, DOWN_HOPS[:1])
    fdb = FdbEntry(GUEST_MAC, UPLINK, BR, ("static", "sticky", "master"), time=T0 + 0.5)
    report = run(obs, Evidence(fdb=(fdb,)), end=2.0)
    assert report.verdict.status is Status.STOPPED and report.certain
    assert report.verdict.between == (UPLINK, TAP)
    assert report.verdict.message == f"OFFER xid 0x3903f326 reached {UPLINK} but not {TAP}"
    [finding] = report.findings
    assert finding.code == "fdb-mismatch" and finding.hop == UPLINK
    assert TAP in finding.explanation and UPLINK in finding.explanation
    assert finding.fix == f"bridge fdb del {GUEST_MAC} dev {UPLINK} master"


def test_a_stop_is_not_certain_within_the_hop_grace():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("OFFER", 0.01, DOWN_HOPS[:1])
    report = run(obs, end=0.2)
    assert report.verdict.status is Status.INCONCLUSIVE and not report.certain


def test_a_frame_that_crossed_while_the_sockets_were_opening_proves_nothing():
    """Sockets open hop after hop; a DISCOVER seen before the window opened may simply have passed
    the uplink before its socket existed."""
    report = run(crossing("DISCOVER", -0.05, UP_HOPS[:2]), end=5.0)
    assert report.verdict.status is Status.INCONCLUSIVE and not report.certain
    assert len(report.observations) == 2  # still shown


def test_no_reply_after_the_reply_grace_is_upstream_no_reply():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("DISCOVER", 2, UP_HOPS)
    report = run(obs, end=5.5)
    assert report.verdict.status is Status.STOPPED
    assert report.verdict.between == (UPLINK, "upstream")
    assert codes(report) == ["upstream-no-reply"] and report.findings[0].hop == UPLINK
    assert not run(obs, end=2.5).certain


def test_filter_drop_between_tap_and_uplink_with_counter_and_drop_reason():
    obs = crossing("DISCOVER", 0, UP_HOPS[:2])
    rule = 'ether saddr fa:16:3e:56:ea:fa udp dport 67 counter packets {} bytes 0 drop'
    before = FilterRule("nft", "tl2_t", "forward", rule.format(0), family="bridge", packets=0)
    after = FilterRule("nft", "tl2_t", "forward", rule.format(0), family="bridge", packets=3)
    drop = DropEvent("NETFILTER_DROP", "nft_do_chain+0x3a1/0x6f0", time=T0 + 0.0002)
    report = run(obs, Evidence(filters=(after,), filters_before=(before,), drops=(drop,)), end=2.0)
    assert report.verdict.between == (TAP, UPLINK)
    assert set(codes(report)) == {"filter-drop", "kernel-drop"}
    kd = next(f for f in report.findings if f.code == "kernel-drop")
    assert "NETFILTER_DROP" in kd.evidence[0] and "nft_do_chain" in kd.evidence[0]
    fd = next(f for f in report.findings if f.code == "filter-drop")
    assert "tl2_t" in fd.evidence[0] and "grew by 3" in fd.evidence[0]


def test_own_address_line_becomes_a_finding_with_the_kernel_words():
    line = f"{BR}: received packet on {UPLINK} with own address as source address (addr:90:b1:1c:4f:cb:86, vlan:0)"
    report = run(dora(), Evidence(kernel=(KernelLine(line, T0 + 1),)))
    [f] = report.findings
    assert f.code == "own-address-loop" and f.hop == UPLINK and line in f.evidence[0]


def test_seed_own_address_line_without_tail_parses():
    line = "brq5dddda71-76: received packet on bond0.2222 with own address as source address"
    report = run([], Evidence(kernel=(KernelLine(line),)))
    assert codes(report) == ["own-address-loop"]


def test_guest_port_down_stops_everything_even_with_no_frames():
    report = run([], path=lab_path(admin_up=False))
    assert report.verdict.status is Status.STOPPED and report.certain
    assert report.verdict.between == ("tl2-t-guest:eth0", TAP)
    assert codes(report) == ["link-down"] and report.findings[0].fix == f"ip link set {TAP} up"


def test_stp_blocking_port():
    path = lab_path()
    hops = tuple(h if h.name != TAP else type(h)(**{**h.to_dict(), "port_state": "blocking"}) for h in path.hops)
    report = run([], path=type(path)(path.guest, hops))
    assert "stp-blocking" in codes(report)


def test_nothing_seen_is_inconclusive_and_not_certain():
    report = run([])
    assert report.verdict.status is Status.INCONCLUSIVE and not report.certain


def test_reflected_discover_does_not_hide_the_stop():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("DISCOVER", 0.0005, DOWN_HOPS)  # mirrored back
    obs += crossing("OFFER", 0.01, DOWN_HOPS[:1])
    report = run(obs, end=2.0)
    assert report.verdict.between == (UPLINK, TAP)


def test_retransmissions_are_separate_frames_and_a_later_success_wins():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("OFFER", 0.01, DOWN_HOPS[:1]) + dora(5.0, xid=0x1234)
    report = run(obs, end=8.0)
    assert report.verdict.status is Status.OK and report.focus == "xid 0x00001234"


def test_other_guests_frames_are_ignored():
    other = [o.__class__(**{**o.to_dict(), "client_mac": "02:00:00:00:00:99", "src_mac": "02:00:00:00:00:99",
                            "dst_mac": "ff:ff:ff:ff:ff:ff"}) for o in dora()]
    assert run(other).verdict.status is Status.INCONCLUSIVE


def test_arp_request_and_reply_across_every_hop():
    obs = [arp("request", h, d, i * 0.001) for i, (h, d) in enumerate(UP_HOPS)]
    obs += [arp("reply", h, d, 0.01 + i * 0.001) for i, (h, d) in enumerate(DOWN_HOPS)]
    report = run(obs, protocol="arp")
    assert report.verdict.status is Status.OK


def test_same_inputs_same_report():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("OFFER", 0.01, DOWN_HOPS[:1])
    assert run(obs, end=2.0) == run(list(reversed(obs)), end=2.0)


@pytest.mark.parametrize("unsniffed", ["tl2-t-guest:eth0", TAP])
def test_unsniffed_hops_are_never_missing(unsniffed):
    sniffed = {"tl2-t-guest:eth0", TAP, BR, UPLINK} - {unsniffed}
    obs = [o for o in dora() if o.hop != unsniffed]
    assert run(obs, sniffed=sniffed).verdict.status is Status.OK


def test_report_json_has_the_public_fields():
    data = run(dora()).to_dict()
    assert set(data) >= {"target", "path", "protocol", "observations", "verdict", "findings"}
    assert set(data["verdict"]) == {"status", "between", "message"}
    assert set(data["path"][0]) == {"name", "kind", "role", "mac", "mtu", "state", "netns", "master"}


def test_a_probe_discover_and_offer_across_every_hop_is_enough():
    obs = crossing("DISCOVER", 0, UP_HOPS) + crossing("OFFER", 0.01, DOWN_HOPS)
    assert run(obs, end=0.1).verdict.status is Status.INCONCLUSIVE
    report = analyze(lab_path(), obs, Evidence(), (T0, T0 + 0.1), protocol="dhcp", target="x",
                     probes=["xid 0x3903f326"])
    assert report.verdict.status is Status.OK and report.certain


def test_kernel_drops_on_a_healthy_path_are_no_finding():
    drop = DropEvent("IP_INADDRERRORS", "ip_error+0x1/0x2", time=T0)
    bridge = DropEvent("NOT_SPECIFIED", "br_handle_frame_finish+0x392/0x690", time=T0)
    assert codes(run(dora(), Evidence(drops=(drop, bridge)))) == []


def test_hops_with_the_same_name_in_different_namespaces_are_different_hops():
    path = lab_path()
    assert path.hops[0].label == "tl2-t-guest:eth0" and path.hop("tl2-t-guest:eth0").name == "eth0"
    assert path.hop("eth0") is None
