"""Snapshots of the kernel's links in the format real hosts print: `ip -details -json link show`.

We read the live kernel with iproute2's JSON output rather than our own netlink decoding, so a
recording made by an operator on any host (`ip -d -j link show > links.json`) and our own live
capture are literally the same format: one walker, tested on both. One `ip` call per namespace
keeps a 1000-port bridge to a single dump. Facts `ip` does not print (addr_assign_type, driver)
are read from sysfs only for the few links that end up on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from tracer.errors import EnvironmentMissing, PrivilegeError, TopologyError


@dataclass
class Snapshot:
    """Links per namespace: {None: host links, "NAME": links inside namespace NAME}."""

    links: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    nsids: dict[int, str] = field(default_factory=dict)
    """The host's netnsid -> namespace name, to follow veth peers (link_netnsid)."""

    def find(self, name: str | None = None, *, ifindex: int | None = None, netns: str | None = None) -> dict | None:
        for link in self.links.get(netns, []):
            if (name is not None and link.get("ifname") == name) or (ifindex is not None and
                                                                      link.get("ifindex") == ifindex):
                return link
        return None

    def by_master(self, master: str, netns: str | None = None) -> list[dict[str, Any]]:
        return [link for link in self.links.get(netns, []) if link.get("master") == master]

    def to_json(self) -> str:
        return json.dumps({"format": "ip-details-json", "links": {k or "": v for k, v in self.links.items()},
                           "nsids": {str(k): v for k, v in self.nsids.items()}}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        try:
            data = json.loads(text)
            return cls({(k or None): v for k, v in data["links"].items()},
                       {int(k): v for k, v in data.get("nsids", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TopologyError(f"unreadable topology snapshot ({exc})") from None

    @classmethod
    def from_ip_json(cls, text: str, netns: str | None = None) -> Snapshot:
        """What an operator recorded with `ip -details -json link show`."""
        try:
            links = json.loads(text)
            if not isinstance(links, list):
                raise ValueError("expected a JSON list")
        except ValueError as exc:
            raise TopologyError(f"not `ip -d -j link show` output ({exc})") from None
        return cls({netns: links})


def _ip_json(args: list[str]) -> Any:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    except FileNotFoundError:
        raise EnvironmentMissing("iproute2 (`ip`) is not installed") from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        if "Operation not permitted" in msg or "Permission denied" in msg:
            raise PrivilegeError(f"reading {' '.join(args)} needs root: {msg}")
        raise TopologyError(f"ip {' '.join(args)}: {msg}")
    return json.loads(proc.stdout or "[]")


def _netns_args(netns: str) -> list[str]:
    if netns.startswith("pid:"):
        return ["nsenter", "-t", netns[4:], "-n", "ip"]
    return ["ip", "-n", netns]


def _links_in(netns: str) -> list[dict[str, Any]]:
    argv = [*_netns_args(netns), "-details", "-json", "link", "show"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise TopologyError(f"cannot read links in namespace {netns}: "
                            f"{(proc.stderr.strip().splitlines() or ['gone?'])[-1]}")
    return json.loads(proc.stdout or "[]")


def capture_live(*, guest_netns: str | None = None) -> Snapshot:
    """The host's links, the guest namespace's, and every named namespace a host veth leads into."""
    snap = Snapshot({None: _ip_json(["-details", "-json", "link", "show"])})
    try:
        snap.nsids = {int(e["nsid"]): e["name"] for e in _ip_json(["-json", "netns", "list-id"])
                      if "name" in e and "nsid" in e}
    except (TopologyError, ValueError, KeyError):
        snap.nsids = {}
    peers = {snap.nsids[link["link_netnsid"]] for link in snap.links[None]
             if link.get("link_netnsid") in snap.nsids and link.get("master")}
    for ns in sorted(peers | ({guest_netns} if guest_netns else set())):
        snap.links[ns] = _links_in(ns)
    return snap


def sysfs_facts(name: str) -> dict[str, Any]:
    """addr_assign_type and driver of a host link (None where sysfs does not say)."""
    base = f"/sys/class/net/{name}"
    facts: dict[str, Any] = {}
    try:
        with open(f"{base}/addr_assign_type") as f:
            facts["addr_assign_type"] = int(f.read().strip())
    except (OSError, ValueError):
        pass
    try:
        facts["driver"] = os.path.basename(os.readlink(f"{base}/device/driver"))
    except OSError:
        pass
    return facts
