"""The LXC container guest of the labs: a busybox container on the lab bridge that keeps asking for DHCP.

Theory of operation
-------------------
An LXC `veth` network is two kernel links: `eth0` inside the container's network namespace and a
host-side end, named by `lxc.net.0.veth.pair`, that LXC enslaves to `lxc.net.0.link` (the bridge).
LXC creates the pair at every `lxc-start`; the kernel destroys both ends when the container's
network namespace dies, so a clean stop leaves nothing on the host. The host end is the hop a trace
starts from, so its name is fixed (`<lab>-ct0`) instead of LXC's random `vethXXXXXX`.

A fixed name is also what makes the leftover-veth outage possible (seed 000, OpenStack-Ansible): if
a link with that name already exists, LXC cannot create the pair and `lxc-start` fails with
"File exists". `make_leftover_veth` rebuilds exactly that.

The container runs busybox's init; its inittab runs a loop that asks for a lease with
`udhcpc -n -q` (a full DISCOVER/OFFER/REQUEST/ACK every time, since no previous address is
requested), ARPs once for the server, sleeps and starts over. A trace started at any moment
therefore sees a fresh DORA and an ARP exchange within a few seconds. The guest logs what happened
to a file in its rootfs, which the host reads directly (a `dir` backing store is a plain directory).

Legacy containers (`write_legacy_container`) only exist on disk: LXC 3.0 removed the
`lxc.network.*` keys, so LXC 5 cannot start them, but real hosts still carry such configs and the
target resolver must read them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracer.errors import LabError
from tracer.lab.shell import quiet, run
from tracer.lab.state import LabState, check_name

LXC_PATH = Path("/var/lib/lxc")
"""Root's default `lxc.lxcpath` on Debian; the target resolver looks here as well."""

GUEST_LOG = "/var/log/tl2-guest.log"
"""The guest's DHCP log, as seen inside the container (the host reads it under the rootfs)."""

GUEST_DIR = "/etc/tl2"
GUEST_PATH = "/bin:/sbin:/usr/bin:/usr/sbin"

OUR_CONTAINER_RE = re.compile(r"^tl2-[a-z][a-z0-9]{0,5}-(ct|legacy)$")
"""Names only this module creates: teardown may remove such directories by hand when LXC cannot."""

_PAIR_KEY_RE = re.compile(r"^\s*lxc\.(?:net\.\d+|network)\.veth\.pair\s*=\s*(\S+)\s*$")
_INCLUDE_RE = re.compile(r"^\s*lxc\.include\s*=\s*(\S+)\s*$")
_LINK_KEY_RE = re.compile(r"^\s*lxc\.(?:net\.\d+|network)\.link\s*=\s*(\S+)\s*$")


# ------------------------------------------------------------------ names (pure)


def container_name(lab_name: str) -> str:
    """The container of lab `lab_name`; the `tl2-` prefix marks it as ours for teardown."""
    return f"tl2-{lab_name}-ct"


def _oui_mac(salt: str) -> str:
    """A MAC in 00:16:3e (the Xen OUI LXC itself uses for `xx:xx:xx` templates), stable per salt."""
    h = zlib.crc32(salt.encode())
    return f"00:16:3e:{(h >> 16) & 0xFF:02x}:{(h >> 8) & 0xFF:02x}:{h & 0xFF:02x}"


def container_mac(lab_name: str) -> str:
    """The container's eth0 MAC: derived, so a lab rebuilt under the same name keeps its DHCP lease
    and `lab down` can recognise its FDB entries even without a state file."""
    return _oui_mac(f"tl2-ct:{lab_name}")


def veth_pair_name(lab_name: str) -> str:
    """Host end of the container's veth (`lxc.net.0.veth.pair`); at most 10 of Linux's 15 chars."""
    return f"{lab_name}-ct0"


def leftover_peer_name(lab_name: str) -> str:
    """The other end of the leftover veth; it stays DOWN, as LXC's `vethXXXXXX` did in seed 000."""
    return f"{veth_pair_name(lab_name)}-p"


def legacy_container_name(lab_name: str) -> str:
    return f"tl2-{lab_name}-legacy"


def legacy_container_mac(lab_name: str) -> str:
    return _oui_mac(f"tl2-legacy:{lab_name}")


def legacy_veth_pair_name(lab_name: str, interface: str = "eth0") -> str:
    """`<suffix>_<interface>`, the OpenStack-Ansible shape of seed 000 (`b78dc1c8_eth0`)."""
    name = f"{lab_name}_{interface}"
    return name[-15:]


def container_dir(name: str) -> Path:
    return LXC_PATH / name


