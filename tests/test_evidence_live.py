"""Evidence collected from real labs: FDB, kernel log, kfree_skb drops, nft rules; and no trace left.

After every DropTracer: no instance directory of ours, tracefs mounted exactly as before, and the
global `events/enable` / `events/skb/kfree_skb/enable` untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import sh, wait_for
from tracer.evidence import tracefs
from tracer.evidence._util import pid_alive
from tracer.evidence.collect import EvidenceCollector
from tracer.evidence.drops import DropTracer, instance_dirs
from tracer.evidence.fdb import parse_bridge_fdb_show, read_fdb
from tracer.evidence.filters import read_filters
from tracer.evidence.kmsg import KmsgReader, own_address
from tracer.lab.names import LabNames
from tracer.model import DropEvent, Evidence

pytestmark = pytest.mark.live
ROOT = Path(tracefs.TRACEFS)


def ours_left() -> list[str]:
    """Our instances that should be gone: this process's, or a dead process's (other live runs may own some)."""
    def pid(name: str) -> int:
        return int(name[len(tracefs.INSTANCE_PREFIX):].split("-")[0])

    return [n for n in instance_dirs() if pid(n) == os.getpid() or not pid_alive(pid(n))]


def mounted() -> bool:
    return tracefs.mount_point() is not None


def global_enables() -> tuple[str, str]:
    return ((ROOT / "events/enable").read_text(), (ROOT / "events/skb/kfree_skb/enable").read_text())


@pytest.fixture
def host_unchanged() -> Iterator[None]:
    """The host's tracing state after the test equals the state before it."""
    was_mounted = mounted()
    before = global_enables() if was_mounted else None
    yield
    assert mounted() == was_mounted, "tracefs mount state changed"
    assert not ours_left(), "a tracepath-l2 tracing instance was left behind"
    if before is not None:
        assert global_enables() == before


@pytest.fixture
def tracefs_premounted() -> Iterator[None]:
    """tracefs mounted by someone else (as on a systemd host): we must leave it mounted."""
    ours = not mounted()
    if ours:
        subprocess.run(["mount", "-t", "tracefs", "nodev", tracefs.TRACEFS], check=True)
    try:
        yield
    finally:
        if ours:
            subprocess.run(["umount", tracefs.TRACEFS], check=False)


def drops_until(tracer: DropTracer, predicate, timeout: float) -> list[DropEvent]:
    seen: list[DropEvent] = []

    def poll():
        seen.extend(tracer.read_new())
        return any(predicate(d) for d in seen)

    wait_for(poll, timeout)
    return seen


# ---------------------------------------------------------------- FDB
def test_fdb_mismatch_guest_mac_static_sticky_on_the_uplink(make_lab):
    state = make_lab("fdb-mismatch")
    bridge, uplink, mac = state.info["bridge"], state.info["uplink"], state.info["guest"]["mac"]
    notes: list[str] = []
    (entry,) = read_fdb(bridge, [mac.upper()], notes=notes)
    assert notes == []
    assert (entry.mac, entry.port, entry.bridge) == (mac, uplink, bridge)
    assert {"static", "sticky", "master"} <= set(entry.flags) and not entry.local
    assert entry.age is not None and entry.time is not None
    # the text an operator saves gives the same entries as netlink
    live = {(e.mac, e.port, e.flags, e.vlan) for e in read_fdb(bridge)}
    text = {(e.mac, e.port, e.flags, e.vlan) for e in parse_bridge_fdb_show(sh("bridge", "fdb", "show"), bridge)}
    assert live == text


def test_fdb_in_a_namespace_and_a_missing_bridge_is_a_note(make_lab):
    state = make_lab("healthy")
    notes: list[str] = []
    assert read_fdb("no-such-br", [], notes=notes) == []
    assert notes == ["bridge FDB not read: no bridge named no-such-br"]
    ns = state.info["server"]["namespace"]
    assert read_fdb("eth0", netns=ns, notes=notes) == []
    missing = f"tl2-missing-{os.getpid()}"
    assert read_fdb("br0", netns=missing, notes=notes) == []
    assert not Path(f"/run/netns/{missing}").exists(), "reading must never create a namespace"


# ---------------------------------------------------------------- kernel log
def test_own_address_loop_line_arrives_and_parses(make_lab):
    with KmsgReader() as reader:
        state = make_lab("own-address-loop")
        names = LabNames(state.name)
        lines = []

        def hit():
            lines.extend(reader.read_new())
            return [x for x in lines if (p := own_address(x)) and p.bridge == names.bridge]

        found = wait_for(hit, 40)
    assert found, f"no own-address line from {names.bridge} within 40 s"
    parsed = own_address(found[0])
    assert parsed.port == names.uplink and parsed.mac == names.bridge_mac and parsed.vlan == 0
    assert abs(found[0].time - time.time()) < 60  # epoch, not seconds since boot
    assert reader.notes == []


