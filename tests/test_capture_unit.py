"""Capture without root: the kernel filter's constants and semantics, the dissector, probe frames."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.capture import bpf, probe
from tracer.capture.dissect import dissect, is_dhcp_or_arp
from tracer.capture.live import RawFrame
from tracer.capture.netns import netns_path
from tracer.errors import CaptureError
from tracer.model import Direction

GUEST = "02:47:00:00:00:02"
SERVER = "02:47:00:00:00:fe"
DHCP_NAMES = ["DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"]


# ---------------------------------------------------------------- the kernel filter
def tcpdump_dd(expression: str) -> tuple[bpf.Insn, ...]:
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump is needed to check the embedded programs (apt-get install tcpdump)")
    out = subprocess.run(["tcpdump", "-dd", expression], capture_output=True, text=True, check=True).stdout
    return tuple(tuple(int(x, 0) for x in line.strip(" {},").split(",")) for line in out.splitlines() if line)


@pytest.mark.parametrize("expression,program", [(bpf.LIVE_EXPRESSION, bpf.LIVE),
                                                (bpf.OFFLINE_EXPRESSION, bpf.OFFLINE)], ids=["live", "offline"])
def test_embedded_programs_are_what_tcpdump_compiles_today(expression, program):
    assert tcpdump_dd(expression) == program


def test_attach_filter_refuses_an_empty_program():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(ValueError):
        bpf.attach_filter(s, ())


def test_attach_filter_is_accepted_by_the_kernel():
    """SO_ATTACH_FILTER works on any socket: an unprivileged UDP socket proves the sock_fprog layout."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        bpf.attach_filter(s, bpf.OFFLINE)
        bpf.attach_filter(s, bpf.LIVE)


# ---------------------------------------------------------------- frames
def dhcp_frame(mtype: int, *, xid: int = 0x1234, sport: int = 68, dport: int = 67, vlan: int | None = None,
               src: str = GUEST, dst: str = "ff:ff:ff:ff:ff:ff", extra: list | None = None) -> bytes:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    eth = Ether(src=src, dst=dst)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=sport, dport=dport)
                 / BOOTP(chaddr=bytes.fromhex(GUEST.replace(":", "")), xid=xid, yiaddr="198.18.0.148")
                 / DHCP(options=[("message-type", mtype), *(extra or []), "end"]))


def arp_request() -> bytes:
    from scapy.layers.l2 import ARP, Ether

    return bytes(Ether(src=GUEST, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST, psrc="198.18.0.148",
                                                                 pdst="198.18.0.1"))


def arp_reply() -> bytes:
    from scapy.layers.l2 import ARP, Ether

    return bytes(Ether(src=SERVER, dst=GUEST) / ARP(op=2, hwsrc=SERVER, psrc="198.18.0.1", hwdst=GUEST,
                                                    pdst="198.18.0.148"))


def other_udp(dport: int = 53) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=GUEST, dst=SERVER) / IP(src="198.18.0.148", dst="198.18.0.1") / UDP(sport=40000,
                                                                                              dport=dport) / b"x")


def frame(data: bytes, *, outgoing: bool = False, vlan: int | None = None) -> RawFrame:
    return RawFrame("tap0", 1.5, outgoing, data, vlan)


# ---------------------------------------------------------------- dissect
@pytest.mark.parametrize("mtype,name", list(enumerate(DHCP_NAMES, 1)))
def test_every_dhcp_message_type(mtype, name):
    data = dhcp_frame(mtype, extra=[("server_id", "198.18.0.1"), ("requested_addr", "198.18.0.148")])
    obs = dissect(frame(data, outgoing=True))
    assert (obs.protocol, obs.message, obs.key, obs.xid) == ("dhcp", name, "xid 0x00001234", 0x1234)
    assert obs.client_mac == GUEST and obs.src_mac == GUEST and obs.dst_mac == "ff:ff:ff:ff:ff:ff"
    assert obs.direction is Direction.OUT and (obs.hop, obs.time) == ("tap0", 1.5)
    assert obs.details == {"yiaddr": "198.18.0.148", "server_id": "198.18.0.1", "requested_addr": "198.18.0.148"}
    assert obs.vlan is None
    assert is_dhcp_or_arp(data) and bpf.run(bpf.LIVE, data) and bpf.run(bpf.OFFLINE, data)


def test_server_to_client_and_relay_ports_are_dhcp_too():
    offer = dissect(frame(dhcp_frame(2, sport=67, dport=68, src=SERVER, dst=GUEST)))
    assert (offer.message, offer.direction, offer.client_mac) == ("OFFER", Direction.IN, GUEST)
    relayed = dissect(frame(dhcp_frame(1, sport=67, dport=67)))  # scapy alone would not see BOOTP here
    assert relayed.message == "DISCOVER"