def guest_log_path(name: str) -> Path:
    """The guest's DHCP log as the host sees it."""
    return container_dir(name) / "rootfs" / GUEST_LOG.lstrip("/")


# ------------------------------------------------------------------ generated text (pure)


def modern_net_config(lab_name: str, bridge: str) -> str:
    """The `lxc.net.0.*` block given to `lxc-create -f`.

    Passing it with `-f` (instead of appending after creation) keeps `/etc/lxc/default.conf` out of
    the container: Debian's default adds a second opinion on the link (`lxcbr0`) and an AppArmor
    profile, and with two `lxc.net.0.link` lines the last one silently wins.
    """
    return (
        "# tracepath-l2 lab guest: one veth on the lab bridge, host end named for the trace.\n"
        "lxc.net.0.type = veth\n"
        f"lxc.net.0.link = {bridge}\n"
        "lxc.net.0.flags = up\n"
        f"lxc.net.0.hwaddr = {container_mac(lab_name)}\n"
        f"lxc.net.0.veth.pair = {veth_pair_name(lab_name)}\n"
        "lxc.net.0.name = eth0\n"
    )


def legacy_net_config(lab_name: str, bridge: str, interface: str = "eth0", mtu: int = 1500) -> str:
    """One LXC 1.x/2.x network in the shape OpenStack-Ansible's `container-interface.ini` had.

    Old LXC started a new network at every `lxc.network.type` line and applied the following
    keys to it, which is why OSA warned that `veth.pair` must follow `name`: order mattered.
    """
    return (
        "# Create a veth pair within the container\n"
        "lxc.network.type = veth\n"
        "# Network device within the container\n"
        f"lxc.network.name = {interface}\n"
        "# Name the veth after the container\n"
        "# NOTE(major): The lxc.network.veth.pair line must appear right after\n"
        "# lxc.network.name or it will be ignored.\n"
        f"lxc.network.veth.pair = {legacy_veth_pair_name(lab_name, interface)}\n"
        "# Host link to attach to, this should be a bridge if lxc.network.type = veth\n"
        f"lxc.network.link = {bridge}\n"
        "# Hardware Address\n"
        f"lxc.network.hwaddr = {legacy_container_mac(lab_name)}\n"
        "# enable the device on boot\n"
        "lxc.network.flags = up\n"
        "# Set the container network MTU\n"
        f"lxc.network.mtu = {mtu}\n"
    )


def legacy_main_config(name: str, rootfs: str, *, include: str | None, net_text: str) -> str:
    """An LXC 2.x-era `config`: legacy keys throughout, the network inline or `lxc.include`d."""
    network = f"lxc.include = {include}\n" if include else net_text
    return (
        "# Template used to create this container: /usr/share/lxc/templates/lxc-busybox\n"
        "# Parameters passed to the template:\n"
        "# For additional config options, please look at lxc.container.conf(5)\n"
        "# Written by tracepath-l2 for the target resolver: LXC >= 3.0 rejects these legacy keys,\n"
        "# so this container is never started.\n"
        f"lxc.rootfs = {rootfs}\n"
        "lxc.rootfs.backend = dir\n"
        f"lxc.utsname = {name}\n"
        "lxc.haltsignal = SIGUSR1\n"
        "lxc.rebootsignal = SIGTERM\n"
        "lxc.autodev = 1\n"
        "lxc.tty = 5\n"
        "lxc.pts = 1\n"
        "lxc.cap.drop = sys_module mac_admin mac_override sys_time\n"
        "lxc.mount.auto = cgroup:mixed proc:mixed sys:ro\n"
        "\n"
        "# Network configuration\n"
        f"{network}"
    )


def configured_veth_pairs(text: str, *, base: Path | None = None, _depth: int = 0) -> list[str]:
    """Host veth names a config asks for (modern and legacy keys), following `lxc.include` files.

    Teardown reads them before `lxc-destroy` removes the config, so it can wait for (or remove)
    the host end afterwards. `base` resolves relative includes; unreadable includes are skipped.
    """
    pairs: list[str] = []
    for line in text.splitlines():
        if m := _PAIR_KEY_RE.match(line):
            pairs.append(m.group(1))
        elif (m := _INCLUDE_RE.match(line)) and _depth < 3:
            path = Path(m.group(1))
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                if path.is_file():
                    pairs.extend(configured_veth_pairs(path.read_text(), base=base, _depth=_depth + 1))
            except OSError:
                pass
    return list(dict.fromkeys(pairs))


