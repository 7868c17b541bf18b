"""Each static finding made real by a lab, found live by `check` (and by a trace); healthy labs: none."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tracer.errors import ExitCode

pytestmark = pytest.mark.live
CLI = [sys.executable, "-m", "tracer.cli"]


def check(target: str) -> tuple[int, dict]:
    proc = subprocess.run([*CLI, "check", target, "--json"], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def codes(data: dict) -> list[str]:
    return [f["code"] for f in data["findings"]]


@pytest.mark.parametrize("guest", ["ns", "lxc"])
def test_healthy_lab_has_no_findings(make_lab, guest):
    state = make_lab("healthy", guest=guest)
    code, data = check(state.info["target"])
    assert (code, codes(data)) == (ExitCode.OK, [])


@pytest.mark.vm
def test_healthy_vm_has_no_findings(vm_lab):
    code, data = check("instance-0347")
    assert (code, codes(data)) == (ExitCode.OK, [])


def test_stp_blocking(make_lab):
    state = make_lab("stp-blocking")
    port = state.info["guest"]["port"]
    code, data = check(state.info["target"])
    assert code == ExitCode.STOPPED and codes(data) == ["stp-blocking"]
    assert data["findings"][0]["hop"] == port and "listening" in data["findings"][0]["evidence"][0]
    proc = subprocess.run([*CLI, "--dhcp", state.info["target"], "--probe", "--timeout", "5", "--json"],
                          capture_output=True, text=True)
    report = json.loads(proc.stdout)
    assert proc.returncode == ExitCode.STOPPED and "stp-blocking" in {f["code"] for f in report["findings"]}


def test_mtu_mismatch_names_the_uplink_not_the_bridge(make_lab):
    state = make_lab("mtu-mismatch")
    code, data = check(state.info["target"])
    assert code == ExitCode.OK and codes(data) == ["mtu-mismatch"]  # a warning: DHCP still passes
    assert data["findings"][0]["hop"] == state.info["uplink"]


def test_bridge_mac_float(make_lab):
    state = make_lab("bridge-mac-float")
    code, data = check(state.info["target"])
    assert "bridge-mac-float" in codes(data)
    finding = next(f for f in data["findings"] if f["code"] == "bridge-mac-float")
    assert finding["hop"] == state.info["bridge"] and finding["fix"].startswith(f"ip link set {state.info['bridge']}")
    # it did change, and the kernel's own record says so: the link-local spells the MAC it came up with
    assert finding["severity"] == "error" and code == ExitCode.STOPPED
    assert any("EUI-64" in e and state.info["fault"]["bridge_mac_before"] in e for e in finding["evidence"])


def test_guest_port_down_is_link_down(make_lab):
    state = make_lab("healthy")
    subprocess.run(["ip", "link", "set", state.info["guest"]["port"], "down"], check=True)
    code, data = check(state.info["target"])
    assert code == ExitCode.STOPPED and "link-down" in codes(data)


def trace(target: str) -> tuple[int, dict]:
    proc = subprocess.run([*CLI, "--dhcp", target, "--probe", "--timeout", "8", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize(("scenario", "source"), [("filter-drop", "nft"), ("ebtables-drop", "ebtables"),
                                                  ("forward-drop", "iptables-physdev")])
def test_filter_rules_of_every_kind(make_lab, scenario, source):
    """nft bridge family, ebtables and iptables physdev (br_netfilter): `check` names the rule, and a
    trace proves it dropped the probe (its counter grew) and sees the kernel's NETFILTER_DROP."""
    state = make_lab(scenario)
    target = state.info["target"]
    code, data = check(target)
    found = [f for f in data["findings"] if f["code"] == "filter-drop"]
    assert len(found) == 1 and found[0]["evidence"][0].startswith(source), data["findings"]
    assert code == ExitCode.OK and found[0]["severity"] == "warning"  # no counter seen: a suspect, not proof
    code, report = trace(target)
    assert code == ExitCode.STOPPED, report["verdict"]
    proof = [f for f in report["findings"] if f["code"] == "filter-drop" and f["severity"] == "error"]
    assert proof and any("counter grew" in e for e in proof[0]["evidence"]), report["findings"]
    assert any(f["code"] == "kernel-drop" and "NETFILTER_DROP" in f["evidence"][0] for f in report["findings"])


