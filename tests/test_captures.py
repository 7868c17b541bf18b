"""Golden replays: every bundle in captures/ replays to the verdict its live run gave. No root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.replay import replay_bundle

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
CASES = sorted(p for p in CAPTURES.glob("*/expected.json"))


@pytest.mark.parametrize("expected_file", CASES, ids=[p.parent.name for p in CASES])
def test_replay_gives_the_live_verdict(expected_file):
    expected = json.loads(expected_file.read_text())
    result = replay_bundle(str(expected_file.parent / "bundle"))
    report = result.report
    assert report.replay
    assert str(report.verdict.status) == expected["status"]
    assert (list(report.verdict.between) if report.verdict.between else None) == expected["between"]
    assert sorted({f.code for f in report.findings}) == expected["findings"]
    assert result.problems == []


def test_there_is_a_bundle_per_scenario():
    names = {p.parent.name for p in CASES}
    for scenario in ("healthy", "fdb-mismatch", "own-address-loop", "upstream-silent", "filter-drop",
                     "bridge-mac-float", "stp-blocking", "mtu-mismatch"):
        assert f"{scenario}-ns" in names
    assert {"healthy-vm", "fdb-mismatch-vm"} <= names


def test_tshark_lists_the_hop_names():
    bundle = CAPTURES / "fdb-mismatch-ns" / "bundle"
    proc = subprocess.run(["tshark", "-r", str(bundle / "capture.pcapng"), "-T", "fields", "-e",
                           "frame.interface_name", "-e", "frame.packet_flags_direction"],
                          capture_output=True, text=True, check=True)
    rows = {tuple(line.split("\t")) for line in proc.stdout.splitlines() if line}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {r[0] for r in rows} <= set(manifest["hops"]) and len({r[0] for r in rows}) >= 3
    assert {r[1] for r in rows} <= {"0x00000001", "0x00000002"}


def test_replay_cli_matches(tmp_path):
    bundle = CAPTURES / "fdb-mismatch-ns" / "bundle"
    proc = subprocess.run([sys.executable, "-m", "tracer.cli", "replay", str(bundle), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and json.loads(proc.stdout)["replay"] is True
