"""Replay of plain capture files: libpcap's filter in C and the Python reader agree; memory is
bounded by the exchanges kept, not the file. No root."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ARP, T0, pcap, pcapng
from tracer import replay
from tracer.bundle.pcapng import DIR_IN, Reader
from tracer.capture import libpcap
from tracer.errors import BundleError
from tracer.model import Direction, Observation
from tracer.replay import Recent, replay_files

BUNDLE = Path(__file__).resolve().parent.parent / "captures" / "fdb-mismatch-ns" / "bundle"
PCAP_HEADER = pcap(())


def per_hop_pcaps(tmp_path: Path) -> list[tuple[str, str]]:
    """The bundle's frames split into one classic pcap per hop, as tcpdump on each hop writes them."""
    records: dict[str, list[tuple[float, bytes]]] = {}
    with open(BUNDLE / "capture.pcapng", "rb") as fh:
        reader = Reader(fh, name="bundle")
        for rec in reader:
            records.setdefault(reader.interfaces[rec.interface].name, []).append((rec.time, rec.data))
    out = []
    for hop, recs in records.items():
        if ":" not in hop:  # the guest's own interface is inside its namespace: no tcpdump file for it
            (tmp_path / f"{hop}.pcap").write_bytes(pcap(recs))
            out.append((hop, str(tmp_path / f"{hop}.pcap")))
    return out


def test_libpcap_and_the_python_reader_give_the_same_replay(tmp_path, monkeypatch):
    hops = per_hop_pcaps(tmp_path)
    if not hops or libpcap.open_filtered(hops[0][1], "arp") is None:
        pytest.skip("libpcap is not installed (apt-get install libpcap0.8)")
    fast = replay_files(hops, protocol="dhcp")
    monkeypatch.setattr(libpcap, "open_filtered", lambda *a: None)
    slow = replay_files(hops, protocol="dhcp")
    assert fast.packets is None and slow.packets and slow.packets >= slow.matched > 0
    assert fast.matched == slow.matched and fast.problems == slow.problems == []
    assert fast.report.to_dict() == slow.report.to_dict()
    assert fast.report.verdict.status == "stopped"


def test_a_truncated_file_read_by_libpcap_keeps_what_precedes_the_damage(tmp_path):
    [(name, file), *_] = per_hop_pcaps(tmp_path)
    records = Path(file).read_bytes()[len(PCAP_HEADER):]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((PCAP_HEADER + records * 5)[:-50])  # the fifth copy of the last record is cut short
    result = replay_files([(name, str(cut))], protocol="dhcp")
    whole = replay_files([(name, file)], protocol="dhcp")
    assert result.matched == 5 * whole.matched - 1
    assert any("truncated" in p and "the frames before it were read" in p for p in result.problems)


def obs(key: str, t: float, hop: str = "tap0", mac: str = "02:47:00:00:00:02") -> Observation:
    return Observation(hop, T0 + t, Direction.IN, "dhcp", "DISCOVER", key, src_mac=mac, client_mac=mac)


def test_recent_keeps_the_latest_exchanges_and_counts_the_rest():
    keep = Recent(max_keys=2, per_key=3)
    for i, key in enumerate(["xid 0x1", "xid 0x2", "xid 0x1", "xid 0x3"]):
        keep.add(obs(key, i))
    assert [o.key for o in keep.observations()] == ["xid 0x1", "xid 0x1", "xid 0x3"]  # 0x2 was the oldest
    assert keep.left_out == 1
    for i in range(5):
        keep.add(obs("xid 0x3", 10 + i))
    assert len([o for o in keep.observations() if o.key == "xid 0x3"]) == 3 and keep.left_out == 4
    problems: list[str] = []
    keep.note(problems)
    assert "4 DHCP/ARP frame(s) of older exchanges" in problems[0]


def test_with_the_guest_mac_only_its_exchanges_are_kept():
    keep = Recent("02:47:00:00:00:02", max_keys=1)
    keep.add(obs("xid 0x1", 0))
    for i in range(50):
        keep.add(obs(f"xid 0x{100 + i:x}", 1 + i, mac=f"02:00:00:00:00:{i:02x}"))
    assert [o.key for o in keep.observations()] == ["xid 0x1"] and keep.left_out == 0


def test_replay_memory_is_bounded_by_the_exchanges_kept(tmp_path):
    """Ten times the exchanges, the same number kept (what keeps the peak RSS flat: bench/)."""
    hops = per_hop_pcaps(tmp_path)[1:2]
    data = Path(hops[0][1]).read_bytes()[len(PCAP_HEADER):]
    big = tmp_path / "big.pcap"
    big.write_bytes(PCAP_HEADER + data * 10)
    small = replay_files(hops, protocol="dhcp")
    large = replay_files([(hops[0][0], str(big))], protocol="dhcp")
    assert large.matched == 10 * small.matched
    assert len(large.report.observations) <= replay.MAX_FRAMES * len({o.key for o in large.report.observations})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_files_through_libpcap_give_a_report_or_one_clear_error(tmp_path, data):
    """The same mutations as the Python reader's fuzz test, through `replay --hop`'s libpcap path."""
    base = bytearray(data.draw(st.sampled_from([pcapng([("vnet3", 1.0, ARP, DIR_IN)] * 3), pcap()])))
    for _ in range(data.draw(st.integers(1, 8))):
        base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    file = tmp_path / "mutated.pcap"
    file.write_bytes(bytes(base))
    try:
        result = replay_files([("vnet3", str(file))], protocol="arp")
    except BundleError as exc:
        assert "\n" not in str(exc)
    else:
        assert result.report.verdict.status in ("ok", "stopped", "inconclusive")
