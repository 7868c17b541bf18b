"""Labs leave nothing behind: after down, after a failing build, after Ctrl-C; and they coexist."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import unique_lab_name
from tests.helpers import host_residue, read, wait_for
from tracer.errors import ExitCode
from tracer.lab import runner

CLI = [sys.executable, "-m", "tracer.cli"]


def cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.live
@pytest.mark.parametrize("scenario", ["healthy", "fdb-mismatch", "own-address-loop", "upstream-silent",
                                      "filter-drop", "ebtables-drop", "forward-drop", "bridge-mac-float",
                                      "stp-blocking", "mtu-mismatch"])
def test_down_leaves_nothing(scenario):
    name = unique_lab_name()
    try:
        proc = cli("lab", "up", scenario, "--name", name, "--json")
        assert proc.returncode == 0, proc.stderr
        assert host_residue(name), "the lab built nothing?"
    finally:
        down = cli("lab", "down", "--name", name)
    assert down.returncode == 0 and "is down" in down.stdout
    assert host_residue(name) == []


@pytest.mark.live
def test_failed_build_tears_down_what_it_made():
    name = unique_lab_name()
    subprocess.run(["ip", "netns", "add", f"tl2-{name}-guest"], check=True)  # the guest netns will clash
    proc = cli("lab", "up", "healthy", "--name", name)
    assert proc.returncode == ExitCode.ENVIRONMENT, proc.stderr
    assert proc.stderr.count("\n") == 1 and "File exists" in proc.stderr
    assert host_residue(name) == []


@pytest.mark.live
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.45, 0.6])
def test_interrupted_up_leaves_nothing(sig, delay):
    name = unique_lab_name()
    proc = subprocess.Popen([*CLI, "lab", "up", "healthy", "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Python start-up and imports take ~0.35 s here, so these delays land while the lab is being built.
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # the build won the race: the lab is up and must come down cleanly
        runner.down(name)
    else:
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert "Traceback" not in err
    assert host_residue(name) == []


@pytest.mark.live
def test_two_labs_side_by_side(make_lab):
    a, b = make_lab("healthy"), make_lab("fdb-mismatch")
    assert a.info["bridge"] != b.info["bridge"]
    assert a.info["guest"]["mac"] != b.info["guest"]["mac"]
    assert wait_for(lambda: "bound" in read(a.info["guest"]["log"]), 15)
    assert "bound" not in read(b.info["guest"]["log"])


@pytest.mark.live
def test_name_in_use_is_one_line_exit_2(make_lab):
    state = make_lab("healthy")
    proc = cli("lab", "up", "healthy", "--name", state.name)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip().count("\n") == 0 and "already up" in proc.stderr


@pytest.mark.live
def test_abandoned_lab_is_cleared_by_the_next_up(make_lab):
    """A lab whose daemons died with the session that built it (its links remain) does not block `up`."""
    from tracer.lab.network import stop_process

    state = make_lab("healthy")
    for proc in state.processes:
        stop_process(int(proc["pid"]), str(proc["match"]))
    assert runner.abandoned(state.name)
    again = make_lab("healthy", name=state.name)
    assert again.processes and not runner.abandoned(state.name)
    assert wait_for(lambda: "bound" in read(again.info["guest"]["log"]), 15)


def test_unknown_scenario_is_one_line_exit_2():
    proc = cli("lab", "up", "no-such-outage")
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.startswith("tracepath-l2: error: unknown scenario") and "Traceback" not in proc.stderr


def test_bad_lab_name_is_exit_2():
    assert cli("lab", "up", "healthy", "--name", "Not-A-Name").returncode == ExitCode.USAGE


def test_without_root_is_exit_4(monkeypatch, capsys):
    from tracer import cli as cli_module

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli_module.main(["lab", "up", "healthy", "--name", "nr"]) == ExitCode.PRIVILEGES
    assert "needs root" in capsys.readouterr().err


def test_exit_codes_are_the_documented_contract():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 70, 130]
    readme = read(os.path.join(os.path.dirname(__file__), "..", "README.md"))
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"README does not document exit code {int(code)}"


def test_lab_list_names_every_scenario():
    proc = cli("lab", "list")
    assert proc.returncode == 0
    for name in ("healthy", "fdb-mismatch", "own-address-loop", "upstream-silent", "filter-drop",
                 "leftover-veth", "bridge-mac-float", "vm"):
        assert name in proc.stdout
