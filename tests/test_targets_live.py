"""Target lookup on real kernel objects: a network namespace with a veth, an LXC container.

Each test builds its objects under a unique name and removes them in `finally`, pass or fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import sh, wait_for
from tracer.errors import TargetError
from tracer.targets import default_sources, find_target, select_nic
from tracer.targets.lxc import LxcSource
from tracer.targets.netns import NetnsSource, read_links

pytestmark = pytest.mark.live


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


def quiet(*argv: str) -> None:
    subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


def test_netns_with_a_veth_by_name_and_by_pid() -> None:
    tag = secrets.token_hex(3)
    ns, host_end = f"tl2t-{tag}", f"tl2t{tag}h"
    sleeper = None
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", ns, "link", "set", "eth0", "address", "02:00:5e:10:00:01", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        host_ifindex = int(Path(f"/sys/class/net/{host_end}/ifindex").read_text())

        by_name = find_target(ns)
        assert (by_name.kind, by_name.name, by_name.details["matched_by"]) == ("netns", ns, "name")
        (nic,) = select_nic(by_name, None)
        assert (nic.type, nic.guest_dev, nic.mac, nic.netns) == ("veth", "eth0", "02:00:5e:10:00:01", ns)
        # the topology walker's clue: the guest side names the host end's ifindex
        assert nic.details["peer_ifindex"] == host_ifindex
        assert find_target("02:00:5e:10:00:01").name == ns

        # `ip netns exec` setns()es and execs, so the child's PID is the sleeper's, inside the namespace
        sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
        assert wait_for(lambda: os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino
                        == os.stat(f"/run/netns/{ns}").st_ino, 5)
        # ...and only after the exec does the process call itself `sleep`
        assert wait_for(lambda: open(f"/proc/{sleeper.pid}/comm").read().strip() == "sleep", 5)
        for query in (f"pid:{sleeper.pid}", str(sleeper.pid)):
            by_pid = find_target(query)
            assert (by_pid.kind, by_pid.name) == ("netns", f"pid:{sleeper.pid}")
            assert by_pid.details["netns_name"] == ns and by_pid.details["comm"] == "sleep"
            (pnic,) = by_pid.nics
            assert pnic.netns == f"pid:{sleeper.pid}" and pnic.details["peer_ifindex"] == host_ifindex

        with pytest.raises(TargetError, match="shares the host's network namespace"):
            find_target(f"pid:{os.getpid()}")
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait(timeout=10)
        quiet("ip", "link", "del", host_end)
        quiet("ip", "netns", "del", ns)
    assert not Path(f"/run/netns/{ns}").exists()
    assert host_end not in sh("ip", "-br", "link")


def test_read_links_never_creates_a_namespace() -> None:
    missing = f"/run/netns/tl2t-missing-{secrets.token_hex(3)}"
    with pytest.raises(TargetError):
        read_links(missing)
    assert not os.path.exists(missing)
    assert NetnsSource().lookup(missing) is None


def test_every_source_answers_on_this_host() -> None:
    """No tool present or absent here makes a source crash: names are lists, loads are Targets."""
    for src in default_sources():
        names = src.safe_names()
        assert isinstance(names, list), src.kind
        for target in src.targets():
            assert target.kind == src.kind
        assert all(p.error.exit_code in (2, 4) for p in src.problems)


@pytest.mark.skipif(shutil.which("lxc-create") is None or not Path("/usr/bin/busybox").exists(),
                    reason="needs LXC and busybox")
def test_running_lxc_container_with_an_unnamed_veth(tmp_path) -> None:
    tag = secrets.token_hex(3)
    name, bridge = f"tl2t-{tag}", f"tl2t{tag}b"
    conf = tmp_path / "net.conf"
    conf.write_text(
        f"lxc.net.0.type = veth\nlxc.net.0.link = {bridge}\nlxc.net.0.flags = up\n"
        "lxc.net.0.hwaddr = 00:16:3e:7a:00:01\n"
        f"lxc.net.1.type = veth\nlxc.net.1.link = {bridge}\nlxc.net.1.veth.pair = {name[-6:]}p1\n"
        "lxc.net.1.name = eth1\nlxc.net.1.hwaddr = 00:16:3e:7a:00:02\n"
        "lxc.apparmor.profile = unconfined\n")
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "link", "set", bridge, "up")
        run("lxc-create", "-n", name, "-t", "busybox", "-f", str(conf))
        stopped = find_target(name)
        assert (stopped.kind, stopped.running) == ("lxc", False)
        assert [n.host_dev for n in stopped.nics] == [None, f"{name[-6:]}p1"]

        run("lxc-start", "-n", name, "-d")
        assert wait_for(lambda: find_target(name).running, 20)
        target = find_target(name)
        pid = target.details["init_pid"]
        assert pid and target.details["state"] == "RUNNING"
        unnamed, named = target.nics
        assert unnamed.netns == named.netns == f"pid:{pid}"
        assert named.host_dev == f"{name[-6:]}p1"
        # lxc-info's Link: line names the veth LXC picked; the guest side's peer ifindex agrees
        assert unnamed.host_dev and unnamed.host_dev.startswith("veth")
        host_ifindex = int(Path(f"/sys/class/net/{unnamed.host_dev}/ifindex").read_text())
        inside = {link["ifname"]: link for link in read_links(f"/proc/{pid}/ns/net")}
        assert inside["eth0"]["peer_ifindex"] == host_ifindex
        assert inside["eth0"]["mac"] == unnamed.mac == "00:16:3e:7a:00:01"

        # without lxc-info, /proc finds the same init PID (child of "[lxc monitor] LXCPATH NAME")
        bare = LxcSource(use_tools=False).load(name)
        assert bare.running and bare.details["init_pid"] == pid and bare.nics[0].host_dev is None
        assert find_target("00:16:3e:7a:00:02").name == name
    finally:
        quiet("lxc-stop", "-n", name, "-k")
        quiet("lxc-destroy", "-n", name, "-f")
        deadline = time.monotonic() + 5
        while Path(f"/sys/class/net/{name[-6:]}p1").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        quiet("ip", "link", "del", bridge)
    assert not Path(f"/var/lib/lxc/{name}").exists()
    assert bridge not in sh("ip", "-br", "link")
