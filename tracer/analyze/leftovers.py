"""Leftover host links: names a stopped guest needs that something else already holds, and orphans.

The kernel keeps one link name per network namespace. A guest whose configuration fixes the name
of its host-side device gets exactly that name at every start:

* LXC: `lxc.net.N.veth.pair` (LXC < 3.0: `lxc.network.veth.pair`, often in an `lxc.include`d file
  such as OpenStack-Ansible's `eno1.ini`) names the host end of the veth pair LXC creates at
  `lxc-start`. If a link with that name is still there (a failed deployment that never rolled
  back, a pair an earlier start left behind: seed 000), creating the pair fails with EEXIST and LXC
  says `Failed to create veth pair "b78dc1c8_eth0" and "vethBMO7RR": File exists`; the container
  does not start.
* libvirt: `<target dev='NAME'/>` in a domain's persistent XML (libvirt drops the names it made up
  itself, `vnetN`/`macvtapN`, from inactive XML, so a name there was fixed on purpose). libvirt 9
  checks before creating the tap and `virsh start` fails with 'Requested operation is not valid:
  The NAME interface already exists' (seen on this project's machines). `managed='no'` is the
  opposite contract (the operator creates the tap, libvirt only opens it) and is never a leftover.

Orphans are links nothing will ever use again:

* a veth whose peer lives in a network namespace that nothing holds any more (no name under
  /run/netns or any other nsfs mount, no process inside it, no process holding it open): frames
  sent into it go nowhere, and as a bridge port it floods into a void;
* a persistent tap named like libvirt's or nova's (`vnetN`, `tapXXXXXXXX-XX`), with no carrier (no
  QEMU has it open) and claimed by no running domain: the remains of a domain that is no longer
  running.

Deleting one end of a veth deletes both ends. A link that a *running* guest uses is never called a
leftover: two configurations naming the same device is a configuration conflict, reported with a
fix that renames instead of deleting.

Everything here is pure: `tracer.topology.inventory` reads the host into an `Inventory`, and `leftovers()`
turns it into Findings plus the exact links `check --fix` may delete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tracer.model import Finding, Severity

CODE = "leftover-veth"

LIBVIRT_TAP_RE = re.compile(r"^(vnet\d+|tap[0-9a-f]{8}-[0-9a-f]{2})$")
"""Tap names libvirt (`vnetN`) and nova (`tap` + the first 11 characters of the neutron port) give."""


@dataclass(frozen=True, slots=True)
class HostLink:
    """One link of the host's namespace, as `ip -details -json link show` prints it."""

    name: str
    ifindex: int
    kind: str | None = None
    """linkinfo info_kind: veth, tun, bridge, macvtap, ...; None for a physical NIC."""
    peer: str | None = None
    """The veth peer's name when it is in this namespace (ip's `link`)."""
    peer_ifindex: int | None = None
    """The veth peer's ifindex inside another namespace (ip's `link_index`)."""
    netnsid: int | None = None
    """`link_netnsid`: the peer's namespace, as this namespace numbers it; None when the peer is here."""
    master: str | None = None
    operstate: str | None = None
    flags: tuple[str, ...] = ()
    mtu: int | None = None
    tun_type: str | None = None
    """tap or tun, for kind tun."""
    persist: bool | None = None
    """A persistent tun/tap (it outlives the process that created it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def lower_up(self) -> bool:
        return "LOWER_UP" in self.flags

    def ip_show(self) -> str:
        """The link as `ip link show NAME` prints it (the parts that matter here)."""
        at = f"@{self.peer}" if self.peer else (f"@if{self.peer_ifindex}" if self.peer_ifindex else "")
        parts = [f"{self.ifindex}: {self.name}{at}: <{','.join(self.flags)}>"]
        if self.mtu:
            parts.append(f"mtu {self.mtu}")
        if self.master:
            parts.append(f"master {self.master}")
        if self.operstate:
            parts.append(f"state {self.operstate}")
        if self.netnsid is not None:
            parts.append(f"link-netnsid {self.netnsid}")
        kind = self.tun_type if self.kind == "tun" and self.tun_type else self.kind
        if kind:
            parts.append(f"({kind}{', persist' if self.persist else ''})")
        return f"ip link show {self.name}: " + " ".join(parts)


@dataclass(frozen=True, slots=True)
class ConfiguredLink:
    """A host-side device name a guest's configuration fixes."""

    name: str
    origin: str
    """The configuration line, quoted: `lxc.net.0.veth.pair = x-ct0 in /var/lib/lxc/c/config (line 14)`."""
    type: str = "veth"
    """LXC veth; libvirt bridge/network/ethernet/direct."""
    bridge: str | None = None
    managed: bool = True
    """libvirt `managed='no'`: the device is supposed to exist before the domain starts."""


