"""`tracepath-l2 resolve` on real guests: libvirt/QEMU, LXC (modern and legacy), namespaces, two NICs, macvlan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tracer.errors import ExitCode
from tracer.lab import container

pytestmark = pytest.mark.live
CLI = [sys.executable, "-m", "tracer.cli"]


def resolve(*args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([*CLI, "resolve", *args, "--json"], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else {}), proc.stderr


def roles(path: dict) -> list[tuple[str, str]]:
    return [(h["name"], h["role"]) for h in path["hops"]]


@pytest.mark.vm
def test_qemu_guest_by_name_digits_uuid_and_mac(vm_lab):
    guest = vm_lab.info["guest"]
    want = [(guest["port"], "guest-port"), (vm_lab.info["bridge"], "bridge"), (vm_lab.info["uplink"], "uplink")]
    for query in ("instance-00000347", "instance-0347", guest["uuid"], guest["mac"]):
        code, data, err = resolve(query)
        assert code == 0, (query, err)
        [path] = data["paths"]
        assert roles(path)[:3] == want, query
        assert path["guest"]["name"] == "instance-00000347" and path["guest"]["mac"] == guest["mac"]


def test_lxc_modern_running_container(make_lab):
    state = make_lab("healthy", guest="lxc")
    code, data, err = resolve(state.info["target"])
    assert code == 0, err
    [path] = data["paths"]
    assert roles(path)[:4] == [("eth0", "guest"), (state.info["guest"]["port"], "guest-port"),
                               (state.info["bridge"], "bridge"), (state.info["uplink"], "uplink")]


def test_lxc_legacy_keys_with_an_include_resolve_from_config(make_lab):
    state = make_lab("healthy")
    legacy = container.write_legacy_container(state, lab_name=state.name, bridge=state.info["bridge"], include=True)
    code, data, err = resolve(legacy["name"])
    assert code == 0, err
    [path] = data["paths"]
    assert path["guest"]["mac"] == legacy["mac"]
    assert roles(path)[:3] == [(legacy["veth"], "guest-port"), (state.info["bridge"], "bridge"),
                               (state.info["uplink"], "uplink")]
    assert any("not running" in n for n in path["notes"])


def test_namespace_guest_and_bad_targets(make_lab):
    state = make_lab("healthy")
    code, data, _ = resolve(state.info["target"])
    assert code == 0 and roles(data["paths"][0])[-1] == ("eth0", "upstream")
    code, _, err = resolve("tl2-no-such-thing-anywhere")
    assert code == ExitCode.USAGE and err.count("\n") == 1


def test_two_nics_on_two_bridges_and_nic_selection(make_lab):
    a, b = make_lab("healthy"), make_lab("healthy")
    ns = a.info["target"]
    second = f"{a.name}-g1"
    subprocess.run(["ip", "link", "add", second, "type", "veth", "peer", "name", "eth1", "netns", ns], check=True)
    try:
        subprocess.run(["ip", "link", "set", second, "master", b.info["bridge"], "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth1", "address", "02:47:00:00:11:11", "up"], check=True)
        code, data, err = resolve(ns)
        assert code == 0, err
        bridges = sorted(p["hops"][2]["name"] for p in data["paths"])
        assert bridges == sorted([a.info["bridge"], b.info["bridge"]])
        code, data, err = resolve(ns, "--nic", "02:47:00:00:11:11")
        assert code == 0 and [p["hops"][1]["name"] for p in data["paths"]] == [second]
        proc = subprocess.run([*CLI, "--dhcp", ns, "--timeout", "1"], capture_output=True, text=True)
        assert proc.returncode == ExitCode.USAGE and "--nic" in proc.stderr
    finally:
        subprocess.run(["ip", "link", "del", second], check=False, stderr=subprocess.DEVNULL)


def test_macvlan_guest_shows_lower_and_mode(make_lab):
    state = make_lab("healthy")
    ns = f"tl2-{state.name}-mv"
    lower = f"{state.name}-lw"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        # macvlan cannot sit on a bridge port: give it a lower device of its own (a veth end).
        subprocess.run(["ip", "link", "add", lower, "type", "veth", "peer", "name", f"{state.name}-lp"], check=True)
        subprocess.run(["ip", "link", "add", f"{state.name}-mv", "link", lower, "type", "macvlan", "mode",
                        "private"], check=True)
        subprocess.run(["ip", "link", "set", lower, "up"], check=True)
        subprocess.run(["ip", "link", "set", f"{state.name}-mv", "netns", ns], check=True)
        code, data, err = resolve(ns)
        assert code == 0, err
        path = data["paths"][0]
        assert roles(path) == [(f"{state.name}-mv", "guest"), (lower, "uplink")]
        assert path["hops"][0]["details"] == {"mode": "private", "lower": lower}
        check = subprocess.run([*CLI, "check", ns, "--json"], capture_output=True, text=True)
        assert "macvlan-isolation" in {f["code"] for f in json.loads(check.stdout)["findings"]}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "link", "del", lower], check=False, stderr=subprocess.DEVNULL)


def test_a_config_naming_a_missing_bridge_is_one_line_exit_2(make_lab):
    state = make_lab("healthy")
    legacy = container.write_legacy_container(state, lab_name=state.name, bridge="nosuchbr0", include=False)
    code, _, err = resolve(legacy["name"])
    assert code == ExitCode.USAGE and err.count("\n") == 1 and "nosuchbr0" in err and "does not exist" in err