# ---------------------------------------------------------------- drops
def test_fdb_mismatch_offer_dropped_in_br_handle_frame_finish(make_lab, host_unchanged):
    state = make_lab("fdb-mismatch")
    uplink, port = state.info["uplink"], state.info["guest"]["port"]
    with DropTracer(hops=[port, uplink, state.info["bridge"]]) as tracer:
        assert tracer.available, tracer.notes
        inst = tracer.instance_path
        seen = drops_until(tracer, lambda d: d.hop == uplink, 15)
    assert not Path(inst).exists()
    # other labs on the host drop frames too: only the ones that came in on this lab's uplink count
    hits = [d for d in seen if d.hop == uplink]
    assert hits, f"no drop tied to {uplink}; saw {seen}"
    # this kernel (6.18) frees the OFFER in br_handle_frame_finish without a reason
    assert hits[0].location.startswith("br_handle_frame_finish+")
    assert hits[0].reason == "NOT_SPECIFIED" and hits[0].protocol == "0x0800"
    assert abs(hits[0].time - time.time()) < 30


def test_filter_drop_netfilter_drop_and_growing_nft_counter(make_lab, host_unchanged):
    state = make_lab("filter-drop")
    names = LabNames(state.name)
    hops = [state.info["guest"]["port"], names.uplink, names.bridge]
    before = [r for r in read_filters(hops) if r.table == names.nft_table]
    with DropTracer(hops=hops) as tracer:
        seen = drops_until(tracer, lambda d: d.reason == "NETFILTER_DROP", 15)
    nf = [d for d in seen if d.reason == "NETFILTER_DROP"]
    assert nf, f"no NETFILTER_DROP; saw {seen}"
    # the dropped frame is the flooded clone the bridge made for the uplink: no receive names it
    assert all(d.hop in (None, *hops) for d in nf)
    assert nf[0].location.split("+")[0] in ("nft_do_chain", "nf_hook_slow")  # nft_do_chain on 6.18
    after = [r for r in read_filters(hops) if r.table == names.nft_table]
    (rule_before,), (rule_after,) = before, after
    assert (rule_after.source, rule_after.family, rule_after.chain) == ("nft", "bridge", "forward")
    assert "udp dport 67" in rule_after.rule and "drop" in rule_after.rule
    assert rule_after.rule == rule_before.rule, "the rule text must not change with the counter"
    assert rule_after.packets > rule_before.packets


def test_premounted_tracefs_stays_mounted_and_globals_untouched(make_lab, tracefs_premounted, host_unchanged):
    state = make_lab("fdb-mismatch")
    with DropTracer(hops=[state.info["uplink"]]) as tracer:
        assert tracer.available
        assert global_enables()[1].strip() == "0"  # our enable is in the instance only
        drops_until(tracer, lambda d: d.hop == state.info["uplink"], 15)
    assert mounted()


def test_start_stop_several_times_and_exceptions_clean_up(host_unchanged):
    tracer = DropTracer()
    for _ in range(3):
        tracer.start()
        assert tracer.available and len(ours_left()) == 1
        tracer.stop()
        assert not ours_left()
    with pytest.raises(RuntimeError):
        with DropTracer():
            assert ours_left()
            raise RuntimeError("boom")
    with DropTracer() as a, DropTracer() as b:  # two at once in one process share the mount
        assert a.instance_path != b.instance_path and len(ours_left()) == 2
    assert tracer.notes == []


KILLED = textwrap.dedent("""
    import os, signal
    from tracer.evidence.drops import DropTracer
    t = DropTracer()
    t.start()
    print(t.instance_path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_tracer_is_cleaned_up_by_the_next(host_unchanged):
    proc = subprocess.run([sys.executable, "-c", KILLED], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == -signal.SIGKILL
    left = proc.stdout.strip()
    assert left and Path(left).exists(), "the killed run should have left its instance"
    with DropTracer() as tracer:
        assert not Path(left).exists()
        assert any("left by a killed run" in n for n in tracer.notes)
    # host_unchanged: the mount the killed run made (if any) is gone again


def test_without_root_privileges_it_is_a_note(monkeypatch):
    monkeypatch.setattr(tracefs, "acquire", lambda notes: (_ for _ in ()).throw(
        tracefs.TracefsUnavailable("kernel drops not traced: cannot mount tracefs (Operation not permitted)")))
    with DropTracer() as tracer:
        assert not tracer.available and tracer.read_new() == []
    assert tracer.notes == ["kernel drops not traced: cannot mount tracefs (Operation not permitted)"]


# ---------------------------------------------------------------- everything together
def test_collector_on_fdb_mismatch(make_lab, host_unchanged):
    state = make_lab("fdb-mismatch")
    bridge, uplink = state.info["bridge"], state.info["uplink"]
    port, mac = state.info["guest"]["port"], state.info["guest"]["mac"]
    with EvidenceCollector([bridge], [mac], [port, uplink]) as collector:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.2)
            collector.poll()
            if any(d.hop == uplink for d in collector.snapshot().drops):  # other labs' drops are there too
                break
        evidence = collector.finish()
    assert isinstance(evidence, Evidence)
    assert evidence.fdb[0].port == uplink and "sticky" in evidence.fdb[0].flags
    assert len(evidence.fdb) == 1, "an unchanged entry is one sample, not one per poll"
    assert any(d.location.startswith("br_handle_frame_finish") and d.hop == uplink for d in evidence.drops)
    assert Evidence.from_dict(evidence.to_dict()) == evidence
    assert collector.finish() is evidence
