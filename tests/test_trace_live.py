"""The heart of the product, against real labs: `tracepath-l2 [--dhcp|--arp] TARGET`, live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import read, sh, wait_for
from tracer.errors import ExitCode

pytestmark = pytest.mark.live
CLI = [sys.executable, "-m", "tracer.cli"]


def trace(*args: str, timeout: float = 60) -> tuple[int, dict, str]:
    proc = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = {}
    return proc.returncode, data, proc.stderr


def seen(report: dict, hop: str, message: str) -> str | None:
    return next((o["direction"] for o in report["observations"] if o["hop"] == hop and o["message"] == message
                 and o["key"] == report["focus"]), None)


def codes(report: dict) -> set[str]:
    return {f["code"] for f in report["findings"]}


def test_healthy_namespace_guest_full_dora_at_every_hop(make_lab):
    state = make_lab("healthy")
    n = state.name
    code, report, err = trace("--dhcp", state.info["target"], "--timeout", "20")
    assert code == ExitCode.OK, (err, report.get("verdict"))
    assert report["verdict"]["status"] == "ok" and report["findings"] == []
    for msg, g0, up in (("DISCOVER", "in", "out"), ("OFFER", "out", "in"), ("REQUEST", "in", "out"),
                        ("ACK", "out", "in")):
        assert seen(report, f"{n}-g0", msg) == g0 and seen(report, f"{n}-up", msg) == up, msg
    assert seen(report, f"tl2-{n}-guest:eth0", "DISCOVER") == "out"
    assert all(c["drops"] == 0 for c in report["capture"])
    assert 0 < report["timings"]["open"] < report["timings"]["total"] and report["timings"]["analyze"] >= 0


def test_healthy_arp(make_lab):
    state = make_lab("healthy")
    code, report, err = trace("--arp", state.info["target"], "--timeout", "20")
    assert code == ExitCode.OK, (err, report.get("verdict"))
    assert seen(report, f"{state.name}-up", "request") == "out" and seen(report, f"{state.name}-g0", "reply") == "out"


def test_healthy_lxc_guest(make_lab):
    state = make_lab("healthy", guest="lxc")
    code, report, err = trace("--dhcp", state.info["target"], "--timeout", "20")
    assert code == ExitCode.OK, (err, report.get("verdict"))
    assert seen(report, state.info["guest"]["port"], "ACK") == "out"


def test_fdb_mismatch_with_probe_names_uplink_and_guest_port(make_lab):
    state = make_lab("fdb-mismatch")
    n = state.name
    start = time.monotonic()
    code, report, err = trace("--dhcp", "--probe", state.info["target"], "--timeout", "20")
    elapsed = time.monotonic() - start
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    assert report["verdict"]["between"] == [f"{n}-up", f"{n}-g0"]
    assert report["verdict"]["message"].startswith("OFFER")
    fdb = next(f for f in report["findings"] if f["code"] == "fdb-mismatch")
    assert fdb["hop"] == f"{n}-up" and f"{n}-g0" in fdb["explanation"]
    assert report["probe"]["sent"] and elapsed < 20  # ended on certainty, not the timeout (speed: bench/)


def test_own_address_loop_quotes_the_kernel(make_lab):
    state = make_lab("own-address-loop")
    line = f"{state.info['bridge']}: received packet on {state.info['uplink']} with own address"
    deadline = time.monotonic() + 40
    while line not in sh("dmesg") and time.monotonic() < deadline:
        time.sleep(0.5)
    code, report, err = trace("--dhcp", "--probe", state.info["target"], "--timeout", "20")
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    own = next(f for f in report["findings"] if f["code"] == "own-address-loop")
    assert line in own["evidence"][0]


def test_filter_drop_names_the_rule_and_the_drop_reason(make_lab):
    state = make_lab("filter-drop")
    n = state.name
    code, report, err = trace("--dhcp", "--probe", state.info["target"], "--timeout", "20")
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    assert report["verdict"]["between"] == [f"{n}-g0", f"{n}-up"]
    fd = next(f for f in report["findings"] if f["code"] == "filter-drop")
    assert f"tl2_{n}" in fd["evidence"][0] and "forward" in fd["evidence"][0]
    kd = next(f for f in report["findings"] if f["code"] == "kernel-drop")
    assert any("NETFILTER_DROP" in e for e in kd["evidence"])


def test_upstream_silent_names_the_uplink_as_last_hop(make_lab):
    state = make_lab("upstream-silent")
    code, report, err = trace("--dhcp", "--probe", state.info["target"], "--timeout", "20")
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    assert report["verdict"]["between"] == [f"{state.name}-up", "upstream"]
    nr = next(f for f in report["findings"] if f["code"] == "upstream-no-reply")
    assert nr["hop"] == f"{state.name}-up"


def test_guest_port_down_is_link_down(make_lab):
    state = make_lab("healthy")
    subprocess.run(["ip", "link", "set", f"{state.name}-g0", "down"], check=True)
    code, report, err = trace("--dhcp", state.info["target"], "--timeout", "5")
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    assert "link-down" in codes(report)


def test_unknown_target_is_one_line_exit_2():
    proc = subprocess.run([*CLI, "--dhcp", "no-such-guest-anywhere"], capture_output=True, text=True)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.count("\n") == 1 and "no-such-guest-anywhere" in proc.stderr


def test_ctrl_c_gives_a_partial_report_and_leaves_nothing(make_lab):
    state = make_lab("upstream-silent")
    proc = subprocess.Popen([*CLI, "--dhcp", state.info["target"], "--timeout", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["interrupted"] is True and proc.returncode in (ExitCode.INTERRUPTED, ExitCode.STOPPED)
    assert not [d for d in os.listdir("/sys/kernel/tracing/instances")
                if d.startswith("tracepath-l2")] if os.path.isdir("/sys/kernel/tracing/instances") else True
    for dev in (f"{state.name}-g0", f"{state.name}-br", f"{state.name}-up"):
        flags = int(open(f"/sys/class/net/{dev}/flags").read(), 16)
        assert not (dev.endswith("-br") and flags & 0x100), f"{dev} left promiscuous"


def test_guest_vanishing_mid_trace_is_a_partial_report(make_lab):
    state = make_lab("upstream-silent")
    proc = subprocess.Popen([*CLI, "--dhcp", state.info["target"], "--timeout", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    subprocess.run(["ip", "link", "del", f"{state.name}-g0"], check=True)
    out, err = proc.communicate(timeout=40)
    assert "Traceback" not in err
    report = json.loads(out)
    assert f"{state.name}-g0" in report["vanished"]  # the veth takes the guest side with it


@pytest.mark.vm
def test_vm_healthy_then_fdb_mismatch(vm_lab):
    from tests.test_lab_guests import fault

    guest = vm_lab.info["guest"]
    code, report, err = trace("--dhcp", "instance-0347", "--timeout", "30")
    assert code == ExitCode.OK, (err, report.get("verdict"))
    assert seen(report, guest["port"], "ACK") == "out" and seen(report, vm_lab.info["uplink"], "OFFER") == "in"
    with fault(vm_lab, "fdb-mismatch"):
        code, report, err = trace("--dhcp", "instance-00000347", "--timeout", "30")
    assert code == ExitCode.STOPPED, (err, report.get("verdict"))
    assert report["verdict"]["message"].startswith("OFFER")
    assert report["verdict"]["between"] == [vm_lab.info["uplink"], guest["port"]]
    fdb = next(f for f in report["findings"] if f["code"] == "fdb-mismatch")
    assert fdb["hop"] == vm_lab.info["uplink"] and guest["port"] in fdb["explanation"]


def test_two_bridges_patched_by_a_veth_are_one_path(make_lab):
    """guest -> g0 -> br -> pa ⇄ pb -> b2 -> up -> dnsmasq: every hop sniffed, and an FDB entry
    wrong on the second bridge is found there (the guest is behind its patch port, not its uplink)."""
    state = make_lab("healthy")
    n = state.name
    b2, pa, pb = f"{n}-b2", f"{n}-pa", f"{n}-pb"
    try:
        for cmd in (f"link add {b2} type bridge stp_state 0", f"link add {pa} type veth peer name {pb}",
                    f"link set {n}-up master {b2}", f"link set {pa} master {n}-br", f"link set {pb} master {b2}",
                    f"link set {pa} up", f"link set {pb} up", f"link set {b2} up"):
            sh("ip", *cmd.split())
        assert wait_for(lambda: read(f"/sys/class/net/{b2}/operstate").strip() == "up", 5)  # linkwatch lags
        code, report, err = trace("--dhcp", state.info["target"], "--timeout", "20")
        assert [(h["name"], h["role"]) for h in report["path"]] == [
            ("eth0", "guest"), (f"{n}-g0", "guest-port"), (f"{n}-br", "bridge"), (pa, "uplink"), (pb, "patch"),
            (b2, "bridge"), (f"{n}-up", "uplink"), ("eth0", "upstream")]
        assert code == ExitCode.OK, (err, report.get("verdict"))
        for hop, d in ((f"{n}-g0", "in"), (pa, "out"), (pb, "in"), (f"{n}-up", "out")):
            assert seen(report, hop, "DISCOVER") == d, hop
            assert seen(report, hop, "ACK") == ("out" if d == "in" else "in"), hop

        sh("bridge", "fdb", "replace", state.info["guest"]["mac"], "dev", f"{n}-up", "master", "static", "sticky")
        code, report, err = trace("--dhcp", state.info["target"], "--timeout", "20")
        assert code == ExitCode.STOPPED, (err, report.get("verdict"))
        fdb = next(f for f in report["findings"] if f["code"] == "fdb-mismatch")
        assert fdb["hop"] == f"{n}-up" and f"behind {pb}" in fdb["explanation"] and fdb["severity"] == "error"
        assert seen(report, pb, "OFFER") is None and seen(report, f"{n}-up", "OFFER") == "in"
    finally:
        subprocess.run(["ip", "link", "set", f"{n}-up", "master", f"{n}-br"], capture_output=True)
        for link in (pa, b2):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
