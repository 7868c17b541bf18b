"""`tracepath-l2 check` against real labs: the leftover veth of seed 000 found, fixed only when asked
and confirmed, the container starting afterwards; bridge-mac-float and link-down found; nothing
found on a healthy lab."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import sh

from tracer.errors import ExitCode
from tracer.lab import container

CLI = [sys.executable, "-m", "tracer.cli"]

pytestmark = pytest.mark.live


def check(*args: str, stdin=subprocess.DEVNULL) -> tuple[int, dict | None, str, str]:
    proc = subprocess.run([*CLI, "check", *args], capture_output=True, text=True, timeout=120, stdin=stdin)
    data = None
    if "--json" in args and proc.stdout.strip():
        data = json.loads(proc.stdout)
    return proc.returncode, data, proc.stdout, proc.stderr


def codes(data: dict) -> list[tuple[str, str | None]]:
    return [(f["code"], f["hop"]) for f in data["findings"]]


def lab_links(lab: str) -> set[str]:
    """The lab's own host links (other labs may come and go meanwhile)."""
    names = {line.split()[0].split("@")[0] for line in sh("ip", "-br", "link").splitlines() if line.strip()}
    return {n for n in names if n.startswith((f"{lab}-", f"{lab}_"))}


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


# ---------------------------------------------------------------- leftover-veth (seed 000)
def test_leftover_veth_is_an_error_naming_the_link(make_lab):
    state = make_lab("leftover-veth")
    target, leftover = state.info["target"], state.info["fault"]["leftover"]
    assert leftover == f"{state.name}-ct0"
    code, data, _, err = check(target, "--json")
    assert code == ExitCode.STOPPED, err
    found = [f for f in data["findings"] if f["code"] == "leftover-veth"]
    assert len(found) == 1, data["findings"]
    f = found[0]
    assert (f["severity"], f["hop"], f["fix"]) == ("error", leftover, f"ip link del {leftover}")
    assert f["evidence"][0].startswith(f"lxc.net.0.veth.pair = {leftover} in /var/lib/lxc/{target}/config")
    assert any(e.startswith(f"ip link show {leftover}: ") for e in f["evidence"])
    assert "File exists" in f["explanation"]
    # the leftover's own state (down, disabled port) is its consequence, not another finding
    assert [c for c in codes(data) if c[0] != "leftover-veth" and c[1] == leftover] == []
    assert data["fixed"] == []
    assert link_exists(leftover)  # check alone changes nothing


def test_fix_without_yes_and_without_a_terminal_refuses(make_lab):
    state = make_lab("leftover-veth")
    target, leftover = state.info["target"], state.info["fault"]["leftover"]
    code, _, out, err = check(target, "--fix")
    assert code == ExitCode.USAGE
    assert out == "" and err.count("\n") == 1 and "--yes" in err
    assert link_exists(leftover)


def test_fix_yes_removes_exactly_that_link_and_the_container_starts(make_lab):
    state = make_lab("leftover-veth")
    target, leftover = state.info["target"], state.info["fault"]["leftover"]
    before = lab_links(state.name)
    assert {leftover, container.leftover_peer_name(state.name)} <= before
    code, data, _, err = check(target, "--fix", "--yes", "--json")
    assert code == ExitCode.OK, (err, data)
    assert [(x["link"], x["command"], x["ok"]) for x in data["fixed"]] == [(leftover, f"ip link del {leftover}", True)]
    assert "leftover-veth" not in [c for c, _ in codes(data)]
    # deleting a veth removes its peer with it; nothing else of the lab is touched
    assert lab_links(state.name) == before - {leftover, container.leftover_peer_name(state.name)}
    started = container.start_container(target)
    assert started.returncode == 0, started.stderr
    assert container.container_state(target) == "RUNNING"


