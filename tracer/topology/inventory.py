"""Read the host into a `tracer.analyze.leftovers.Inventory`: every guest's fixed link names with its
state, the host's links, and which network namespaces something still holds.

Read-only, like every reader in this project:

* LXC containers from every lxcpath (`tracer.targets.lxc.LxcSource`: `lxc-info` for the state),
  with the configuration line that fixes each veth's host name (`lxc.net.N.veth.pair`, or the
  legacy `lxc.network.veth.pair`, through `lxc.include`s);
* libvirt domains (`tracer.targets.libvirt.LibvirtSource`) with their `<target dev>` names, and
  `managed='no'` from the inactive XML (a tap the operator must create beforehand is no leftover);
* the host's links from `ip -details -json link show`;
* the namespaces something still holds: named ones and any other nsfs bind mount, every process's
  own namespace and every namespace a process holds open, each turned into the nsid the host knows
  it by (pyroute2's RTM_GETNSID with NETNSA_FD, the only way the kernel answers that question).

A source that cannot be read becomes a note, never an exception: `check` must work on a host
without LXC or libvirt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tracer.analyze.leftovers import ConfiguredLink, GuestConfig, HostLink, Inventory
from tracer.errors import PrivilegeError, TargetError
from tracer.hosttools import ToolResult, run_tool

_PAIR_KEY_RE = re.compile(r"^lxc\.(net\.\d+|network\.\d+|network)\.veth\.pair$")
_NSFS_RE = re.compile(r"^net:\[(\d+)\]$")

NSID_NONE = 2**31
"""RTM_GETNSID answers -1 (as an unsigned 32-bit number) for a namespace this one has no id for."""


def read_inventory(
    *,
    lxc_source: Any = None,
    libvirt_source: Any = None,
    runner: Callable[..., ToolResult] = run_tool,
    proc: str = "/proc",
    netns_dir: str = "/run/netns",
) -> Inventory:
    """The whole host as `leftovers()` needs it."""
    notes: list[str] = []
    guests = [*lxc_guests(lxc_source, notes), *libvirt_guests(libvirt_source, notes, runner=runner)]
    libvirt_read = not any(n.startswith("libvirt:") for n in notes)
    links = read_links(runner)
    ids, unseen = reachable_nsids(proc=proc, netns_dir=netns_dir)
    if unseen and os.geteuid() != 0:
        ids = None
        notes.append(f"not root: the network namespaces of {unseen} process(es) could not be read, so no veth "
                     "is called an orphan")
    elif unseen:
        notes.append(f"the network namespace of {unseen} process(es) could not be read (not counted as gone)")
    return Inventory(guests=tuple(guests), links=tuple(links), netns_ids=ids, libvirt_read=libvirt_read,
                     notes=tuple(notes))


# ---------------------------------------------------------------- links
def read_links(runner: Callable[..., ToolResult] = run_tool) -> list[HostLink]:
    res = runner(["ip", "-details", "-json", "link", "show"], timeout=20)
    if not res.ok:
        if res.denied:
            raise PrivilegeError(f"reading the host's links was refused: {res.error}")
        raise TargetError(f"cannot read the host's links: {res.error}")
    return links_from_ip_json(res.stdout)


def links_from_ip_json(text: str) -> list[HostLink]:
    """`ip -details -json link show` -> HostLinks (pure)."""
    try:
        data = json.loads(text or "[]")
    except ValueError as exc:
        raise TargetError(f"unreadable `ip -j link` output ({exc})") from None
    out = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not item.get("ifname") or not isinstance(item.get("ifindex"), int):
            continue
        info = item.get("linkinfo") or {}
        data_ = info.get("info_data") or {}
        out.append(HostLink(
            name=item["ifname"], ifindex=item["ifindex"], kind=info.get("info_kind"),
            peer=item.get("link") if isinstance(item.get("link"), str) else None,
            peer_ifindex=item.get("link_index") if isinstance(item.get("link_index"), int) else None,
            netnsid=item.get("link_netnsid") if isinstance(item.get("link_netnsid"), int) else None,
            master=item.get("master"), operstate=item.get("operstate"),
            flags=tuple(f for f in item.get("flags", ()) if isinstance(f, str)), mtu=item.get("mtu"),
            tun_type=data_.get("type") if info.get("info_kind") == "tun" else None,
            persist=data_.get("persist") if info.get("info_kind") == "tun" else None,
        ))
    return out


# ---------------------------------------------------------------- LXC
def lxc_guests(source: Any = None, notes: list[str] | None = None) -> list[GuestConfig]:
    """Every LXC container with its state and the fixed veth names of its configuration."""
    from tracer.targets.lxc import LxcSource

    src = source if source is not None else LxcSource()
    notes = notes if notes is not None else []
    out = []
    for target in src.targets():
        out.append(lxc_guest(target, fs=getattr(src, "fs", None)))
    notes += [f"lxc:{p.name or '*'}: {p.error}" for p in src.problems]
    return out


def lxc_guest(target: Any, *, fs: Any = None) -> GuestConfig:
    """A loaded LXC Target -> GuestConfig, quoting the `veth.pair` line of each named veth."""
    from tracer.targets.lxc import read_config

    config = target.details.get("config")
    lines = []
    if config:
        try:
            lines = read_config(config, fs=fs).lines
        except (TargetError, PrivilegeError):
            lines = []
    links = []
    runtime = []
    for nic in target.nics:
        if nic.type != "veth":
            continue
        if target.running and nic.host_dev:
            runtime.append(nic.host_dev)
        name = nic.details.get("configured_pair") or nic.host_dev
        line = _pair_line(lines, name) if name else None
        if not name or (target.running and line is None):
            continue  # a running container's host end that LXC named itself (vethXXXXXX)
        if line is not None:
            origin = f"{line.key} = {line.value} in {line.file} (line {line.line}"
            origin += f", included from {config})" if config and line.file != config else ")"
        else:
            origin = f"veth.pair = {name} in {config or 'the container config'}"
        links.append(ConfiguredLink(name=name, origin=origin, type="veth", bridge=nic.link))
    return GuestConfig(name=target.name, kind="lxc", running=target.running,
                       state=target.details.get("state") or ("RUNNING" if target.running else "STOPPED"),
                       links=tuple(links), runtime=tuple(runtime))


def _pair_line(lines: Sequence[Any], name: str) -> Any:
    found = [ln for ln in lines if _PAIR_KEY_RE.match(ln.key) and ln.value == name]
    return found[-1] if found else None


# ---------------------------------------------------------------- libvirt
def libvirt_guests(source: Any = None, notes: list[str] | None = None, *,
                   runner: Callable[..., ToolResult] = run_tool) -> list[GuestConfig]:
    """Every libvirt domain with its state and its fixed `<target dev>` names."""
    from tracer.targets.libvirt import LibvirtSource

    src = source if source is not None else LibvirtSource()
    notes = notes if notes is not None else []
    out = []
    for target in src.targets():
        etc = str(getattr(src, "etc_dir", "/etc/libvirt"))
        unmanaged = set() if target.running else _unmanaged_targets(target.name, runner, etc_dir=etc)
        out.append(libvirt_guest(target, unmanaged=unmanaged))
    notes += [f"libvirt:{p.name or '*'}: {p.error}" for p in src.problems]
    return out


def libvirt_guest(target: Any, *, unmanaged: Iterable[str] = ()) -> GuestConfig:
    skip = set(unmanaged)
    links = []
    runtime = []
    where = target.details.get("source") or "its XML"
    for nic in target.nics:
        if not nic.host_dev:
            continue
        if target.running:
            runtime.append(nic.host_dev)
            continue
        index = nic.details.get("index", "?")
        bridge = f", bridge {nic.link}" if nic.link else ""
        origin = (f"<target dev='{nic.host_dev}'/> of interface {index} (type {nic.type}{bridge}) in libvirt "
                  f"domain {target.name} ({where})")
        links.append(ConfiguredLink(name=nic.host_dev, origin=origin, type=nic.type, bridge=nic.link,
                                    managed=nic.host_dev not in skip))
    return GuestConfig(name=target.name, kind="libvirt", running=target.running,
                       state=target.details.get("state") or ("running" if target.running else "shut off"),
                       links=tuple(links), runtime=tuple(runtime))


def _unmanaged_targets(name: str, runner: Callable[..., ToolResult], *, etc_dir: str = "/etc/libvirt") -> set[str]:
    """`<target dev=X managed='no'/>` names of a stopped domain (the operator creates those taps)."""
    from tracer.targets.base import local_name, parse_xml

    texts = []
    for uri in ("qemu:///system", "lxc:///system"):
        res = runner(["virsh", "-c", uri, "dumpxml", "--inactive", name], timeout=20)
        if res.ok:
            texts.append(res.stdout)
            break
    if not texts:
        for path in (f"{etc_dir}/qemu/{name}.xml", f"{etc_dir}/lxc/{name}.xml"):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
                break
            except OSError:
                continue
    out: set[str] = set()
    for text in texts:
        try:
            root = parse_xml(text, origin=f"libvirt domain {name}")
        except TargetError:
            continue
        for el in root.iter():
            if local_name(el.tag) == "target" and el.get("dev") and el.get("managed") == "no":
                out.add(el.get("dev", ""))
    return out


# ---------------------------------------------------------------- namespaces
def reachable_nsids(*, proc: str = "/proc", netns_dir: str = "/run/netns") -> tuple[frozenset[int] | None, int]:
    """The host's nsids of every namespace something holds, and how many processes could not be read.

    None when the kernel cannot be asked at all (then no veth is called an orphan)."""
    paths: dict[str, str] = {}
    """namespace (net:[inode]) -> one path that opens it."""
    unseen = 0
    for entry in _listdir(netns_dir):
        _remember(paths, os.path.join(netns_dir, entry))
    try:
        with open(f"{proc}/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if " - nsfs " in line and len(fields) > 4 and _NSFS_RE.match(fields[3]):
                    _remember(paths, fields[4].replace("\\040", " "), key=fields[3])
    except OSError:
        pass
    for pid in _listdir(proc):
        if not pid.isdigit():
            continue
        if not _remember(paths, f"{proc}/{pid}/ns/net") and os.path.exists(f"{proc}/{pid}"):
            unseen += 1
        for fd in _listdir(f"{proc}/{pid}/fd"):
            path = f"{proc}/{pid}/fd/{fd}"
            try:
                target = os.readlink(path)
            except OSError:
                continue
            if _NSFS_RE.match(target):
                _remember(paths, path, key=target)
    ids: set[int] = set()
    try:
        from pyroute2 import IPRoute

        ipr = IPRoute()
    except OSError:
        return None, unseen
    with ipr:
        for path in paths.values():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                nsid = (ipr.get_netnsid(fd=fd) or {}).get("nsid")
            except OSError:
                nsid = None
            finally:
                os.close(fd)
            if nsid is not None and 0 <= nsid < NSID_NONE:
                ids.add(nsid)
    return frozenset(ids), unseen


def _remember(paths: dict[str, str], path: str, key: str | None = None) -> bool:
    """Note one path that opens a namespace, keyed by the namespace (`net:[inode]`)."""
    if key is None:
        try:
            key = f"net:[{os.stat(path).st_ino}]"
        except OSError:
            return False
    paths.setdefault(key, path)
    return True


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
