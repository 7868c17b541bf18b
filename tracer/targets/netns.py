"""Network namespaces (by name or by a process's PID) as targets.

Theory of operation
-------------------
A namespace made with `ip netns add NAME` is a bind mount at /run/netns/NAME; any process's is
/proc/PID/ns/net. The guest's NICs are the non-loopback links inside. Their host side is not
visible from inside: for a veth, the kernel reports the peer's ifindex (IFLA_LINK) and the
namespace it lives in (IFLA_LINK_NETNSID); the topology walker resolves that peer in the host
namespace. Reading inside a namespace is one small function, `read_links`, using pyroute2 with
`flags=0` so that asking never creates a namespace by accident.

Query forms: a name under /run/netns, `pid:1234`, a bare number that is a live PID with a network
namespace of its own, or a path to a namespace file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import _host
from tracer.targets.base import Nic, Source, Target, normalize_mac

RUN_NETNS = "/run/netns"

Link = Mapping[str, Any]
"""A link as `read_links` returns it: ifname, ifindex, mac, kind, peer_ifindex, link_netnsid, operstate,
master, mtu (any may be missing)."""


# ---------------------------------------------------------------- pure parsing
def nics_from_links(links: Iterable[Link], *, netns: str) -> tuple[Nic, ...]:
    """The guest NICs of a namespace: every link but loopback, in ifindex order."""
    nics = []
    for link in sorted(links, key=lambda item: _int(item.get("ifindex")) or 0):
        name = link.get("ifname")
        if not isinstance(name, str) or not name:
            raise TargetError(f"netns {netns}: a link without a name")
        kind = link.get("kind") or "device"
        if name == "lo" or kind == "loopback" or link.get("link_type") == "loopback":
            continue
        mac = normalize_mac(link.get("mac")) if link.get("mac") else None
        details: dict[str, Any] = {}
        for key in ("ifindex", "peer_ifindex", "link_netnsid", "operstate", "mtu", "master"):
            if link.get(key) is not None:
                details[key] = link[key]
        note = None
        if kind == "veth" and details.get("peer_ifindex") is None:
            note = "veth without a peer ifindex: its peer is gone or in a namespace we cannot see"
        elif kind in ("macvlan", "ipvlan", "vlan"):
            note = (f"{kind} device: its lower device (ifindex {details.get('peer_ifindex', '?')}) "
                    "carries the frames outside this namespace")
        elif kind == "device" and details.get("peer_ifindex") is None:
            note = "a device with no peer: moved in whole (phys), so it has no host-side end"
        nics.append(Nic(mac=mac, host_dev=None, link=None, type=str(kind), guest_dev=name, netns=netns,
                        details=details, note=note))
    return tuple(nics)


def parse_ip_link_json(text: str, *, origin: str = "ip -j -d link") -> list[dict[str, Any]]:
    """`ip -j -d link show` output as `read_links` dicts (for recorded samples)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TargetError(f"{origin}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, list):
        raise TargetError(f"{origin}: expected a JSON list of links")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise TargetError(f"{origin}: a link that is not an object")
        info = item.get("linkinfo") if isinstance(item.get("linkinfo"), dict) else {}
        out.append({
            "ifname": item.get("ifname"),
            "ifindex": _int(item.get("ifindex")),
            "mac": item.get("address"),
            "kind": info.get("info_kind") or ("loopback" if item.get("link_type") == "loopback" else None),
            "peer_ifindex": _int(item.get("link_index")),
            "link_netnsid": _int(item.get("link_netnsid")),
            "operstate": item.get("operstate"),
            "mtu": _int(item.get("mtu")),
            "master": item.get("master"),
        })
    return out


def netns_target(name: str, links: Iterable[Link], *, spec: str, details: Mapping[str, Any] | None = None) -> Target:
    nics = nics_from_links(links, netns=spec)
    notes = () if nics else ("the namespace has only a loopback: nothing to trace",)
    return Target(name=name, kind="netns", nics=nics, running=True,
                  details={"netns": spec, **(details or {})}, notes=notes)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# ---------------------------------------------------------------- reading the host
def read_links(path: str) -> list[dict[str, Any]]:
    """The links inside the namespace file at `path`, via netlink (needs CAP_SYS_ADMIN to enter)."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - 0.3 s import, only when a namespace is read

    try:
        with IPRoute(netns=path, flags=0) as ipr:
            raw = ipr.get_links()
    except PermissionError:
        raise PrivilegeError(f"entering network namespace {path} needs root (CAP_SYS_ADMIN)") from None
    except OSError as exc:
        if exc.errno in (1, 13):
            raise PrivilegeError(f"entering network namespace {path} needs root (CAP_SYS_ADMIN)") from None
        raise TargetError(f"cannot read network namespace {path}: {exc.strerror or exc}") from None
    links = []
    for msg in raw:
        info = msg.get_attr("IFLA_LINKINFO")
        links.append({
            "ifname": msg.get_attr("IFLA_IFNAME"),
            "ifindex": msg["index"],
            "mac": msg.get_attr("IFLA_ADDRESS"),
            "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None,
            "peer_ifindex": msg.get_attr("IFLA_LINK"),
            "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
            "operstate": msg.get_attr("IFLA_OPERSTATE"),
            "mtu": msg.get_attr("IFLA_MTU"),
        })
    return links


class NetnsSource(Source):
    """Named namespaces under /run/netns, and any process's namespace by PID."""

    kind = "netns"

    def __init__(
        self,
        *,
        run_dir: str = RUN_NETNS,
        proc: str = "/proc",
        reader: Callable[[str], list[dict[str, Any]]] = read_links,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.proc = proc
        self.reader = reader

    def names(self) -> list[str]:
        return [n for n in _host.list_dir(self.run_dir) if not n.startswith(".")]

    def load(self, name: str) -> Target:
        path = os.path.join(self.run_dir, name)
        if "/" in name or not os.path.exists(path):
            raise TargetError(f"no network namespace named {name!r}")
        return netns_target(name, self.reader(path), spec=name, details={"netns_path": path})

    def lookup(self, query: str, *, prefixed: bool = False) -> Target | None:
        explicit = query.startswith("pid:")
        text = query[4:] if explicit else query
        if text.isdigit() and len(text) <= 10:
            return self._by_pid(int(text), explicit=explicit)
        if query.startswith("/") and os.path.exists(query):
            return netns_target(query, self.reader(query), spec=query, details={"netns_path": query})
        return None

    def _by_pid(self, pid: int, *, explicit: bool) -> Target | None:
        path = f"{self.proc}/{pid}/ns/net"
        if pid <= 0 or not os.path.exists(f"{self.proc}/{pid}"):
            if explicit:
                raise TargetError(f"no process with PID {pid}")
            return None
        shared = _host.same_netns_as_host(pid, self.proc)
        if shared is None:
            if explicit:
                raise PrivilegeError(f"cannot read the network namespace of PID {pid} (run as root)")
            return None
        if shared:
            if explicit:
                raise TargetError(f"PID {pid} shares the host's network namespace: its frames are the host's own")
            return None
        details: dict[str, Any] = {"pid": pid, "netns_path": path}
        comm = _read_quiet(f"{self.proc}/{pid}/comm")
        if comm:
            details["comm"] = comm.strip()
        named = self._name_of(path)
        if named:
            details["netns_name"] = named
        return netns_target(f"pid:{pid}", self.reader(path), spec=f"pid:{pid}", details=details)

    def _name_of(self, path: str) -> str | None:
        """The /run/netns name of the namespace at `path`, when it has one."""
        try:
            inode = os.stat(path).st_ino
            dev = os.stat(path).st_dev
        except OSError:
            return None
        for name in _host.list_dir_quiet(self.run_dir):
            try:
                st = os.stat(os.path.join(self.run_dir, name))
            except OSError:
                continue
            if st.st_ino == inode and st.st_dev == dev:
                return name
        return None


def _read_quiet(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(256)
    except OSError:
        return None