def test_a_tag_in_the_bytes_and_a_tag_from_auxdata_both_give_the_vlan():
    tagged = dhcp_frame(1, vlan=2222)
    assert dissect(frame(tagged)).vlan == 2222
    assert dissect(frame(tagged)).message == "DISCOVER"
    stripped = dhcp_frame(1)
    obs = dissect(frame(stripped, vlan=2222))
    assert (obs.vlan, obs.message) == (2222, "DISCOVER")
    assert frame(stripped, vlan=2222).tagged() == tagged
    assert frame(stripped).tagged() == stripped


def test_live_filter_needs_the_tag_out_of_the_bytes_offline_does_not():
    tagged = dhcp_frame(1, vlan=7)
    assert bpf.run(bpf.LIVE, tagged) == 0
    assert bpf.run(bpf.OFFLINE, tagged) > 0 and is_dhcp_or_arp(tagged)


def test_arp_request_and_reply_share_a_key_and_a_client():
    req, rep = dissect(frame(arp_request())), dissect(frame(arp_reply()))
    assert (req.protocol, req.message, rep.message) == ("arp", "request", "reply")
    assert req.key == rep.key == "who-has 198.18.0.1 tell 198.18.0.148"
    assert req.client_mac == rep.client_mac == GUEST
    assert rep.details["hwsrc"] == SERVER


@pytest.mark.parametrize("data", [other_udp(53), other_udp(6767), b"\xff" * 14 + b"\x86\xdd" + b"\0" * 60],
                         ids=["dns", "udp", "ipv6ish"])
def test_other_traffic_is_neither_passed_nor_read(data):
    assert not is_dhcp_or_arp(data)
    assert bpf.run(bpf.OFFLINE, data) == 0
    assert dissect(frame(data)).message == "MALFORMED"


@pytest.mark.parametrize("cut", [0, 5, 13, 20, 40, 250, 280])
def test_truncated_frames_are_malformed_not_errors(cut):
    obs = dissect(frame(dhcp_frame(1)[:cut]))
    assert obs.message == "MALFORMED" and obs.key == "" and obs.details["length"] == cut
    assert obs.protocol in ("dhcp", "unknown")


def test_unknown_dhcp_type_and_odd_arp_are_malformed():
    assert dissect(frame(dhcp_frame(99))).message == "MALFORMED"
    from scapy.layers.l2 import ARP, Ether

    weird = bytes(Ether(src=GUEST, dst="ff:ff:ff:ff:ff:ff") / ARP(op=9, hwsrc=GUEST, psrc="1.2.3.4", pdst="1.2.3.5"))
    obs = dissect(frame(weird))
    assert (obs.protocol, obs.message) == ("arp", "MALFORMED")


def test_observations_round_trip_through_json():
    import json

    from tracer.model import Observation

    obs = dissect(frame(dhcp_frame(5)))
    assert Observation.from_dict(json.loads(json.dumps(obs.to_dict()))) == obs


# ---------------------------------------------------------------- the pre-check and the filter agree
ETHERTYPES = st.sampled_from([0x0800, 0x0806, 0x8100, 0x88A8, 0x9100, 0x86DD, 0x0000])


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    """Mostly well-formed headers with the fields the filter reads drawn from the interesting values."""
    head = draw(st.binary(min_size=12, max_size=12))
    out = head + struct.pack("!H", draw(ETHERTYPES))
    if draw(st.booleans()):
        out += draw(st.binary(min_size=2, max_size=2)) + struct.pack("!H", draw(ETHERTYPES))
    ihl = draw(st.sampled_from([5, 5, 5, 6, 0, 15]))
    frag = draw(st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001]))
    proto = draw(st.sampled_from([17, 17, 6, 1]))
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 0, 0, frag, 64, proto, 0, b"\0" * 4, b"\xff" * 4)
    ip += b"\0" * max(0, ihl * 4 - 20)
    ports = st.sampled_from([67, 68, 53, 9])
    udp = struct.pack("!HH", draw(ports), draw(ports)) + b"\0" * 4
    out += ip + udp + draw(st.binary(max_size=40))
    return out[: draw(st.integers(min_value=0, max_value=len(out)))]


@settings(max_examples=600, deadline=None)
@given(st.one_of(plausible_frames(), st.binary(max_size=120)))
def test_pre_check_has_exactly_the_kernel_filter_semantics(data):
    assert is_dhcp_or_arp(data) == (bpf.run(bpf.OFFLINE, data) > 0)
    if bpf.run(bpf.LIVE, data):
        assert is_dhcp_or_arp(data)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=600), plausible_frames()))
def test_random_bytes_never_raise_and_only_filtered_frames_are_read(data):
    obs = dissect(frame(data))
    assert obs.hop == "tap0"
    if obs.message != "MALFORMED":
        assert is_dhcp_or_arp(data) and obs.protocol in ("dhcp", "arp") and obs.key


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(dhcp_frame(3)) - 1), st.binary(min_size=1, max_size=4))
def test_damaged_dhcp_never_raises(pos, junk):
    data = dhcp_frame(3)
    damaged = data[:pos] + junk + data[pos + len(junk):]
    assert dissect(frame(damaged)).hop == "tap0"