@dataclass(frozen=True, slots=True)
class GuestConfig:
    """A guest as its manager configures it, with its state."""

    name: str
    kind: str
    """lxc or libvirt."""
    running: bool
    state: str | None = None
    links: tuple[ConfiguredLink, ...] = ()
    """Fixed host-side names from the configuration."""
    runtime: tuple[str, ...] = ()
    """Host devices the running guest actually uses (lxc-info Link:, libvirt live <target dev>)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", tuple(self.links))
        object.__setattr__(self, "runtime", tuple(self.runtime))

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the host has: guest configurations, its links, and which namespaces still exist."""

    guests: tuple[GuestConfig, ...] = ()
    links: tuple[HostLink, ...] = ()
    netns_ids: frozenset[int] | None = None
    """The nsids (as the host numbers them) of namespaces something still holds; None: unknown."""
    libvirt_read: bool = True
    """Whether libvirt's domains could be listed: without it no tap can be called an orphan."""
    notes: tuple[str, ...] = ()
    """What could not be read (a malformed config, processes whose namespace could not be seen)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "guests", tuple(self.guests))
        object.__setattr__(self, "links", tuple(self.links))
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.netns_ids is not None:
            object.__setattr__(self, "netns_ids", frozenset(self.netns_ids))


@dataclass(frozen=True, slots=True)
class Leftover:
    """A leftover finding with what `check --fix` needs to act on exactly that link."""

    link: str
    ifindex: int
    finding: Finding
    guest: str | None = None
    """`kind:name` of the guest whose start it blocks, if any."""
    bridge: str | None = None
    """The bridge the link is a port of (or the one the guest's configuration names)."""
    removable: bool = True
    """False when a running guest uses the link: deleting it would cut that guest off."""

    @property
    def command(self) -> str:
        return f"ip link del {self.link}"


def leftovers(inv: Inventory) -> list[Leftover]:
    """Every leftover and orphan on the host, blocking ones first."""
    by_name = {link.name: link for link in inv.links}
    users = _users(inv.guests)
    out: list[Leftover] = []
    seen: set[tuple[str, str]] = set()
    for guest in inv.guests:
        if guest.running:
            continue
        for conf in guest.links:
            link = by_name.get(conf.name)
            if link is None or not conf.managed or (guest.label, conf.name) in seen:
                continue
            seen.add((guest.label, conf.name))
            out.append(_blocking(guest, conf, link, users.get(conf.name)))
    blocked = {lo.link for lo in out}
    for link in inv.links:
        if link.name in blocked or link.name in users:
            continue
        if (link.kind == "veth" and link.netnsid is not None and inv.netns_ids is not None
                and link.netnsid not in inv.netns_ids):
            out.append(_orphan_veth(link, inv))
        elif (inv.libvirt_read and link.kind == "tun" and link.tun_type in ("tap", None) and link.persist
              and not link.lower_up and LIBVIRT_TAP_RE.match(link.name)):
            out.append(_orphan_tap(link, inv))
    return out


def leftover_findings(inv: Inventory) -> list[Finding]:
    return [lo.finding for lo in leftovers(inv)]


def relevant(found: Iterable[Leftover], *, guest: str, bridges: Iterable[str] = ()) -> list[Leftover]:
    """The leftovers that concern one target (`kind:name`): its own blocked names, and orphans
    plugged into a bridge its path uses or its configuration names."""
    names = set(bridges)
    return [lo for lo in found if lo.guest == guest or (lo.bridge is not None and lo.bridge in names)]


# ---------------------------------------------------------------- the three shapes
def _blocking(guest: GuestConfig, conf: ConfiguredLink, link: HostLink, user: GuestConfig | None) -> Leftover:
    state = guest.state or "not running"
    evidence = [conf.origin, link.ip_show(), f"{guest.label} is {state}"]
    if guest.kind == "lxc":
        failure = (f"LXC creates the pair with that exact name at every start, the kernel refuses a second "
                   f"link with the same name, and lxc-start fails: 'Failed to create veth pair \"{conf.name}\" "
                   f"and \"vethXXXXXX\": File exists'")
        what = "the host end of its veth"
    else:
        failure = (f"libvirt creates the {'tap' if conf.type in ('bridge', 'network', 'ethernet') else 'device'} "
                   f"with that exact name at every start and refuses a name that is taken, so `virsh start "
                   f"{guest.name}` fails: 'Requested operation is not valid: The {conf.name} interface already "
                   f"exists' (the kernel's 'File exists' for the same collision)")
        what = f"its {conf.type} interface's host device (<target dev>)"
    if user is not None:
        evidence.append(f"{conf.name} is in use by {user.label}, which is running")
        return Leftover(
            link=link.name, ifindex=link.ifindex, guest=guest.label, bridge=link.master or conf.bridge,
            removable=False,
            finding=Finding(
                code=CODE, severity=Severity.ERROR, hop=link.name, evidence=tuple(evidence),
                explanation=(f"{guest.label}'s configuration names {what} {conf.name}, but the running "
                             f"{user.label} already uses a link with that name: two configurations claim one "
                             f"device. {failure}. The link is not a leftover: deleting it would cut "
                             f"{user.label} off."),
                fix=f"give {guest.name} another name than {conf.name} ({conf.origin.split(' in ')[0]}), "
                    f"or stop {user.name} first",
            ))
    peer = ""
    if link.kind == "veth" and link.peer:
        peer = (f" Its peer {link.peer} is in this namespace too, so no container owns the pair; deleting "
                f"{link.name} deletes {link.peer} with it.")
    elif link.kind == "veth" and link.netnsid is not None:
        peer = f" Its peer is in the namespace with nsid {link.netnsid}; deleting {link.name} deletes it too."
    return Leftover(
        link=link.name, ifindex=link.ifindex, guest=guest.label, bridge=link.master or conf.bridge,
        finding=Finding(
            code=CODE, severity=Severity.ERROR, hop=link.name, evidence=tuple(evidence),
            explanation=(f"{guest.label} is {state} and its configuration names {what} {conf.name}; a "
                         f"{link.kind or 'network'} link with that name already exists on the host, left "
                         f"behind by an earlier start or a deployment that failed and never rolled back. "
                         f"{failure}.{peer}"),
            fix=f"ip link del {link.name}",
        ))


def _orphan_veth(link: HostLink, inv: Inventory) -> Leftover:
    evidence = [link.ip_show(),
                f"its peer (ifindex {link.peer_ifindex if link.peer_ifindex is not None else '?'}) is in the "
                f"namespace with nsid {link.netnsid}, which no named namespace, nsfs mount, process or open file "
                f"holds any more"]
    evidence += [n for n in inv.notes if "namespace" in n]
    return _orphan(link, evidence, (
        f"{link.name} is one end of a veth whose other end is in a network namespace nothing uses any more (its "
        f"container or process is gone, but something inside the kernel keeps the namespace alive). No frame sent "
        f"into {link.name} arrives anywhere{_flooding(link)}, and its name stays taken for the next guest that "
        "wants it."))


def _orphan_tap(link: HostLink, inv: Inventory) -> Leftover:
    stopped = sorted(g.label for g in inv.guests if g.kind == "libvirt" and not g.running)
    evidence = [link.ip_show(),
                f"{link.name} is a persistent tap with no carrier: no QEMU process has it open",
                "no running libvirt domain uses it" + (f" (not running: {', '.join(stopped[:5])})" if stopped else "")]
    return _orphan(link, evidence, (
        f"{link.name} is named like a libvirt/nova tap, but the domain it belonged to is no longer running: a tap "
        "a VM uses has carrier while QEMU holds it, and libvirt removes its taps when the domain stops. This one "
        f"survived{_flooding(link)}, and a domain whose configuration names {link.name} cannot start while it "
        "exists."))


def _flooding(link: HostLink) -> str:
    return f"; as a port of {link.master} it floods the bridge's broadcasts into nowhere" if link.master else ""


def _orphan(link: HostLink, evidence: list[str], explanation: str) -> Leftover:
    """A link nothing will use again: a warning (nothing is blocked yet), fixed by deleting it."""
    return Leftover(
        link=link.name, ifindex=link.ifindex, bridge=link.master,
        finding=Finding(code=CODE, severity=Severity.WARNING, hop=link.name, evidence=tuple(evidence),
                        explanation=explanation, fix=f"ip link del {link.name}"))


def _users(guests: Iterable[GuestConfig]) -> dict[str, GuestConfig]:
    """Link name -> the running guest that uses it."""
    out: dict[str, GuestConfig] = {}
    for g in guests:
        if g.running:
            for name in (*g.runtime, *(c.name for c in g.links)):
                out.setdefault(name, g)
    return out
