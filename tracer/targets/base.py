"""What a target lookup returns, and the helpers every source shares.

A `Target` is a guest as its manager describes it (libvirt domain, LXC or LXD container, network
namespace, Xen domain) reduced to what the path walk needs: its NICs, each with the host-side
device when the manager names it, the bridge or lower device the configuration attaches it to, and
the guest's namespace when the guest side can be entered. Nothing here reads the host: sources
parse text into Targets, and `tracer.targets` decides which Target a query means.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from tracer.errors import PrivilegeError, TargetError
from tracer.model import Guest

KINDS = ("libvirt", "lxc", "lxd", "netns", "xen")
"""Target kinds, also accepted as a query prefix (`lxc:web1`) to search one source only."""

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$", re.IGNORECASE)
_MAC_PLAIN_RE = re.compile(r"^[0-9a-f]{12}$", re.IGNORECASE)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)

UNSNIFFABLE_TYPES = frozenset({
    "vhostuser", "user", "hostdev", "vdpa", "mcast", "server", "client", "udp", "null", "vds",
    "empty", "none", "sriov",
})
"""NIC types whose frames never cross a host kernel link the tracer could sniff."""


def normalize_mac(value: object) -> str | None:
    """`FA-16-3E-56-EA-FA`, `fa163e56eafa` or `fa:16:3e:56:ea:fa` -> `fa:16:3e:56:ea:fa`; None if not a MAC."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _MAC_RE.match(text):
        return text.lower().replace("-", ":")
    if _MAC_PLAIN_RE.match(text):
        low = text.lower()
        return ":".join(low[i:i + 2] for i in range(0, 12, 2))
    return None


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value.strip()))


def uuid_key(value: str) -> str:
    """Compare UUIDs without case or dashes (nova prints them with, keystone ids come without)."""
    return value.strip().lower().replace("-", "")


def netns_path(spec: str | None) -> str | None:
    """The file to open for a Nic/Hop `netns` spec: `pid:N`, a name under /run/netns, or a path."""
    if not spec:
        return None
    if spec.startswith("pid:") and spec[4:].isdigit():
        return f"/proc/{spec[4:]}/ns/net"
    if spec.startswith("/"):
        return spec
    return f"/run/netns/{spec}"


