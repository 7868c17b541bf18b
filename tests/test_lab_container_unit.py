"""The pure parts of the LXC lab guest: names, MACs, generated configs and guest scripts.

None of these tests needs root, LXC or a network: they check the text the lab would hand to LXC
and to busybox, so a wrong key or a too-long interface name fails here, not in a live lab.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracer.lab import container as ct

LAB_NAMES = ["a", "lab", "t1a2b3", "zzzzzz", "q9"]
MAC_RE = re.compile(r"^00:16:3e(:[0-9a-f]{2}){3}$")
IFNAMSIZ = 15
"""Linux interface names hold at most 15 characters (IFNAMSIZ - 1)."""


def keys(text: str) -> dict[str, list[str]]:
    """Config text as key -> values, comments and blank lines ignored (LXC's own reading)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


# ------------------------------------------------------------------ names and MACs


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_names_follow_the_contract(lab: str) -> None:
    assert ct.container_name(lab) == f"tl2-{lab}-ct"
    assert ct.veth_pair_name(lab) == f"{lab}-ct0"
    assert ct.OUR_CONTAINER_RE.match(ct.container_name(lab))
    assert ct.OUR_CONTAINER_RE.match(ct.legacy_container_name(lab))


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_interface_names_fit_ifnamsiz(lab: str) -> None:
    for name in (ct.veth_pair_name(lab), ct.leftover_peer_name(lab), ct.legacy_veth_pair_name(lab)):
        assert 1 <= len(name) <= IFNAMSIZ, name
        assert "/" not in name and " " not in name


def test_legacy_pair_keeps_the_osa_shape_and_is_truncated_from_the_left() -> None:
    assert ct.legacy_veth_pair_name("lab") == "lab_eth0"
    long_if = ct.legacy_veth_pair_name("abcdef", "eth2.4100")
    assert len(long_if) == IFNAMSIZ and long_if.endswith("_eth2.4100")


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_macs_are_lxc_style_stable_and_unicast(lab: str) -> None:
    mac = ct.container_mac(lab)
    assert MAC_RE.match(mac)
    assert mac == ct.container_mac(lab)
    assert int(mac.split(":")[0], 16) & 1 == 0  # not multicast
    assert MAC_RE.match(ct.legacy_container_mac(lab))
    assert ct.legacy_container_mac(lab) != mac


def test_macs_differ_between_labs() -> None:
    macs = {ct.container_mac(n) for n in LAB_NAMES}
    assert len(macs) == len(LAB_NAMES)


def test_our_names_regex_refuses_foreign_containers() -> None:
    for foreign in ["aio1_cinder_api_container-b78dc1c8", "tl2-", "tl2-lab-ct/../x", "tl2-Lab-ct", "web"]:
        assert not ct.OUR_CONTAINER_RE.match(foreign), foreign


def test_paths_live_in_the_container_directory() -> None:
    assert ct.container_dir("tl2-lab-ct") == Path("/var/lib/lxc/tl2-lab-ct")
    assert ct.guest_log_path("tl2-lab-ct") == Path("/var/lib/lxc/tl2-lab-ct/rootfs/var/log/tl2-guest.log")


# ------------------------------------------------------------------ modern config


def test_modern_config_has_every_network_key_once() -> None:
    k = keys(ct.modern_net_config("lab", "lab-br"))
    assert k == {
        "lxc.net.0.type": ["veth"],
        "lxc.net.0.link": ["lab-br"],
        "lxc.net.0.flags": ["up"],
        "lxc.net.0.hwaddr": [ct.container_mac("lab")],
        "lxc.net.0.veth.pair": ["lab-ct0"],
        "lxc.net.0.name": ["eth0"],
    }


def test_modern_config_uses_no_legacy_key() -> None:
    assert "lxc.network." not in ct.modern_net_config("lab", "lab-br")


# ------------------------------------------------------------------ legacy config


def test_legacy_network_block_matches_the_openstack_ansible_shape() -> None:
    text = ct.legacy_net_config("lab", "br-mgmt", "eno1")
    k = keys(text)
    assert k["lxc.network.type"] == ["veth"]
    assert k["lxc.network.name"] == ["eno1"]
    assert k["lxc.network.veth.pair"] == ["lab_eno1"]
    assert k["lxc.network.link"] == ["br-mgmt"]
    assert k["lxc.network.hwaddr"] == [ct.legacy_container_mac("lab")]
    assert k["lxc.network.flags"] == ["up"]
    assert k["lxc.network.mtu"] == ["1500"]
    assert not any(key.startswith("lxc.net.") for key in k)
    # Old LXC applied keys to the network opened by the last `type` line: type must come first,
    # and OSA's note says veth.pair must follow name.
    order = [line.split("=")[0].strip() for line in text.splitlines() if line and not line.startswith("#")]
    assert order[0] == "lxc.network.type"
    assert order.index("lxc.network.veth.pair") == order.index("lxc.network.name") + 1


def test_legacy_main_config_with_include() -> None:
    net = ct.legacy_net_config("lab", "lab-br")
    text = ct.legacy_main_config(
        "tl2-lab-legacy", "/var/lib/lxc/tl2-lab-legacy/rootfs",
        include="/var/lib/lxc/tl2-lab-legacy/eth0.ini", net_text=net,
    )
    k = keys(text)
    assert k["lxc.include"] == ["/var/lib/lxc/tl2-lab-legacy/eth0.ini"]
    assert "lxc.network.type" not in k  # the network lives only in the included file
    assert k["lxc.rootfs"] == ["/var/lib/lxc/tl2-lab-legacy/rootfs"]
    assert k["lxc.utsname"] == ["tl2-lab-legacy"]
    assert not any(key.startswith("lxc.net.") for key in k)


def test_legacy_main_config_inline() -> None:
    net = ct.legacy_net_config("lab", "lab-br")
    text = ct.legacy_main_config("tl2-lab-legacy", "/r", include=None, net_text=net)
    k = keys(text)
    assert "lxc.include" not in k
    assert k["lxc.network.veth.pair"] == ["lab_eth0"]
    assert k["lxc.network.link"] == ["lab-br"]


# ------------------------------------------------------------------ reading configs back


def test_configured_veth_pairs_reads_modern_and_legacy_keys() -> None:
    assert ct.configured_veth_pairs(ct.modern_net_config("lab", "lab-br")) == ["lab-ct0"]
    assert ct.configured_veth_pairs(ct.legacy_net_config("lab", "br")) == ["lab_eth0"]
    text = (
        "lxc.net.0.veth.pair = a\nlxc.net.1.veth.pair=b\n"
        "# lxc.net.2.veth.pair = c\nlxc.net.3.veth.pair = a\n"
    )
    assert ct.configured_veth_pairs(text) == ["a", "b"]


def test_configured_veth_pairs_follows_includes(tmp_path: Path) -> None:
    (tmp_path / "eno1.ini").write_text(ct.legacy_net_config("lab", "br-mgmt", "eno1"))
    (tmp_path / "eno2.ini").write_text(ct.legacy_net_config("lab", "br-storage", "eno2"))
    main = (
        ct.legacy_net_config("lab", "lxcbr0", "eth0")
        + f"lxc.include = {tmp_path / 'eno1.ini'}\n"
        + "lxc.include = eno2.ini\n"  # relative: resolved against the container directory
        + "lxc.include = /nonexistent/x.ini\n"
    )
    assert ct.configured_veth_pairs(main, base=tmp_path) == ["lab_eth0", "lab_eno1", "lab_eno2"]


def test_configured_veth_pairs_survives_include_loops(tmp_path: Path) -> None:
    loop = tmp_path / "loop.conf"
    loop.write_text(f"lxc.net.0.veth.pair = x\nlxc.include = {loop}\n")
    assert ct.configured_veth_pairs(loop.read_text()) == ["x"]


def test_configured_links() -> None:
    assert ct.configured_links(ct.modern_net_config("lab", "lab-br")) == ["lab-br"]
    assert ct.configured_links(ct.legacy_net_config("lab", "br-mgmt")) == ["br-mgmt"]


# ------------------------------------------------------------------ start failures


LXC5_LEFTOVER = """\
lxc-start: tl2-x-ct: ../src/lxc/lxccontainer.c: wait_on_daemonized_start: 878 Received container state "ABORTING" instead of "RUNNING"
lxc-start: tl2-x-ct: ../src/lxc/tools/lxc_start.c: main: 306 The container failed to start
lxc-start tl2-x-ct 20261123001109.170 ERROR    network - ../src/lxc/network.c:netdev_configure_server_veth:662 - File exists - Failed to create veth pair "x-ct0" and "vethSDcANh"
lxc-start tl2-x-ct 20261123001109.170 ERROR    network - ../src/lxc/network.c:lxc_create_network_priv:3427 - File exists - Failed to create network device
"""  # noqa: E501 - real output, kept verbatim

LXC2_LEFTOVER = """\
lxc-start: network.c: instantiate_veth: 130 Failed to create veth pair "b78dc1c8_eth0" and "vethBMO7RR": File exists
lxc-start: network.c: lxc_create_network_priv: 2374 Failed to create network device
"""  # noqa: E501 - seed 000, verbatim


def test_start_failure_reason_finds_the_veth_line() -> None:
    assert ct.start_failure_reason(LXC5_LEFTOVER) == (
        'File exists - Failed to create veth pair "x-ct0" and "vethSDcANh"'
    )
    assert 'Failed to create veth pair "b78dc1c8_eth0"' in ct.start_failure_reason(LXC2_LEFTOVER)
    assert ct.start_failure_reason("") == "no output"
    assert ct.start_failure_reason("something odd\n") == "something odd"


# ------------------------------------------------------------------ guest boot files


def test_inittab_runs_the_loop_only_when_asked() -> None:
    with_loop = ct.guest_inittab(True)
    assert "::sysinit:/etc/init.d/rcS" in with_loop
    assert f"::respawn:{ct.GUEST_DIR}/dhcp-loop" in with_loop
    assert "dhcp-loop" not in ct.guest_inittab(False)


def test_rcs_no_longer_runs_a_bare_udhcpc() -> None:
    assert not re.search(r"^\s*/?(bin/)?udhcpc", ct.GUEST_RCS, re.M)


def test_loop_uses_the_contracted_udhcpc_and_arping_flags() -> None:
    loop = ct.GUEST_LOOP_SCRIPT
    assert 'udhcpc -i eth0 -n -q -t 3 -T 2 -s "$SCRIPT"' in loop
    assert "arping -c 1 -w 1 -I eth0" in loop
    assert "tl2-guest: no lease" in loop


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
@pytest.mark.parametrize("script", ["GUEST_UDHCPC_SCRIPT", "GUEST_LOOP_SCRIPT", "GUEST_RCS"])
def test_guest_scripts_parse(script: str) -> None:
    proc = subprocess.run(["sh", "-n"], input=getattr(ct, script), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_udhcpc_hook_logs_the_lease(tmp_path: Path) -> None:
    """Run the hook as udhcpc would, on an interface that does not exist (so `ip` changes nothing)."""
    hook = tmp_path / "hook"
    hook.write_text(ct.GUEST_UDHCPC_SCRIPT)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "TL2_LOG": str(tmp_path / "guest.log"),
        "TL2_SERVER_FILE": str(tmp_path / "server"),
        "interface": "tl2-nosuch0",
        "ip": "198.18.0.150",
        "mask": "24",
        "serverid": "198.18.0.1",
    }
    for event in ("deconfig", "bound"):
        proc = subprocess.run(["sh", str(hook), event], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "guest.log").read_text() == "tl2-guest: bound 198.18.0.150 from 198.18.0.1\n"
    assert (tmp_path / "server").read_text().strip() == "198.18.0.1"
