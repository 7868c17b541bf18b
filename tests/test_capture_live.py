"""Capture on a real lab: every hop, directions, kernel times, counters, probes, vanishing hops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from tracer.capture import probe
from tracer.capture.dissect import dissect
from tracer.capture.live import HopSpec as Hop
from tracer.capture.live import RawFrame, Sniffer
from tracer.capture.netns import netns_path, run_in
from tracer.errors import CaptureError
from tracer.lab.names import SERVER_IP
from tracer.model import Observation

pytestmark = pytest.mark.live

UP_PATH = ("guest", "port", "uplink", "upstream")
"""Path order of the hops a frame crosses on its way to the server (the bridge device is aside)."""
EXPECT_UP = {"guest": "out", "port": "in", "bridge": "in", "uplink": "out", "upstream": "in"}
EXPECT_DOWN = {"upstream": "out", "uplink": "in", "port": "out", "guest": "in"}


def lab_hops(n: str) -> dict[str, Hop]:
    return {"guest": Hop("eth0", f"tl2-{n}-guest"), "port": Hop(f"{n}-g0"), "bridge": Hop(f"{n}-br"),
            "uplink": Hop(f"{n}-up"), "upstream": Hop("eth0", f"tl2-{n}-up")}


def promisc(hop: Hop) -> tuple[int, bool]:
    """(promiscuity count, IFF_PROMISC as requested by a user): both must be untouched by capture."""
    cmd = ["ip", "-d", "-j", *(["-n", hop.netns] if hop.netns else []), "link", "show", hop.name]
    link = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[0]
    return link["promiscuity"], "PROMISC" in link["flags"]


def collect(sn: Sniffer, until, timeout: float) -> list[Observation]:
    seen: list[Observation] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += [dissect(f) for f in sn.poll(0.1)]
        if until(seen):
            break
    return seen


def full_dora(role_of: dict[str, str]):
    """A predicate: some xid whose four messages were each seen at every hop on their way."""

    def done(seen: list[Observation]) -> str | None:
        at = defaultdict(set)
        for o in seen:
            if o.protocol == "dhcp":
                at[o.key].add((o.message, role_of[o.hop]))
        for key, got in at.items():
            want = ({(m, r) for m in ("DISCOVER", "REQUEST") for r in EXPECT_UP}
                    | {(m, r) for m in ("OFFER", "ACK") for r in EXPECT_DOWN})
            if want <= got:
                return key
        return None

    return done


def test_full_dora_at_every_hop_with_direction_kernel_time_and_no_drops(make_lab):
    n = make_lab("healthy").name
    hops = lab_hops(n)
    role_of = {h.label: role for role, h in hops.items()}
    before = {role: promisc(h) for role, h in hops.items()}
    with Sniffer(list(hops.values())) as sn:
        during = {role: promisc(h) for role, h in hops.items()}
        seen = collect(sn, full_dora(role_of), timeout=15)
        first = {s.hop: s for s in sn.stats()}
        second = {s.hop: s for s in sn.stats()}
        rcvbuf = dict(sn.rcvbuf)
    after = {role: promisc(h) for role, h in hops.items()}
    assert before == during == after, "capturing changed an interface's promiscuity"

    key = full_dora(role_of)(seen)
    assert key, f"no complete DORA seen: {sorted({(o.hop, o.message) for o in seen})}"
    mine = [o for o in seen if o.key == key]
    for message, expect in (("DISCOVER", EXPECT_UP), ("REQUEST", EXPECT_UP), ("OFFER", EXPECT_DOWN),
                            ("ACK", EXPECT_DOWN)):
        at = {role_of[o.hop]: o for o in mine if o.message == message}
        assert {r: str(at[r].direction) for r in expect} == expect, message
        order = UP_PATH if expect is EXPECT_UP else tuple(reversed(UP_PATH))
        times = [at[r].time for r in order]
        # Kernel timestamps: the skb is stamped when each device receives or transmits it, so they
        # never decrease along the path (the bridge device shares the port's receive stamp).
        assert times == sorted(times), (message, times)
        assert times[-1] - times[0] < 0.5
        if expect is EXPECT_UP:
            assert at["bridge"].time >= at["port"].time
        else:
            assert "bridge" not in at, "a unicast reply forwarded between ports does not show on the bridge device"
    assert abs(mine[0].time - time.time()) < 60, "timestamps are epoch seconds"

    for label, s in second.items():
        assert s.drops == 0 and s.packets >= first[label].packets > 0, s
    # SO_RCVBUFFORCE as root: 8 MiB asked, the kernel doubles it (above net.core.rmem_max).
    assert all(size >= 8 * 1024 * 1024 for size in rcvbuf.values()), rcvbuf


def test_probe_discover_gets_an_offer_at_the_guest_port_within_a_second(make_lab):
    state = make_lab("healthy")
    n, mac = state.name, state.info["guest"]["mac"]
    hops = lab_hops(n)
    with Sniffer([hops["guest"], hops["port"], hops["uplink"]]) as sn:
        t0 = time.time()
        xid = probe.send_dhcp_discover(hops["guest"].netns, "eth0", mac)
        key = f"xid 0x{xid:08x}"
        seen = collect(sn, lambda s: any(o.key == key and o.message == "OFFER" and o.hop == f"{n}-g0" for o in s),
                       timeout=1.0)
        offer = next((o for o in seen if o.key == key and o.message == "OFFER" and o.hop == f"{n}-g0"), None)
        assert offer is not None, f"no OFFER for {key} at {n}-g0 within 1 s"
        assert str(offer.direction) == "out" and offer.client_mac == mac and offer.time - t0 < 1.0
        sent = next(o for o in seen if o.key == key and o.message == "DISCOVER" and o.hop == hops["guest"].label)
        assert (str(sent.direction), sent.src_mac, sent.client_mac) == ("out", mac, mac)

        probe.send_arp_request(hops["guest"].netns, "eth0", mac, "0.0.0.0", SERVER_IP)
        arp_key = f"who-has {SERVER_IP} tell 0.0.0.0"
        seen = collect(sn, lambda s: any(o.key == arp_key and o.message == "reply" and o.hop == f"{n}-g0"
                                         for o in s), timeout=1.0)
        assert {(o.message, o.hop) for o in seen if o.key == arp_key} >= {("request", f"{n}-g0"),
                                                                         ("reply", f"{n}-g0")}


def test_an_interface_deleted_mid_capture_is_gone_not_raised(make_lab):
    n = make_lab("healthy").name
    hops = lab_hops(n)
    with Sniffer([hops["guest"], hops["port"], hops["uplink"]]) as sn:
        sn.poll(0.1)
        subprocess.run(["ip", "link", "del", f"{n}-g0"], check=True)  # takes the guest's eth0 (its peer) too
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(sn.gone) < 2:
            sn.poll(0.1)
        assert sn.gone == {f"{n}-g0", hops["guest"].label}
        sn.poll(0.1)  # still callable after hops vanished
        assert {s.hop for s in sn.stats()} == {h.label for h in (hops["guest"], hops["port"], hops["uplink"])}


def test_a_link_going_down_and_up_is_not_gone(make_lab):
    """A socket on a link set down gets ENETDOWN once and is re-hooked when the link comes back."""
    state = make_lab("healthy")
    n, mac = state.name, state.info["guest"]["mac"]
    with Sniffer([Hop(f"{n}-g0")]) as sn:
        subprocess.run(["ip", "link", "set", f"{n}-g0", "down"], check=True)
        collect(sn, lambda s: False, timeout=0.7)
        assert not sn.gone
        subprocess.run(["ip", "link", "set", f"{n}-g0", "up"], check=True)
        time.sleep(0.2)
        xid = probe.send_dhcp_discover(f"tl2-{n}-guest", "eth0", mac)
        seen = collect(sn, lambda s: any(o.key == f"xid 0x{xid:08x}" for o in s), timeout=2)
        assert any(o.key == f"xid 0x{xid:08x}" and o.hop == f"{n}-g0" for o in seen)
        assert not sn.gone


def test_a_burst_of_back_to_back_frames_is_not_dropped(make_lab):
    """2000 ARP requests as fast as a raw socket sends them, read only afterwards: the buffer holds them."""
    state = make_lab("healthy")
    n, mac = state.name, state.info["guest"]["mac"]
    frame = probe.arp_request_frame(mac, "0.0.0.0", "198.18.0.250")  # an address nobody has
    count = 2000

    def burst() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
            for _ in range(count):
                s.sendto(frame, ("eth0", 0x0806))

    with Sniffer([Hop(f"{n}-g0"), Hop(f"{n}-up")]) as sn:
        run_in(f"tl2-{n}-guest", burst)
        t0 = time.perf_counter()
        raw: list[RawFrame] = []
        while True:
            got = sn.poll(0.3)
            if not got:
                break
            raw += got
        elapsed = time.perf_counter() - t0
        stats = {s.hop: s for s in sn.stats()}
    burst_at = {h: sum(1 for f in raw if f.hop == h and f.data == frame) for h in (f"{n}-g0", f"{n}-up")}
    assert burst_at == {f"{n}-g0": count, f"{n}-up": count}, (burst_at, stats)
    assert all(s.drops == 0 for s in stats.values()), stats
    print(f"read {len(raw)} frames in {elapsed:.3f} s (including 0.3 s idle)")


def test_a_missing_interface_or_namespace_is_a_capture_error_naming_it():
    with pytest.raises(CaptureError, match="tl2nosuch0"):
        Sniffer([Hop("lo"), Hop("tl2nosuch0")]).open()
    with pytest.raises(CaptureError, match="tl2-nosuch-ns"):
        Sniffer([Hop("eth0", "tl2-nosuch-ns")]).open()
    with Sniffer([Hop("lo"), Hop("tl2nosuch0")], partial=True) as sn:
        assert list(sn.failed) == ["tl2nosuch0"] and sn.sniffing == ["lo"]
    with pytest.raises(CaptureError):
        probe.send_arp_request(None, "tl2nosuch0", "02:00:00:00:00:01", "0.0.0.0", "198.18.0.1")


def test_without_cap_net_raw_it_is_a_privilege_error():
    code = ("from tracer.capture.live import Sniffer, HopSpec\nfrom tracer.errors import PrivilegeError\n"
            "try:\n    Sniffer([HopSpec('lo')]).open()\nexcept PrivilegeError as e:\n    print('PRIV', e)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, cwd="/")
    assert proc.stdout.startswith("PRIV") and "CAP_NET_RAW" in proc.stdout, proc.stdout + proc.stderr


def test_run_in_enters_the_namespace_on_another_thread_only(make_lab):
    state = make_lab("healthy")
    ns = f"tl2-{state.name}-guest"
    mine = os.readlink("/proc/self/ns/net")
    target = os.stat(netns_path(ns)).st_ino
    inside = run_in(ns, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside == target and os.readlink("/proc/self/ns/net") == mine
    pid = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()[0]
    assert run_in(f"pid:{pid}", lambda: os.stat("/proc/thread-self/ns/net").st_ino) == target
    assert run_in(netns_path(ns), lambda: socket.if_nametoindex("eth0")) > 0
    with pytest.raises(CaptureError, match="not a network namespace"):
        run_in("/proc/self/ns/uts", lambda: None)
