"""Kernel log parsing and classification on recorded dmesg / kmsg text (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

from tracer.evidence.kmsg import KmsgReader, own_address, parse_dmesg, parse_kmsg_record, port_state_change
from tracer.model import KernelLine

DATA = Path(__file__).parent / "data" / "evidence"
OWN = "xe3-br: received packet on xe3-up with own address as source address (addr:02:b0:00:1e:0e:01, vlan:0)"


def load(name: str) -> str:
    return (DATA / name).read_text()


def test_plain_dmesg_keeps_text_and_gives_epoch_only_with_boot_time():
    lines = parse_dmesg(load("dmesg-6.18.txt"))
    assert lines[-1] == KernelLine(
        "xe3-br: received packet on xe3-up with own address as source address (addr:02:b0:00:1e:0e:01, vlan:0)"
    )
    timed = parse_dmesg(load("dmesg-6.18.txt"), boot_time=1_000_000.0)
    assert abs(timed[-1].time - (1_000_000.0 + 5937.606219)) < 1e-6


def test_own_address_with_the_6x_tail():
    hit = own_address(OWN)
    assert hit == ("xe3-br", "xe3-up", "02:b0:00:1e:0e:01", 0)
    assert own_address(KernelLine(OWN)) == hit


def test_own_address_from_the_kvm_seed_has_no_tail():
    lines = parse_dmesg(load("dmesg-kvm-seed.txt"))
    hit = own_address(lines[0])
    assert hit is not None
    assert (hit.bridge, hit.port, hit.mac, hit.vlan) == ("brq5dddda71-76", "bond0.2222", None, None)
    assert own_address(lines[2]) is None


def test_port_state_change():
    lines = parse_dmesg(load("dmesg-kvm-seed.txt"))
    assert port_state_change(lines[2]) == ("brq5dddda71-76", "tap0b5f208b-76", "forwarding")
    states = [port_state_change(x) for x in parse_dmesg(load("dmesg-6.18.txt"))]
    assert ("xe3-br", "xe3-up", "blocking") in states and ("xe3-br", "xe3-g0", "forwarding") in states
    assert port_state_change("xe3-up: entered promiscuous mode") is None


def test_raw_and_iso_formats():
    raw = parse_dmesg(load("dmesg-raw-6.18.txt"))
    assert raw[0].text == "xe3-br: port 1(xe3-up) entered blocking state"
    assert own_address(raw[-1]) is not None
    iso = parse_dmesg(load("dmesg-iso-6.18.txt"))
    assert iso[0].text == "xe3-br: port 2(xe3-g0) entered blocking state"
    assert iso[0].time is not None and abs(iso[0].time - 1795393950.171793) < 1e-3


def test_kmsg_records_and_other_shapes():
    recs = parse_dmesg(load("kmsg-records-6.18.txt"), boot_time=100.0)
    assert recs[0].text == OWN and abs(recs[0].time - (100.0 + 5929.186215)) < 1e-6
    lines = parse_dmesg(load("dmesg-formats.txt"))
    texts = [x.text for x in lines]
    assert texts[0] == OWN
    assert texts[1] == "xe3-br: port 2(xe3-g0) entered blocking state"
    assert texts[2] == "xe3-br: port 2(xe3-g0) entered forwarding state"
    assert texts[3] == "brq5dddda71-76: received packet on bond0.2222 with own address as source address"
    assert texts[4] == OWN
    assert texts[5] == "plain text line with no stamp"  # continuation lines are metadata, not lines
    assert len(texts) == 6


def test_kmsg_record_unescapes_and_drops_continuations():
    seq, line = parse_kmsg_record("6,89,224636,-;rcu: \\x09RCU restricting CPUs\n SUBSYSTEM=net\n", 0.0)
    assert seq == 89 and line.text == "rcu: \tRCU restricting CPUs" and line.time == 0.224636
    assert parse_kmsg_record("no separator here") is None
    assert parse_kmsg_record("x,y,z;text") is None


def test_reader_on_a_missing_device_is_a_note_not_an_error(tmp_path):
    with KmsgReader(str(tmp_path / "no-kmsg")) as reader:
        assert reader.read_new() == []
    assert reader.notes and "cannot open" in reader.notes[0]


def test_reader_reads_only_records_written_after_open(tmp_path):
    """A FIFO stands in for /dev/kmsg: one record per read, EAGAIN when empty."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        reader = KmsgReader(str(fifo))
        reader._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO cannot seek: open by hand
        assert reader.read_new() == []
        os.write(writer, f"4,10,5929186215,-;{OWN}\n".encode())
        (line,) = reader.read_new()
        assert line.text == OWN and line.time is not None
        reader.close()
    finally:
        os.close(writer)
