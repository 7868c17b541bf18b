"""The real guests: an LXC container and one shared libvirt/QEMU guest, on real lab bridges."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from tests.helpers import count, host_residue, read, sh, wait_for
from tracer.lab import container, runner, vm


@contextlib.contextmanager
def fault(state, scenario):
    """Move the shared lab to a fault and always back to healthy."""
    runner.apply_fault(state, scenario)
    try:
        yield
    finally:
        runner.revert_fault(state, scenario)


@pytest.mark.live
def test_lxc_guest_gets_a_lease(make_lab):
    state = make_lab("healthy", guest="lxc")
    guest = state.info["guest"]
    assert guest["kind"] == "lxc" and guest["target"] == f"tl2-{state.name}-ct"
    assert f"master {state.info['bridge']}" in sh("ip", "link", "show", guest["port"])
    assert wait_for(lambda: "tl2-guest: bound" in read(guest["log"]), 20), read(guest["log"])
    assert count(state.info["server"]["log"], rf"DHCPACK\(eth0\) \S+ {guest['mac']}") >= 1


@pytest.mark.live
def test_leftover_veth_makes_lxc_start_fail_with_file_exists(make_lab):
    state = make_lab("leftover-veth")
    target, leftover = state.info["target"], state.info["fault"]["leftover"]
    assert leftover == container.veth_pair_name(state.name)
    assert leftover in sh("ip", "-br", "link")
    proc = container.start_container(target)
    assert proc.returncode != 0
    assert "File exists" in proc.stderr and "Failed to create veth pair" in proc.stderr
    assert container.container_state(target) in ("STOPPED", None)


@pytest.mark.live
def test_lxc_lab_down_leaves_nothing(make_lab):
    state = make_lab("healthy", guest="lxc")
    runner.down(state.name)
    assert host_residue(state.name) == []
    assert state.info["target"] not in sh("lxc-ls", "-1")


@pytest.mark.vm
@pytest.mark.live
def test_vm_guest_gets_a_lease_through_its_tap(vm_lab):
    guest = vm_lab.info["guest"]
    assert guest["target"] == "instance-00000347"
    assert guest["port"].startswith("vnet")
    assert f"master {vm_lab.info['bridge']}" in sh("ip", "link", "show", guest["port"])
    log = vm_lab.info["server"]["log"]
    assert wait_for(lambda: count(log, rf"DHCPACK\(eth0\) \S+ {guest['mac']}") >= 1, 90), read(guest["log"])[-2000:]
    assert vm.wait_console(guest["log"], r"tl2-guest: bound 198\.18\.0\.\d+", 10)


@pytest.mark.vm
@pytest.mark.live
def test_vm_guest_gets_no_lease_under_fdb_mismatch(vm_lab):
    guest, log = vm_lab.info["guest"], vm_lab.info["server"]["log"]
    assert wait_for(lambda: count(log, rf"DHCPACK\(eth0\) \S+ {guest['mac']}") >= 1, 90)
    with fault(vm_lab, "fdb-mismatch"):
        acks = count(log, rf"DHCPACK\(eth0\) \S+ {guest['mac']}")
        offers = count(log, rf"DHCPOFFER\(eth0\) \S+ {guest['mac']}")
        bound = read(guest["log"]).count("tl2-guest: bound")
        assert wait_for(lambda: count(log, rf"DHCPOFFER\(eth0\) \S+ {guest['mac']}") >= offers + 2, 30)
        # The ACK of a REQUEST already in flight may still land; no new lease after that.
        assert read(guest["log"]).count("tl2-guest: bound") <= bound + 1
        assert count(log, rf"DHCPACK\(eth0\) \S+ {guest['mac']}") <= acks + 1
    # Back to healthy: the same guest gets leases again.
    assert wait_for(lambda: count(log, rf"DHCPACK\(eth0\) \S+ {guest['mac']}") >= acks + 2, 30)


@pytest.mark.live
def test_vm_lab_down_removes_the_domain(make_lab):
    state = make_lab("healthy", guest="vm")
    domain = state.info["target"]
    assert domain != "instance-00000347" and vm.domain_exists(domain)
    runner.down(state.name)
    assert not vm.domain_exists(domain)
    assert host_residue(state.name) == []
    assert domain not in subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                                        capture_output=True, text=True).stdout
