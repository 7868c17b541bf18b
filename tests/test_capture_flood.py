"""Under a flood of other traffic the kernel filter keeps Python out of it, and no DHCP frame is lost.

Two extra namespaces hang off the lab's bridge; one sends paced non-DHCP UDP to the other (learned
unicast, addresses only inside them, no IP configured anywhere) while the guest's DHCP runs and the
test fires DISCOVER probes. Both flood ports are sniffed too, so two sockets see the whole flood.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tracer.capture import probe
from tracer.capture.dissect import dissect, is_dhcp_or_arp
from tracer.capture.live import HopSpec, RawFrame, Sniffer
from tracer.capture.netns import run_in

pytestmark = pytest.mark.live

FLOOD_SECONDS = 5.0
TARGET_PPS = 150_000
MIN_PPS = 50_000
FLOOD_A_MAC, FLOOD_B_MAC = "02:f1:00:00:00:0a", "02:f1:00:00:00:0b"
"""Locally administered; set explicitly (sysfs read from a setns'd thread would show the host's links)."""

FLOODER = r"""
import socket, struct, sys, time
ifname, secs, pps = sys.argv[1], float(sys.argv[4]), int(sys.argv[5])
dst, src = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
payload = b"tracepath-l2 flood!"
udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
addrs = bytes([198, 18, 9, 1]), bytes([198, 18, 9, 2])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, *addrs)
words = struct.unpack("!10H", ip)
total = sum(words); total = (total & 0xFFFF) + (total >> 16); total = (total & 0xFFFF) + (total >> 16)
ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]   # br_netfilter drops bad IP checksums
frame = dst + src + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((ifname, 0))
send, batch, sent = s.send, 250, 0
t0 = time.monotonic()
while True:
    now = time.monotonic()
    if now - t0 >= secs:
        break
    ahead = sent / pps - (now - t0)
    if ahead > 0:
        time.sleep(ahead)
    for _ in range(batch):
        send(frame)
    sent += batch
print(sent, time.monotonic() - t0, flush=True)
"""


@pytest.fixture
def flood_lab(make_lab):
    state = make_lab("healthy")
    n = state.name
    made_links, made_ns = [], []
    try:
        for side, mac in (("fa", FLOOD_A_MAC), ("fb", FLOOD_B_MAC)):
            ns, port = f"tl2-{n}-{side}", f"{n}-{side}"
            made_ns.append(ns)
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made_links.append(port)
            subprocess.run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
            for args in (["sysctl", "-qw", f"net.ipv6.conf.{port}.disable_ipv6=1"],
                         ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"],
                         ["ip", "-n", ns, "link", "set", "eth0", "address", mac, "up"],
                         ["ip", "link", "set", port, "master", f"{n}-br", "up"]):
                subprocess.run(args, check=True)
        yield state
    finally:
        for port in made_links:
            subprocess.run(["ip", "link", "del", port], capture_output=True)
        for ns in made_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def tx_packets(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/tx_packets").read_text())


def all_offered(raw: list[RawFrame], probes: list[str], guest: str) -> bool:
    """Whether every probe's OFFER has come back to the guest, so the drain can stop early."""
    offered = {o.key for o in map(dissect, raw) if o.message == "OFFER" and o.hop == guest}
    return set(probes) <= offered