def test_not_attached_wrong_bridge_then_none(make_lab):
    """An LXC guest's veth re-plugged into another bridge, then into none: its config names the lab bridge."""
    state = make_lab("healthy", guest="lxc")
    port, bridge, other = state.info["guest"]["port"], state.info["bridge"], f"{state.name}-bx"
    subprocess.run(["ip", "link", "add", other, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", port, "master", other], check=True)
        code, data = check(state.info["target"])
        found = [f for f in data["findings"] if f["code"] == "not-attached"]
        assert code == ExitCode.STOPPED and len(found) == 1, data["findings"]
        assert found[0]["hop"] == port and other in found[0]["evidence"][0] and bridge in found[0]["evidence"][0]
        assert found[0]["fix"] == f"ip link set {port} master {bridge}"
        subprocess.run(["ip", "link", "set", port, "nomaster"], check=True)
        code, data = check(state.info["target"])
        assert code == ExitCode.STOPPED and "not-attached" in codes(data), data["findings"]
    finally:
        subprocess.run(["ip", "link", "del", other], capture_output=True)


def test_lxc_network_type_none_shares_the_host_namespace(tmp_path):
    """A (never started) LXC container with `lxc.net.0.type = none`: the warning, from its config alone."""
    from tests.conftest import unique_lab_name

    name = f"tl2-{unique_lab_name()}-none"
    path = tmp_path / name
    path.mkdir()
    (path / "config").write_text(f"lxc.uts.name = {name}\nlxc.rootfs.path = dir:{path}/rootfs\n"
                                 "lxc.net.0.type = none\n")
    proc = subprocess.run([*CLI, "check", name, "--json"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TRACEPATH_L2_LXCPATH": str(tmp_path)})
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    found = [f for f in data["findings"] if f["code"] == "macvlan-isolation"]
    assert found and "host's network namespace" in found[0]["explanation"], data


@pytest.mark.vm
def test_libvirt_nwfilter_on_the_vm_tap(vm_lab):
    """nwfilter writes per-tap iptables chains that never name the tap again: the finding follows the
    physdev jump into them, proves the drop by the counter, and names the filter to fix, not the rules."""
    from tracer.lab import runner

    runner.apply_fault(vm_lab, "nwfilter-drop")
    try:
        code, data = check("instance-0347")
        [found] = [f for f in data["findings"] if f["code"] == "filter-drop"]
        assert found["hop"] == vm_lab.info["guest"]["tap"]
        assert any("libvirt nwfilter tl2-lab-dhcp" in e for e in found["evidence"])
        assert found["fix"].startswith("virsh nwfilter-dumpxml tl2-lab-dhcp")
        proc = subprocess.run([*CLI, "--dhcp", "instance-0347", "--timeout", "25", "--json"],
                              capture_output=True, text=True, timeout=90)
        report = json.loads(proc.stdout)
        assert proc.returncode == ExitCode.STOPPED, report["verdict"]
        assert report["verdict"]["between"][0] == vm_lab.info["guest"]["tap"]
        [proof] = [f for f in report["findings"] if f["code"] == "filter-drop"]
        assert proof["severity"] == "error" and any("counter grew" in e for e in proof["evidence"])
    finally:
        runner.revert_fault(vm_lab, "nwfilter-drop")
    assert "tl2-lab-dhcp" not in subprocess.run(["virsh", "-c", "qemu:///system", "nwfilter-list"],
                                                capture_output=True, text=True).stdout