def test_legacy_keys_in_an_included_file(make_lab):
    """Seed 000 as it was: LXC 2.x keys in an OpenStack-Ansible style eth0.ini pulled in by lxc.include."""
    state = make_lab("healthy")
    legacy = container.write_legacy_container(state, lab_name=state.name, bridge=state.info["bridge"], include=True)
    name = legacy["veth"]
    state.add("links", name)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{state.name}-lp"], check=True)
    code, data, _, err = check(legacy["name"], "--json")
    assert code == ExitCode.STOPPED, err
    [f] = [f for f in data["findings"] if f["code"] == "leftover-veth"]
    assert f["hop"] == name and f["fix"] == f"ip link del {name}"
    assert f["evidence"][0].startswith(f"lxc.network.veth.pair = {name} in {legacy['include']} (line ")
    assert f"included from {legacy['config']}" in f["evidence"][0]


# ---------------------------------------------------------------- other findings, and none on a healthy lab
def test_bridge_mac_float_is_found(make_lab):
    state = make_lab("bridge-mac-float")
    code, data, _, err = check(state.info["target"], "--json")
    found = [f for f in data["findings"] if f["code"] == "bridge-mac-float"]
    assert found and found[0]["hop"] == state.info["bridge"], data["findings"]
    assert code == (ExitCode.STOPPED if any(f["severity"] == "error" for f in data["findings"]) else ExitCode.OK)


@pytest.mark.parametrize("guest", ["ns", "lxc"])
def test_healthy_lab_has_no_findings(make_lab, guest):
    state = make_lab("healthy", guest=guest)
    code, data, _, err = check(state.info["target"], "--json")
    assert (code, data["findings"], data["fixed"]) == (ExitCode.OK, [], []), err
    code, _, out, _ = check(state.info["target"])
    assert code == ExitCode.OK and "findings: none" in out


def test_guest_port_down_is_link_down(make_lab):
    state = make_lab("healthy")
    port = state.info["guest"]["port"]
    assert port == f"{state.name}-g0"
    subprocess.run(["ip", "link", "set", port, "down"], check=True)
    code, data, _, err = check(state.info["target"], "--json")
    assert code == ExitCode.STOPPED, err
    assert ("link-down", port) in codes(data)
    assert "leftover-veth" not in [c for c, _ in codes(data)]


FIXED_TAP_DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <description>tracepath-l2 lab {lab}: a stopped domain with a fixed tap name</description>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <interface type='bridge'>
      <source bridge='{bridge}'/>
      <target dev='{tap}'/>
    </interface>
  </devices>
</domain>
"""


def test_libvirt_fixed_target_dev_held_by_a_leftover_tap(make_lab, tmp_path):
    """libvirt refuses to start: 'The NAME interface already exists'; after --fix --yes it starts."""
    virsh = ["virsh", "-c", "qemu:///system"]
    if subprocess.run([*virsh, "uri"], capture_output=True).returncode != 0:
        pytest.skip("libvirtd is not running")
    state = make_lab("healthy")
    dom, tap = f"tl2-{state.name}-fixed", f"{state.name}-vt0"
    xml = tmp_path / "domain.xml"
    xml.write_text(FIXED_TAP_DOMAIN.format(name=dom, lab=state.name, bridge=state.info["bridge"], tap=tap))
    state.add("domains", dom)  # teardown destroys and undefines lab-marked domains
    subprocess.run([*virsh, "define", str(xml)], check=True, capture_output=True)
    state.add("links", tap)
    subprocess.run(["ip", "tuntap", "add", tap, "mode", "tap"], check=True)
    subprocess.run(["ip", "link", "set", tap, "master", state.info["bridge"], "up"], check=True)
    start = subprocess.run([*virsh, "start", dom], capture_output=True, text=True, timeout=60)
    assert start.returncode != 0 and "already exists" in start.stderr
    code, data, _, err = check(dom, "--json")
    assert code == ExitCode.STOPPED, err
    [f] = [f for f in data["findings"] if f["code"] == "leftover-veth"]
    assert (f["severity"], f["hop"], f["fix"]) == ("error", tap, f"ip link del {tap}")
    assert f["evidence"][0].startswith(f"<target dev='{tap}'/> of interface 0 (type bridge")
    code, data, _, err = check(dom, "--fix", "--yes", "--json")
    assert code == ExitCode.OK and [x["link"] for x in data["fixed"] if x["ok"]] == [tap], (err, data)
    start = subprocess.run([*virsh, "start", dom], capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, start.stderr