def test_no_dhcp_frame_is_lost_under_a_flood(flood_lab):
    n, mac = flood_lab.name, flood_lab.info["guest"]["mac"]
    fa, fb = f"tl2-{n}-fa", f"tl2-{n}-fb"
    fa_mac, fb_mac = FLOOD_A_MAC, FLOOD_B_MAC
    route_up = {"guest": HopSpec("eth0", f"tl2-{n}-guest"), "port": HopSpec(f"{n}-g0"), "bridge": HopSpec(f"{n}-br"),
                "uplink": HopSpec(f"{n}-up"), "upstream": HopSpec("eth0", f"tl2-{n}-up"),
                "flood-a": HopSpec(f"{n}-fa"), "flood-b": HopSpec(f"{n}-fb")}
    role_of = {h.label: r for r, h in route_up.items()}
    broadcast_route = set(route_up)                                   # DISCOVER, REQUEST: flooded everywhere
    unicast_route = {"upstream", "uplink", "port", "guest"}           # OFFER, ACK: unicast to the guest's MAC

    def learn() -> None:  # one frame from fb so the bridge forwards the flood to its port only
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
            s.sendto(bytes.fromhex(fa_mac.replace(":", "")) + bytes.fromhex(fb_mac.replace(":", ""))
                     + struct.pack("!H", 0x88B5) + b"\0" * 46, ("eth0", 0x88B5))

    raw: list[RawFrame] = []
    probes: list[str] = []
    with Sniffer(list(route_up.values())) as sn:
        opened = time.time()  # sockets open one hop after another: a frame before this may miss the last ones
        run_in(fb, learn)
        before = tx_packets(f"{n}-fb")
        flooder = subprocess.Popen(
            ["ip", "netns", "exec", fa, sys.executable, "-c", FLOODER, "eth0", fb_mac.replace(":", ""),
             fa_mac.replace(":", ""), str(FLOOD_SECONDS), str(TARGET_PPS)],
            stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        try:
            time.sleep(0.3)
            next_probe = time.monotonic()
            while flooder.poll() is None:
                if time.monotonic() >= next_probe and time.monotonic() - started < FLOOD_SECONDS - 0.3:
                    probes.append(f"xid 0x{probe.send_dhcp_discover(f'tl2-{n}-guest', 'eth0', mac):08x}")
                    next_probe = time.monotonic() + 0.1
                raw += sn.poll(0.05)
            out, _ = flooder.communicate(timeout=10)
        finally:
            if flooder.poll() is None:
                flooder.kill()
        forwarded = tx_packets(f"{n}-fb") - before
        deadline = time.monotonic() + 5.0  # a starved dnsmasq may answer the last probes late
        while time.monotonic() < deadline and not all_offered(raw, probes, route_up["guest"].label):
            raw += sn.poll(0.1)
        raw += sn.poll(0.3)
        settled = time.time() - 0.3  # a frame first seen later may still be on its way: not judged
        stats = {s.hop: s for s in sn.stats()}
        rcvbuf = dict(sn.rcvbuf)

    sent, seconds = out.split()
    rate = forwarded / float(seconds)
    print(f"\nflood: {int(sent)} frames sent, {forwarded} forwarded to {n}-fb in {float(seconds):.2f} s "
          f"= {rate:,.0f} pps; {len(raw)} frames reached Python; {len(probes)} probes; rcvbuf {set(rcvbuf.values())}; "
          f"drops {sum(s.drops for s in stats.values())}")
    assert rate >= MIN_PPS, f"the flood only reached {rate:,.0f} pps"
    assert all(is_dhcp_or_arp(f.data) for f in raw), "a frame the kernel filter should have dropped reached Python"
    assert all(s.drops == 0 for s in stats.values()), stats

    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    first: dict[tuple[str, str], float] = {}
    for o in (dissect(f) for f in raw):
        if o.protocol == "dhcp" and o.message != "MALFORMED":
            seen[(o.key, o.message)].add(role_of[o.hop])
            first[(o.key, o.message)] = min(o.time, first.get((o.key, o.message), o.time))
    assert len(probes) >= 20
    for key in probes:
        assert seen[(key, "DISCOVER")] == broadcast_route, (key, seen[(key, "DISCOVER")])
        assert seen[(key, "OFFER")] >= unicast_route, (key, seen[(key, "OFFER")])
    for (key, message), roles in seen.items():
        if not opened <= first[(key, message)] <= settled:
            continue
        route = broadcast_route if message in ("DISCOVER", "REQUEST") else unicast_route
        assert roles >= route, f"{message} {key} missing at {sorted(route - roles)}"