def configured_links(text: str) -> list[str]:
    """Bridges a config attaches its veths to (`lxc.net.N.link` / `lxc.network.link`), no includes."""
    return [m.group(1) for line in text.splitlines() if (m := _LINK_KEY_RE.match(line))]


GUEST_UDHCPC_SCRIPT = f"""#!/bin/sh
# tracepath-l2 lab guest: udhcpc hook. Configure the lease, remember the server for the ARP that
# follows, and say so in a log the host reads under the container's rootfs.
LOG="${{TL2_LOG:-{GUEST_LOG}}}"
SERVER_FILE="${{TL2_SERVER_FILE:-/tmp/tl2-server}}"
case "$1" in
  deconfig)
    ip addr flush dev "$interface" 2>/dev/null ;;
  bound|renew)
    ip addr flush dev "$interface" 2>/dev/null
    ip addr add "$ip/${{mask:-24}}" dev "$interface" 2>/dev/null
    echo "$serverid" > "$SERVER_FILE"
    echo "tl2-guest: bound $ip from $serverid" >> "$LOG" ;;
esac
exit 0
"""

GUEST_LOOP_SCRIPT = f"""#!/bin/sh
# tracepath-l2 lab guest: ask for a lease forever, so a trace started at any time sees a fresh
# DORA (udhcpc -n -q asks from scratch each time) and one ARP exchange within a few seconds.
LOG="{GUEST_LOG}"
SCRIPT="{GUEST_DIR}/udhcpc.script"
SERVER_FILE=/tmp/tl2-server
export PATH={GUEST_PATH}
# No IPv6: router solicitations and MLD reports would only add noise to captures.
{{ echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6; }} 2>/dev/null
while :; do
  rm -f "$SERVER_FILE"
  if udhcpc -i eth0 -n -q -t 3 -T 2 -s "$SCRIPT" >/dev/null 2>&1; then
    server=$(cat "$SERVER_FILE" 2>/dev/null)
    [ -n "$server" ] && arping -c 1 -w 1 -I eth0 "$server" >/dev/null 2>&1
    sleep 3
  else
    echo "tl2-guest: no lease" >> "$LOG"
    sleep 2
  fi
  # Bounded log: a lab may stay up for days at one line every few seconds.
  if [ "$(wc -c < "$LOG" 2>/dev/null || echo 0)" -gt 65536 ]; then
    tail -n 200 "$LOG" > "$LOG.tmp" && mv "$LOG.tmp" "$LOG"
  fi
done
"""

GUEST_RCS = """#!/bin/sh
# tracepath-l2: the busybox template's rcS also ran a bare `udhcpc`, which blocks sysinit until it
# gets a lease and then renews on its own schedule; the lab's loop (inittab) owns DHCP instead.
/bin/mount -a
ip link set lo up
"""


def guest_inittab(dhcp_loop: bool) -> str:
    """busybox init's table: sysinit, the DHCP loop (respawned if it ever dies), a console."""
    loop = f"::respawn:{GUEST_DIR}/dhcp-loop\n" if dhcp_loop else ""
    return (
        "::sysinit:/etc/init.d/rcS\n"
        f"{loop}"
        "tty1::respawn:/bin/getty -L tty1 115200 vt100\n"
        "console::askfirst:/bin/sh\n"
    )


# ------------------------------------------------------------------ LXC I/O


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _install_guest(rootfs: Path, *, dhcp_loop: bool) -> None:
    """Replace the template's boot so that init runs the lab's DHCP loop (or nothing, quietly)."""
    _write(rootfs / "etc/init.d/rcS", GUEST_RCS, 0o755)
    _write(rootfs / "etc/inittab", guest_inittab(dhcp_loop))
    guest_dir = rootfs / GUEST_DIR.lstrip("/")
    _write(guest_dir / "udhcpc.script", GUEST_UDHCPC_SCRIPT, 0o755)
    _write(guest_dir / "dhcp-loop", GUEST_LOOP_SCRIPT, 0o755)
    log = rootfs / GUEST_LOG.lstrip("/")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()


def _pairs_of(name: str) -> list[str]:
    cdir = container_dir(name)
    try:
        return configured_veth_pairs((cdir / "config").read_text(), base=cdir)
    except OSError:
        return []