@dataclass(frozen=True, slots=True)
class Nic:
    """One guest NIC as its manager configures it."""

    mac: str | None = None
    """The guest's MAC (what its DHCP DISCOVER carries as chaddr), lower case with colons."""
    host_dev: str | None = None
    """The host-side device frames cross first (tap, vnetN, macvtapN, named veth, vifD.N), when known.
    None when the manager lets the kernel pick it and only the guest's namespace can tell (unnamed
    veth: the topology walker follows the guest side's peer ifindex), or when there is none."""
    link: str | None = None
    """What the configuration attaches the NIC to: a bridge, or the lower device of a macvlan,
    macvtap, vlan or physical NIC."""
    type: str = "unknown"
    """The manager's own word: libvirt bridge/network/direct/ethernet/vhostuser/...; LXC veth/macvlan/
    vlan/phys/empty/none; LXD bridged/macvlan/physical/...; netns: the link kind; Xen vif."""
    mode: str | None = None
    """macvlan/macvtap/ipvlan mode (bridge, vepa, private, passthru) or veth mode (bridge, router)."""
    vlan_id: int | None = None
    guest_dev: str | None = None
    """The interface name inside the guest (eth0), when the configuration or the namespace says."""
    netns: str | None = None
    """The guest's network namespace when it can be entered: a name under /run/netns or `pid:N`
    (see `netns_path`). None for VMs."""
    details: dict[str, Any] = field(default_factory=dict)
    """Everything else the source knew: libvirt alias/model/network/portgroup, LXC config file and
    line, LXD device name, netns ifindex and veth peer ifindex, Xen devid..."""
    note: str | None = None
    """Why this NIC cannot be traced, or what the tracer must know about it, in words."""

    def __post_init__(self) -> None:
        if self.mac is not None:
            mac = normalize_mac(self.mac)
            if mac is None:
                raise ValueError(f"not a MAC address: {self.mac!r}")
            object.__setattr__(self, "mac", mac)
        if self.vlan_id is not None and not (0 <= int(self.vlan_id) <= 4095):
            raise ValueError(f"VLAN id out of range: {self.vlan_id}")
        if not self.type:
            raise ValueError("a NIC needs a type")

    @property
    def sniffable(self) -> bool:
        """Whether the guest's frames cross a host kernel link at all."""
        return self.type not in UNSNIFFABLE_TYPES

    def label(self) -> str:
        """A short name for messages: host device, else guest device, else MAC, else type."""
        return self.host_dev or self.guest_dev or self.mac or self.type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Nic:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Target:
    """A guest found by name, UUID, MAC or PID, with the NICs its manager gave it."""

    name: str
    kind: str
    """libvirt, lxc, lxd, netns or xen."""
    nics: tuple[Nic, ...] = ()
    running: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    """uuid, nova_uuid and nova metadata, config path, init pid, domain id, state, matched_by..."""
    notes: tuple[str, ...] = ()
    """Things about the whole target worth saying (mixed legacy keys, unreadable include...)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a target needs a name")
        if self.kind not in KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}")
        object.__setattr__(self, "nics", tuple(self.nics))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def with_details(self, **extra: Any) -> Target:
        return replace(self, details={**self.details, **extra})

    def to_guest(self, nic: Nic | None = None) -> Guest:
        """The `tracer.model.Guest` a Path starts from, for one of this target's NICs."""
        details = {k: v for k, v in self.details.items() if k in ("uuid", "nova_uuid", "init_pid", "matched_by")}
        if nic is not None and nic.netns:
            details["netns"] = nic.netns
        return Guest(name=self.name, kind=self.kind, mac=nic.mac if nic else None,
                     nic=(nic.guest_dev or nic.host_dev) if nic else None, details=details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "running": self.running,
            "nics": [n.to_dict() for n in self.nics],
            "details": dict(self.details),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        return cls(
            name=data["name"],
            kind=data["kind"],
            nics=tuple(Nic.from_dict(n) for n in data.get("nics", ())),
            running=bool(data.get("running", False)),
            details=dict(data.get("details", {})),
            notes=tuple(data.get("notes", ())),
        )


def select_nic(target: Target, spec: str | None) -> tuple[Nic, ...]:
    """The NICs `--nic MAC|NAME` picks: exactly one with a spec, all of them without.

    A spec matches a NIC's MAC, host device, guest device, or the name its manager gives it
    (libvirt alias `net0`, LXD device `eth0`, LXC index `net1`). With no spec every NIC is returned
    and the caller shows one path per NIC.
    """
    if not target.nics:
        raise TargetError(f"{target.label} has no network interface configured")
    if spec is None or not spec.strip():
        return target.nics
    wanted = spec.strip()
    mac = normalize_mac(wanted)
    matches = [n for n in target.nics if _nic_names(n, mac) & {wanted, mac}]
    if len(matches) == 1:
        return (matches[0],)
    listing = ", ".join(_nic_desc(n) for n in target.nics)
    if not matches:
        raise TargetError(f"{target.label} has no NIC {wanted!r}; its NICs: {listing}")
    raise TargetError(f"--nic {wanted!r} matches {len(matches)} NICs of {target.label}: "
                      + ", ".join(_nic_desc(n) for n in matches))


def _nic_names(nic: Nic, mac: str | None) -> set[str | None]:
    names: set[str | None] = {nic.host_dev, nic.guest_dev}
    if mac is not None:
        names.add(nic.mac)
    for key in ("alias", "device", "index_name"):
        value = nic.details.get(key)
        if isinstance(value, str):
            names.add(value)
    names.discard(None)
    return names


def _nic_desc(nic: Nic) -> str:
    parts = [p for p in (nic.guest_dev, nic.host_dev, nic.mac) if p]
    return f"{'/'.join(parts) or nic.type} ({nic.type})"


# ---------------------------------------------------------------- parsing helpers
def parse_xml(text: str, *, origin: str) -> ET.Element:
    """Parse XML from a host file or tool without entity tricks.

    libvirt never writes a DOCTYPE, so any DOCTYPE or ENTITY declaration is refused before the
    parser sees it (no billion-laughs expansion, no external entities). Any parse failure becomes a
    TargetError naming `origin` and the line and column expat reports.
    """
    if not isinstance(text, str):
        raise TargetError(f"{origin}: expected text, got {type(text).__name__}")
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise TargetError(f"{origin}: refusing XML with a DOCTYPE or ENTITY declaration")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        msg = str(exc).split(":")[0]
        raise TargetError(f"{origin}: line {line}, column {column}: malformed XML ({msg})") from None
    except (ValueError, LookupError, UnicodeError, RecursionError) as exc:
        raise TargetError(f"{origin}: malformed XML ({exc.__class__.__name__})") from None


def local_name(tag: object) -> str:
    """`{ns}instance` -> `instance`; comments and processing instructions -> ''."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def namespace(tag: object) -> str:
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].split("}", 1)[0]
    return ""


def parse_int(value: object, *, what: str, origin: str, low: int | None = None, high: int | None = None) -> int:
    """An integer from configuration text, or a TargetError that says where."""
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,19}", text):
        raise TargetError(f"{origin}: {what} must be a number, not {text!r}")
    number = int(text)
    if (low is not None and number < low) or (high is not None and number > high):
        raise TargetError(f"{origin}: {what} {number} is out of range {low}..{high}")
    return number


# ---------------------------------------------------------------- sources
class Source:
    """One place targets come from. Subclasses read the host; the base does the bookkeeping.

    `names()` must be cheap (no per-guest work) and return [] when the tool or directory is absent;
    `load(name)` reads one guest; `lookup(query, prefixed=)` answers query forms that are not names (a PID, a
    domain id, a netns path) or returns None; `targets()` loads every guest for UUID/MAC/device
    searches, skipping (and remembering) the unreadable ones. Missing privileges surface as
    PrivilegeError; a malformed configuration as TargetError.
    """

    kind: str = ""

    def __init__(self) -> None:
        self.problems: list[TracerProblem] = []

    def names(self) -> list[str]:
        return []

    def load(self, name: str) -> Target:
        raise TargetError(f"no {self.kind} target named {name!r}")

    def lookup(self, query: str, *, prefixed: bool = False) -> Target | None:
        """Answer a query that is not a name (PID, domain id, path); `prefixed` when the user wrote
        this source's kind before it (`xen:5`), so bare numbers may be taken as ids."""
        return None

    def targets(self) -> Iterator[Target]:
        for name in self.safe_names():
            try:
                yield self.load(name)
            except (TargetError, PrivilegeError) as exc:
                self.problems.append(TracerProblem(self.kind, name, exc))

    def safe_names(self) -> list[str]:
        """`names()`, with a failure remembered instead of raised (other sources may still answer)."""
        try:
            return list(dict.fromkeys(self.names()))
        except (TargetError, PrivilegeError) as exc:
            self.problems.append(TracerProblem(self.kind, None, exc))
            return []


@dataclass(frozen=True, slots=True)
class TracerProblem:
    """A source that could not read something while searching: reported only if nothing matched."""

    kind: str
    name: str | None
    error: Exception


class StaticSource(Source):
    """Targets that are already parsed: recorded samples in tests, a bundle's guest on replay."""

    def __init__(self, targets: Iterable[Target], kind: str | None = None) -> None:
        super().__init__()
        self._targets = {t.name: t for t in targets}
        self.kind = kind or next((t.kind for t in self._targets.values()), "static")

    def names(self) -> list[str]:
        return list(self._targets)

    def load(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            raise TargetError(f"no {self.kind} target named {name!r}") from None
