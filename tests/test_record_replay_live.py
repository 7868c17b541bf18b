"""Record live, replay offline: the same verdict; and an operator's own tcpdump files replay too."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tracer.errors import ExitCode

pytestmark = pytest.mark.live
CLI = [sys.executable, "-m", "tracer.cli"]


def run(*args: str) -> tuple[int, dict]:
    proc = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, timeout=90)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def summary(report: dict) -> tuple:
    return (report["verdict"]["status"], report["verdict"]["between"], sorted({f["code"] for f in report["findings"]}))


@pytest.mark.parametrize("scenario", ["healthy", "fdb-mismatch", "own-address-loop", "upstream-silent",
                                      "filter-drop", "bridge-mac-float"])
def test_live_record_then_replay_gives_the_same_verdict(make_lab, tmp_path, scenario):
    state = make_lab(scenario)
    bundle = tmp_path / "bundle"
    live_code, live = run("--dhcp", "--probe", state.info["target"], "--timeout", "15", "--record", str(bundle))
    replay_code, replayed = run("replay", str(bundle))
    assert replayed["replay"] is True
    assert (replay_code, summary(replayed)) == (live_code, summary(live))
    assert [o for o in replayed["observations"]] == [o for o in live["observations"]]
    names = subprocess.run(["tshark", "-r", str(bundle / "capture.pcapng"), "-T", "fields", "-e",
                            "frame.interface_name"], capture_output=True, text=True, check=True).stdout.split()
    assert set(names) <= set(live["sniffed"]) and f"{state.name}-g0" in names


def test_replay_of_handmade_tcpdump_captures_finds_fdb_mismatch(make_lab, tmp_path):
    state = make_lab("fdb-mismatch")
    n = state.name
    hops = [f"{n}-g0", f"{n}-br", f"{n}-up"]
    dumps = [subprocess.Popen(["tcpdump", "-i", h, "-U", "-n", "-w", str(tmp_path / f"{h}.pcap"),
                               "udp port 67 or udp port 68 or arp"], stderr=subprocess.DEVNULL) for h in hops]
    try:
        time.sleep(7)  # the guest retries its DISCOVER every 2 s
    finally:
        for d in dumps:
            d.terminate()
            d.wait(timeout=10)
    (tmp_path / "fdb.txt").write_text(subprocess.run(["bridge", "fdb", "show"], capture_output=True,
                                                     text=True).stdout)
    (tmp_path / "dmesg.txt").write_text(subprocess.run(["dmesg"], capture_output=True, text=True).stdout)
    args = [a for h in hops for a in ("--hop", f"{h}={tmp_path / (h + '.pcap')}")]
    code, report = run("replay", *args, "--fdb", str(tmp_path / "fdb.txt"), "--dmesg", str(tmp_path / "dmesg.txt"))
    assert code == ExitCode.STOPPED, report["verdict"]
    assert report["verdict"]["between"] == [f"{n}-up", f"{n}-g0"]
    assert "fdb-mismatch" in {f["code"] for f in report["findings"]}


def test_flood_through_the_bridge_loses_no_dhcp_frame(make_lab):
    """Two extra namespaces flood UDP (not DHCP) through the same bridge and uplink during a trace."""
    state = make_lab("healthy")
    n = state.name
    ns, port = f"tl2-{n}-fl", f"{n}-fl"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "link", "set", port, "master", f"{n}-br", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "198.18.0.50/24", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", f"tl2-{n}-up", "iperf3", "-s", "-1", "-B", "198.18.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        flood = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-c", "198.18.0.1", "-u", "-b", "0",
                                  "-l", "64", "-t", "12"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            code, report = run("--dhcp", state.info["target"], "--timeout", "10")
        finally:
            flood.kill()
            server.kill()
            flood.wait()
            server.wait()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "link", "del", port], check=False, stderr=subprocess.DEVNULL)
    assert code == ExitCode.OK, report["verdict"]
    assert all(c["drops"] == 0 for c in report["capture"]), report["capture"]
    focus = [o for o in report["observations"] if o["key"] == report["focus"]]
    for hop in (f"{n}-g0", f"{n}-up"):
        assert {o["message"] for o in focus if o["hop"] == hop} >= {"DISCOVER", "OFFER", "REQUEST", "ACK"}