def container_state(name: str) -> str | None:
    """RUNNING, STOPPED, ... as LXC reports it; None when LXC does not know the container."""
    try:
        proc = run(["lxc-info", "-n", name, "-s", "-H"], check=False, timeout=15)
    except Exception:  # noqa: BLE001 - "cannot tell" is an answer here
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def init_pid(name: str) -> int | None:
    """The container's init as a host pid (enter its netns with `nsenter -t PID -n`)."""
    try:
        proc = run(["lxc-info", "-n", name, "-p", "-H"], check=False, timeout=15)
    except Exception:  # noqa: BLE001
        return None
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def start_container(name: str) -> subprocess.CompletedProcess[str]:
    """`lxc-start -n NAME -d`, never raising on failure: the leftover-veth lab wants the failure.

    A daemonized start prints only "The container failed to start"; the reason (for example
    `File exists - Failed to create veth pair "x-ct0" and "vethAbCdEf"`) goes to the log. So the
    start logs errors to `start.log` in the container directory, and on failure those lines are
    appended to the returned stderr, giving callers the message an operator would need.
    """
    log = container_dir(name) / "start.log"
    argv = ["lxc-start", "-n", name, "-d", "-o", str(log), "-l", "ERROR"]
    try:
        log.write_text("")
    except OSError:
        argv = ["lxc-start", "-n", name, "-d"]
    proc = run(argv, check=False, timeout=60)
    if proc.returncode == 0:
        # LXC made the host end just now; keep IPv6 chatter off it like every other lab link.
        for pair in _pairs_of(name):
            quiet(["sysctl", "-qw", f"net.ipv6.conf.{pair}.disable_ipv6=1"])
    stderr = proc.stderr
    if proc.returncode != 0:
        try:
            extra = [ln for ln in log.read_text().splitlines() if ln.strip() and ln not in stderr]
        except OSError:
            extra = []
        if extra:
            stderr = stderr + ("" if not stderr or stderr.endswith("\n") else "\n") + "\n".join(extra) + "\n"
    return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout, stderr)


_LOG_LINE_RE = re.compile(r"^lxc-start \S+ \d+\.\d+ ERROR\s+\S+ - \S+ - (?P<msg>.*)$")


def start_failure_reason(stderr: str) -> str:
    """The line of a failed start that explains it (the first log line naming what failed).

    LXC 5 logs `<errno text> - Failed to create veth pair "A" and "B"`; LXC 2.x printed
    `Failed to create veth pair "A" and "B": File exists`. Either way the first "Failed to" line
    is the cause and the rest ("failed to spawn", "container failed to start") its consequences.
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        m = _LOG_LINE_RE.match(line)
        msg = m.group("msg") if m else line
        if "Failed to" in msg and "daemonized" not in line:
            return msg
    return lines[0] if lines else "no output"


def _start_and_wait(name: str, timeout: float = 20) -> int | None:
    proc = start_container(name)
    if proc.returncode != 0:
        raise LabError(f"lxc-start -n {name} failed: {start_failure_reason(proc.stderr)}")
    run(["lxc-wait", "-n", name, "-s", "RUNNING", "-t", str(int(timeout))], timeout=timeout + 5)
    return init_pid(name)


def create_container(
    state: LabState, *, lab_name: str, bridge: str, start: bool = True, dhcp_loop: bool = True
) -> dict[str, Any]:
    """Create (and by default start) the lab's busybox container on `bridge`.

    The name is recorded before `lxc-create` so that a crash at any later point still leaves a
    state file `lab down` can finish from; the host veth is recorded too, so a veth that somehow
    outlives its container is removed with the lab's other links.
    """
    check_name(lab_name)
    name = container_name(lab_name)
    pair = veth_pair_name(lab_name)
    cdir = container_dir(name)
    if cdir.exists():
        raise LabError(
            f"LXC container {name} already exists in {LXC_PATH}; remove it with lxc-destroy -n {name} -f"
        )
    state.add("containers", name)
    state.add("links", pair)
    fd, netconf = tempfile.mkstemp(prefix=f"{name}.", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(modern_net_config(lab_name, bridge))
        run(["lxc-create", "-n", name, "-t", "busybox", "-f", netconf], timeout=120)
    finally:
        os.unlink(netconf)
    rootfs = cdir / "rootfs"
    _install_guest(rootfs, dhcp_loop=dhcp_loop)
    pid: int | None = None
    if start:
        pid = _start_and_wait(name)
    return {
        "name": name,
        "mac": container_mac(lab_name),
        "veth": pair,
        "bridge": bridge,
        "interface": "eth0",
        "config": str(cdir / "config"),
        "rootfs": str(rootfs),
        "init_pid": pid,
        "log": str(guest_log_path(name)),
    }


def attach(
    name: str, cmd: list[str], timeout: float = 30, *, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` inside the container (`lxc-attach`), with a clean environment.

    The host's environment (a pyenv PATH, locale variables) means nothing in a busybox rootfs, so
    it is cleared and PATH set to busybox's directories. Raises LabError only on timeout, or on a
    non-zero exit when `check` is set.
    """
    argv = ["lxc-attach", "-n", name, "--clear-env", "--set-var", f"PATH={GUEST_PATH}", "--", *cmd]
    return run(argv, check=check, timeout=timeout)


