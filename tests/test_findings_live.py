"""Each static finding made real by a lab, found live by `check` (and by a trace); healthy labs: none."""

from __future__ import annotations

import json
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


def test_guest_port_down_is_link_down(make_lab):
    state = make_lab("healthy")
    subprocess.run(["ip", "link", "set", state.info["guest"]["port"], "down"], check=True)
    code, data = check(state.info["target"])
    assert code == ExitCode.STOPPED and "link-down" in codes(data)
