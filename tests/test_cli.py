"""The CLI contract: cheap --help, one-line errors, documented exit codes. No root needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.errors import ExitCode

CLI = [sys.executable, "-m", "tracer.cli"]
BUNDLE = Path(__file__).resolve().parent.parent / "captures" / "fdb-mismatch-ns" / "bundle"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["resolve", "--help"], ["trace", "--help"], ["lab", "--help"]])
def test_help_imports_neither_scapy_nor_pyroute2(args):
    code = (f"import sys; sys.argv = ['tracepath-l2', *{args!r}]\nfrom tracer.cli import main\nmain(sys.argv[1:])\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('scapy', 'pyroute2')]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout[-300:]


def test_version():
    assert cli("--version").stdout.startswith("tracepath-l2 ")


def one_line_error(proc: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_dhcp_and_arp_together_is_usage():
    one_line_error(cli("--dhcp", "--arp", "x"), ExitCode.USAGE)


def test_replay_of_a_missing_directory_is_usage(tmp_path):
    assert "not a bundle" in one_line_error(cli("replay", str(tmp_path / "nope")), ExitCode.USAGE)


def test_replay_bad_hop_argument_is_usage():
    assert "NAME=FILE" in one_line_error(cli("replay", "--hop", "justaname"), ExitCode.USAGE)


def test_replay_of_a_garbage_capture_is_usage(tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    assert "not a pcap" in one_line_error(cli("replay", "--hop", f"tap0={bad}"), ExitCode.USAGE)


def test_replay_of_a_truncated_capture_is_a_partial_report(tmp_path):
    data = (BUNDLE / "capture.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2 + 3])
    proc = cli("replay", "--hop", f"x-g0={cut}", "--json")
    assert proc.returncode in (ExitCode.OK, ExitCode.STOPPED, ExitCode.INCONCLUSIVE) and "Traceback" not in proc.stderr
    assert any("truncated" in p for p in json.loads(proc.stdout)["problems"])


def test_replay_explain_walks_every_hop():
    proc = cli("replay", str(BUNDLE), "--explain")
    assert proc.returncode == ExitCode.STOPPED
    assert "how to read this, hop by hop" in proc.stdout and "NOT seen although" in proc.stdout
    assert "[replay]" in proc.stdout


def test_replay_json_has_the_public_fields():
    data = json.loads(cli("replay", str(BUNDLE), "--json").stdout)
    assert {"target", "path", "protocol", "observations", "verdict", "findings"} <= set(data)
    assert data["verdict"]["status"] == "stopped" and data["replay"] is True


def test_trace_without_root_is_exit_4(monkeypatch, capsys):
    from tracer import cli as cli_module

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli_module.main(["--dhcp", "anything"]) == ExitCode.PRIVILEGES
    assert "needs root" in capsys.readouterr().err


def test_replay_of_an_unknown_link_type_says_what_was_skipped(tmp_path):
    import struct

    f = tmp_path / "ppp.pcap"
    f.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 9)  # LINKTYPE_PPP
                  + struct.pack("<IIII", 1, 0, 4, 4) + b"\xff\x03\x00\x21")
    proc = cli("replay", "--hop", f"ppp0={f}", "--json")
    assert proc.returncode == ExitCode.INCONCLUSIVE and "Traceback" not in proc.stderr
    assert any("not Ethernet" in p for p in json.loads(proc.stdout)["problems"])