def make_leftover_veth(state: LabState, lab_name: str, *, bridge: str | None = None) -> str:
    """Rebuild seed 000's outage: a host veth already holds the name the container's config asks for.

    It looks like the seed's `ip a`: the named end UP, enslaved to the container's bridge, in
    LOWERLAYERDOWN because its peer (`NAME-p`, standing in for LXC's `vethXXXXXX`) is DOWN. Any
    `lxc-start` of the container then fails with "File exists". The link is recorded first.
    """
    check_name(lab_name)
    pair = veth_pair_name(lab_name)
    if bridge is None:
        try:
            links = configured_links((container_dir(container_name(lab_name)) / "config").read_text())
        except OSError:
            links = []
        bridge = links[0] if links else f"{lab_name}-br"
    state.add("links", pair)
    run(["ip", "link", "add", pair, "type", "veth", "peer", "name", leftover_peer_name(lab_name)])
    quiet(["sysctl", "-qw", f"net.ipv6.conf.{pair}.disable_ipv6=1"])
    if Path(f"/sys/class/net/{bridge}/bridge").is_dir():
        run(["ip", "link", "set", pair, "master", bridge])
    run(["ip", "link", "set", pair, "up"])
    return pair


def write_legacy_container(
    state: LabState, *, lab_name: str, bridge: str, include: bool = True, interface: str = "eth0"
) -> dict[str, Any]:
    """A stopped container on disk with LXC 1.x/2.x network keys, for the target resolver's tests.

    With `include`, the network lives in `<interface>.ini` pulled in by `lxc.include`, like the
    per-interface files OpenStack-Ansible writes (seed 000); otherwise it is inline in `config`.
    Recorded under `containers` so `destroy_container` removes the directory (LXC itself cannot:
    it refuses to parse the legacy keys).
    """
    check_name(lab_name)
    name = legacy_container_name(lab_name)
    cdir = container_dir(name)
    if cdir.exists():
        raise LabError(f"{cdir} already exists")
    state.add("containers", name)
    rootfs = cdir / "rootfs"
    rootfs.mkdir(parents=True)
    net_text = legacy_net_config(lab_name, bridge, interface)
    include_path = cdir / f"{interface}.ini" if include else None
    if include_path is not None:
        _write(include_path, net_text)
    config = cdir / "config"
    _write(
        config,
        legacy_main_config(
            name, str(rootfs), include=str(include_path) if include_path else None, net_text=net_text
        ),
    )
    return {
        "name": name,
        "dir": str(cdir),
        "config": str(config),
        "include": str(include_path) if include_path else None,
        "rootfs": str(rootfs),
        "mac": legacy_container_mac(lab_name),
        "veth": legacy_veth_pair_name(lab_name, interface),
        "bridge": bridge,
        "interface": interface,
    }


def _monitor_pids(name: str) -> list[int]:
    """LXC's per-container monitor (`[lxc monitor] /var/lib/lxc NAME`), found via /proc."""
    needle = f"[lxc monitor] {LXC_PATH} {name}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmdline == needle:
            pids.append(int(entry.name))
    return pids


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def destroy_container(name: str) -> None:
    """Stop, destroy and forget container `name`, leaving no process, link or directory. Never raises.

    The host veth normally disappears with the container's network namespace; the kernel frees a
    namespace asynchronously, so this waits for the link briefly and removes it if it stays (as a
    leftover would). Legacy containers, which LXC cannot parse, are removed by hand, but only
    under names this module makes.
    """
    try:
        cdir = container_dir(name)
        ours = bool(OUR_CONTAINER_RE.match(name))
        pairs = _pairs_of(name)
        was_running = container_state(name) not in (None, "STOPPED")
        if was_running:
            quiet(["lxc-stop", "-n", name, "-k"], timeout=60)
        if cdir.exists():
            quiet(["lxc-destroy", "-n", name, "-f"], timeout=60)
        if cdir.exists() and ours:
            shutil.rmtree(cdir, ignore_errors=True)
        if not _wait(lambda: not _monitor_pids(name), 5):
            for pid in _monitor_pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pair in pairs:
            link = Path(f"/sys/class/net/{pair}")
            gone = _wait(lambda link=link: not link.exists(), 3 if was_running else 0)
            if not gone and ours:
                quiet(["ip", "link", "del", pair])
    except Exception:  # noqa: BLE001 - teardown must go on whatever one step does
        pass
