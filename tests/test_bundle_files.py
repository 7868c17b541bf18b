"""Capture files and bundles: round trips, damage, and fuzz. Only BundleError may escape."""

from __future__ import annotations

import io
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ARP, lab_path, pcap, pcapng
from tracer.bundle import store
from tracer.bundle.pcapng import DIR_IN, DIR_OUT, Reader
from tracer.errors import BundleError
from tracer.model import Evidence, FdbEntry, KernelLine


def read_all(data: bytes):
    r = Reader(io.BytesIO(data))
    return r, list(r)


def test_pcapng_round_trip_keeps_hop_time_and_direction():
    r, recs = read_all(pcapng([("vnet3", 1.000000123, ARP, DIR_IN), ("lab-up", 2.5, ARP, DIR_OUT)]))
    assert [r.interfaces[x.interface].name for x in recs] == ["vnet3", "lab-up"]
    assert [x.direction for x in recs] == [DIR_IN, DIR_OUT]
    assert recs[0].time == pytest.approx(1.000000123, abs=1e-9) and recs[0].data == ARP
    assert r.interfaces[1].description == "uplink" and r.problems == []


def test_pcap_reads_with_no_direction():
    r, recs = read_all(pcap([(1.25, ARP), (2.0, ARP)]))
    assert r.kind == "pcap" and len(recs) == 2 and recs[0].direction is None
    assert recs[0].time == pytest.approx(1.25)


@pytest.mark.parametrize("cut", [30, 60, -7])
def test_truncated_files_yield_what_precedes_and_say_where(cut):
    data = pcapng([("vnet3", 1.0, ARP, DIR_IN), ("lab-up", 2.0, ARP, DIR_OUT)])
    r, recs = read_all(data[:cut] if cut > 0 else data[:cut])
    assert r.problems and "truncated" in r.problems[0]


def test_garbage_record_length_stops_with_a_problem():
    data = pcap() + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 10) + b"junk"
    r, recs = read_all(data)
    assert len(recs) == 1 and "garbage" in r.problems[0]


def test_not_a_capture_is_a_bundle_error():
    with pytest.raises(BundleError, match="not a pcap"):
        Reader(io.BytesIO(b"hello world, no capture here"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_bundle_error(data):
    try:
        r = Reader(io.BytesIO(data))
        list(r)
    except BundleError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_never_raise_anything_but_bundle_error(data):
    base = bytearray(data.draw(st.sampled_from([pcapng([("vnet3", 1.0, ARP, DIR_IN)] * 3), pcap()])))
    for _ in range(data.draw(st.integers(1, 8))):
        base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    try:
        list(Reader(io.BytesIO(bytes(base))))
    except BundleError:
        pass


# ---------------------------------------------------------------- bundles
def make_bundle(tmp_path, **manifest_changes):
    path = lab_path()
    ev = Evidence(fdb=(FdbEntry("fa:16:3e:56:ea:fa", "bond0", "brq5dddda71-76", ("static",)),),
                  kernel=(KernelLine("x: received packet on y with own address as source address", 1.0),),
                  notes=("no tracefs",))
    manifest = {"target": "instance-0347", "protocol": "dhcp", "window": [1.0, 3.0],
                "hops": ["tap0b5f208b-76", "bond0"], **manifest_changes}

    class P:
        hop, time, outgoing, data = "bond0", 1.5, False, ARP

    return store.write(tmp_path / "b", manifest=manifest, path=path, packets=[P()], evidence=ev,
                       hop_descriptions={"tap0b5f208b-76": "guest-port", "bond0": "uplink"})


def test_bundle_round_trip(tmp_path):
    b = store.load(make_bundle(tmp_path))
    assert b.path == lab_path() and b.window == (1.0, 3.0)
    assert b.evidence.fdb[0].port == "bond0" and b.evidence.notes == ("no tracefs",)
    problems: list[str] = []
    [p] = list(b.packets(problems))
    assert (p.hop, p.outgoing, p.data) == ("bond0", False, ARP) and problems == []


def test_future_format_version_is_refused(tmp_path):
    d = make_bundle(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "version": 99}))
    with pytest.raises(BundleError, match="newer than this tool"):
        store.load(d)


@pytest.mark.parametrize("victim", store.FILES)
def test_missing_file_is_named(tmp_path, victim):
    d = make_bundle(tmp_path)
    (d / victim).unlink()
    with pytest.raises(BundleError, match=victim):
        store.load(d)


def test_mismatched_topology_is_refused(tmp_path):
    d = make_bundle(tmp_path, hops=["tap0b5f208b-76", "nonexistent0"])
    with pytest.raises(BundleError, match="not in topology"):
        store.load(d)


def test_malformed_evidence_line_is_named(tmp_path):
    d = make_bundle(tmp_path)
    with open(d / "evidence.jsonl", "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(BundleError, match="evidence.jsonl:4"):
        store.load(d)


def test_record_refuses_a_non_empty_directory(tmp_path):
    make_bundle(tmp_path)
    with pytest.raises(BundleError, match="not empty"):
        make_bundle(tmp_path)


@settings(max_examples=500, deadline=None)
@given(st.integers(1_500_000_000, 2_000_000_000), st.integers(0, 999_999_999))
def test_a_live_timestamp_survives_the_pcapng_round_trip_bit_for_bit(sec, nsec):
    live = (sec * 1_000_000_000 + nsec) / 1e9  # how tracer.capture.live computes it
    _, [rec] = read_all(pcapng([("vnet3", live, ARP, DIR_IN)]))
    assert rec.time == live
