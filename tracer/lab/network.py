"""The base topology every scenario starts from, built with the same commands an operator types.

    guest (netns | QEMU tap | LXC veth) --- BRIDGE --- UPLINK veth ===> upstream netns: eth0 + dnsmasq

The upstream namespace stands in for "the wire": whatever sits beyond the host's uplink (a switch,
the DHCP server's host). dnsmasq serves 198.18.0.0/24 there, and its OFFERs are unicast to the
client's MAC unless the client asks for broadcast (udhcpc does not), so the bridge's FDB decides
whether they reach the guest: that is what makes the fdb-mismatch outage reproducible.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tracer.lab.names import DHCP_RANGE, PREFIX_LEN, SERVER_IP, LabNames
from tracer.lab.shell import quiet, run
from tracer.lab.state import LabState

GUEST_SCRIPT = """#!/bin/sh
# udhcpc hook of the lab guest: configure the lease, say so, then ARP for the server.
case "$1" in
  deconfig) ip addr flush dev "$interface" 2>/dev/null ;;
  bound|renew)
    ip addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "tl2-guest: bound $ip from $serverid" >> "$TL2_LOG"
    busybox arping -c 1 -w 1 -I "$interface" "$serverid" >/dev/null 2>&1 ;;
esac
exit 0
"""

GUEST_LOOP = (
    'while :; do busybox udhcpc -i eth0 -n -q -t 3 -T 2 -s "$TL2_SCRIPT" >/dev/null 2>&1'
    ' || echo "tl2-guest: no lease" >> "$TL2_LOG"; sleep 3; done'
)
"""A guest that keeps asking: a full DORA (or a retry) every few seconds, as a booting VM would."""


def start_process(
    state: LabState, argv: list[str], *, netns: str, match: str, env: dict[str, str] | None = None
) -> int:
    """Start a daemon inside a lab namespace, detached from our session so it outlives `lab up`.

    Every lab process lives in a lab namespace, so teardown can also find it by `ip netns pids`
    even if the pid recorded here is lost.
    """
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    state.add("processes", {"pid": proc.pid, "match": match})
    return proc.pid


def is_ours(pid: int, match: str) -> bool:
    """Whether `pid` still is the process we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return match in cmdline


def stop_process(pid: int, match: str) -> None:
    if is_ours(pid, match):
        _kill_wait([pid])


def kill_namespace_processes(netns: str) -> None:
    pids = run(["ip", "netns", "pids", netns], check=False).stdout.split()
    _kill_wait([int(p) for p in pids if p.isdigit()])


def _kill_wait(pids: list[int], grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when it is our own child, so a zombie counts as gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _quiet_ipv6(dev: str, netns: str | None = None) -> None:
    """No IPv6 on lab links: router solicitations and MLD reports would only add noise to captures."""
    quiet(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], netns=netns)


def build_base(state: LabState, names: LabNames, *, pin_bridge_mac: bool = True) -> None:
    """Bridge, uplink veth, upstream namespace. Each object is recorded before it is created."""
    Path(names.run_dir).mkdir(parents=True, exist_ok=True)
    state.add("paths", names.run_dir)
    state.add("namespaces", names.upstream_ns)
    run(["ip", "netns", "add", names.upstream_ns])
    run(["ip", "link", "set", "lo", "up"], netns=names.upstream_ns)

    state.add("links", names.bridge)
    # STP off and no forward delay: a port forwards as soon as it is up, like most cloud bridges.
    run(["ip", "link", "add", names.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    if pin_bridge_mac:
        run(["ip", "link", "set", names.bridge, "address", names.bridge_mac])
    _quiet_ipv6(names.bridge)

    state.add("links", names.uplink)
    run(["ip", "link", "add", names.uplink, "type", "veth", "peer", "name", "eth0", "netns", names.upstream_ns])
    _quiet_ipv6(names.uplink)
    run(["ip", "link", "set", names.uplink, "master", names.bridge, "up"])
    run(["ip", "link", "set", names.bridge, "up"])
    ns = names.upstream_ns
    _quiet_ipv6("eth0", ns)
    run(["ip", "link", "set", "eth0", "address", names.upstream_mac, "up"], netns=ns)
    run(["ip", "addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", "eth0"], netns=ns)


def start_dhcp_server(state: LabState, names: LabNames) -> dict[str, str | int]:
    """dnsmasq in the upstream namespace, logging every DHCP exchange to a file tests can read."""
    log = f"{names.run_dir}/dnsmasq.log"
    leases = f"{names.run_dir}/dnsmasq.leases"
    pid = start_process(
        state,
        [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
            "--bind-interfaces", f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},1h",
            f"--dhcp-leasefile={leases}", f"--pid-file={names.run_dir}/dnsmasq.pid",
            "--log-dhcp", f"--log-facility={log}", "--dhcp-authoritative",
            # No ICMP/ARP probe of an address before offering it: it delays a new client's first
            # OFFER by ~3 s, which would hide how fast the path itself answers.
            "--no-ping",
        ],
        netns=names.upstream_ns,
        match="dnsmasq",
    )
    return {
        "namespace": names.upstream_ns, "interface": "eth0", "address": SERVER_IP,
        "range": "-".join(DHCP_RANGE), "log": log, "leases": leases, "pid": pid,
    }


def add_ns_guest(state: LabState, names: LabNames, *, client: bool = True) -> dict[str, str]:
    """A namespace guest on the bridge; with `client` it runs the lab's DHCP-then-ARP loop."""
    ns = names.guest_ns
    state.add("namespaces", ns)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "set", "lo", "up"], netns=ns)
    state.add("links", names.guest_port)
    run(["ip", "link", "add", names.guest_port, "type", "veth", "peer", "name", "eth0", "netns", ns])
    _quiet_ipv6(names.guest_port)
    _quiet_ipv6("eth0", ns)
    run(["ip", "link", "set", "eth0", "address", names.ns_guest_mac, "up"], netns=ns)
    run(["ip", "link", "set", names.guest_port, "master", names.bridge, "up"])
    log = f"{names.run_dir}/guest.log"
    if client:
        script = Path(names.run_dir) / "udhcpc.script"
        script.write_text(GUEST_SCRIPT)
        script.chmod(0o755)
        start_process(
            state, ["sh", "-c", GUEST_LOOP], netns=ns, match="udhcpc",
            env={"TL2_SCRIPT": str(script), "TL2_LOG": log},
        )
    return {"kind": "ns", "target": ns, "mac": names.ns_guest_mac, "port": names.guest_port,
            "interface": "eth0", "log": log}