# ---------------------------------------------------------------- the struct reader and scapy agree
def _both(data: bytes):
    from tracer.capture.dissect import _dissect, _read

    base = {"hop": "tap0", "time": 1.5, "vlan": None, "direction": Direction.IN,
            "dst_mac": data[0:6].hex(":"), "src_mac": data[6:12].hex(":")}
    fast = _read(data, dict(base))
    try:
        slow = _dissect(data, dict(base))
    except Exception as exc:  # noqa: BLE001 - what dissect() turns into MALFORMED
        slow = exc
    return fast, slow


def recorded_frames() -> list[bytes]:
    from pathlib import Path

    from tracer.bundle.pcapng import Reader

    out = []
    for file in sorted(Path(__file__).parent.parent.glob("captures/*/bundle/capture.pcapng")):
        with open(file, "rb") as fh:
            out += [rec.data for rec in Reader(fh, name=str(file)) if is_dhcp_or_arp(rec.data)]
    return out


def test_struct_reader_gives_what_scapy_gives_on_every_recorded_frame():
    frames = recorded_frames()
    assert len(frames) > 100
    for data in frames:
        fast, slow = _both(data)
        assert fast is not None and fast == slow


@pytest.mark.parametrize("data", [dhcp_frame(2, extra=[("server_id", "198.18.0.1")]),
                                  dhcp_frame(3, extra=[("requested_addr", "198.18.0.148"),
                                                       ("server_id", "198.18.0.1")]),
                                  dhcp_frame(5, sport=67, dport=67, vlan=7), arp_request(), arp_reply()])
def test_struct_reader_gives_what_scapy_gives(data):
    fast, slow = _both(data)
    assert fast is not None and fast == slow


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([dhcp_frame(3, extra=[("server_id", "198.18.0.1")]), dhcp_frame(1, vlan=3), arp_request(),
                        arp_reply()]),
       st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=6), st.booleans())
def test_struct_reader_never_disagrees_with_scapy(data, pos, junk, cut):
    """Damaged frames: the struct reader either gives up (scapy reads them) or says what scapy says."""
    pos %= len(data)
    damaged = data[:pos] if cut else data[:pos] + junk + data[pos + len(junk):]
    if not is_dhcp_or_arp(damaged):
        return
    fast, slow = _both(damaged)
    assert fast is None or fast == slow


# ---------------------------------------------------------------- probe frames (no sending here)
def test_probe_discover_is_a_valid_dhcp_discover_from_the_guest():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    data = probe.dhcp_discover_frame(GUEST, 0xDEADBEEF)
    obs = dissect(frame(data, outgoing=True))
    assert (obs.message, obs.key, obs.client_mac, obs.src_mac, obs.dst_mac) == (
        "DISCOVER", "xid 0xdeadbeef", GUEST, GUEST, "ff:ff:ff:ff:ff:ff")
    pkt = Ether(data)
    ip_sum, udp_sum = pkt[IP].chksum, pkt[UDP].chksum
    del pkt[IP].chksum, pkt[UDP].chksum
    again = Ether(bytes(pkt))
    assert (again[IP].chksum, again[UDP].chksum) == (ip_sum, udp_sum)
    assert pkt[UDP].sport == 68 and pkt[UDP].dport == 67 and is_dhcp_or_arp(data)


def test_probe_arp_is_a_request_with_the_guest_as_sender():
    data = probe.arp_request_frame(GUEST, "0.0.0.0", "198.18.0.1")
    obs = dissect(frame(data))
    assert (obs.message, obs.key, obs.client_mac, len(data)) == ("request", "who-has 198.18.0.1 tell 0.0.0.0",
                                                                 GUEST, 60)
    with pytest.raises(ValueError):
        probe.arp_request_frame("02:47", "0.0.0.0", "198.18.0.1")


# ---------------------------------------------------------------- namespaces, imports
def test_namespace_names_paths_and_pids():
    assert netns_path("tl2-x-guest") == "/run/netns/tl2-x-guest"
    assert netns_path("/proc/1/ns/net") == "/proc/1/ns/net"
    assert netns_path("pid:42") == "/proc/42/ns/net"
    for bad in ("pid:x", "a/b", "..", ""):
        with pytest.raises(CaptureError):
            netns_path(bad)


def test_importing_capture_does_not_import_scapy():
    code = ("import sys, tracer.capture, tracer.capture.live, tracer.capture.probe, tracer.capture.dissect, "
            "tracer.capture.bpf, tracer.capture.netns; print(sorted(m for m in sys.modules if m.startswith('scapy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_dissect_imports_scapy_and_only_three_layers():
    import ast
    from pathlib import Path

    import tracer.capture

    for path in Path(tracer.capture.__file__).parent.glob("*.py"):
        mods = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods.add(node.module)
        scapy = {m for m in mods if m.split(".")[0] == "scapy"}
        allowed = {"dissect.py": {"scapy.layers.l2", "scapy.layers.inet", "scapy.layers.dhcp"},
                   "libpcap.py": {"scapy.libs"}}.get(path.name, set())  # its ctypes libpcap bindings
        assert scapy <= allowed, (path.name, scapy)
