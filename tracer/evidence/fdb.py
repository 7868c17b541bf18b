"""The bridge forwarding database (FDB): which port the bridge believes a MAC lives behind.

A Linux bridge learns the source MAC of every frame on the port it arrived on and forwards unicast
frames for that MAC only there. An entry for the guest's MAC on any port but the guest's own means
replies to the guest go the wrong way (or, when it is the port they arrived on, are dropped in
br_handle_frame_finish). How the entry got there is in its flags:

- no state word: learned from traffic, ages out (`age` = seconds since it was last refreshed);
- `static` (NUD_NOARP): added by someone, never ages, but still *moves* when the MAC shows up
  on another port;
- `sticky` (NTF_STICKY, kernel 4.21+): a static entry that does not move either;
- `permanent` (NUD_PERMANENT): one of the bridge's (or its ports') own addresses ("local");
- `master`: an entry of the bridge (NDA_MASTER is set), as opposed to `self`, an entry in the
  port device's own address table;
- `extern_learn` (NTF_EXT_LEARNED): added by a control plane (EVPN, switchdev), not by traffic.

The live reader asks the kernel over netlink (an AF_BRIDGE RTM_GETNEIGH dump with NDA_MASTER, so
the kernel returns only this bridge's entries); the text parsers read what an operator saved from
`bridge fdb show` or the older `brctl showmacs`, and produce the same entries, so a replayed bundle
gives the same verdict as the live run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tracer.model import FdbEntry

# neighbour flags and states (include/uapi/linux/neighbour.h)
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10
NTF_OFFLOADED = 0x20
NTF_STICKY = 0x40
NTF_ROUTER = 0x80
NTF_EXT_LOCKED = 0x02  # in NDA_FLAGS_EXT: a MAB "locked" entry (kernel 6.2+)
NUD_STALE = 0x04
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
USER_HZ = 100
"""NDA_CACHEINFO counts clock ticks (jiffies_to_clock_t), i.e. 1/100 s."""

FLAG_ORDER = ("self", "router", "extern_learn", "offload", "sticky", "locked", "master",
              "permanent", "static", "stale")
"""The flag words, in the order `bridge fdb show` prints them; both readers sort by it."""
_STATE_WORDS = {"permanent", "static", "stale"}

_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")


def normalize_mac(mac: str) -> str:
    return mac.strip().lower().replace("-", ":")


def _order(flags: Iterable[str]) -> tuple[str, ...]:
    rank = {f: i for i, f in enumerate(FLAG_ORDER)}
    return tuple(sorted(dict.fromkeys(flags), key=lambda f: (rank.get(f, len(rank)), f)))


def flag_words(state: int, flags: int, ext_flags: int = 0, has_master: bool = False) -> tuple[str, ...]:
    """ndm_state/ndm_flags as `bridge fdb show` words (iproute2 bridge/fdb.c)."""
    words = []
    if flags & NTF_SELF:
        words.append("self")
    if flags & NTF_ROUTER:
        words.append("router")
    if flags & NTF_EXT_LEARNED:
        words.append("extern_learn")
    if flags & NTF_OFFLOADED:
        words.append("offload")
    if flags & NTF_STICKY:
        words.append("sticky")
    if ext_flags & NTF_EXT_LOCKED:
        words.append("locked")
    if has_master or flags & NTF_MASTER:
        words.append("master")
    if state & NUD_PERMANENT:
        words.append("permanent")
    elif state & NUD_NOARP:
        words.append("static")
    elif state & NUD_STALE:
        words.append("stale")
    return _order(words)


# ---------------------------------------------------------------- live: netlink
class FdbSampler:
    """One netlink socket reused across polls (a new socket per 200 ms poll would cost more).

    `sample(bridge, macs)` returns the bridge's entries for those MACs (all entries when `macs` is
    empty); problems go to `notes`, once each, and give an empty list.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.notes: list[str] = []
        self._ipr: Any = None
        self._names: dict[int, str] = {}
        self._failed = False

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _open(self) -> Any:
        if self._ipr is None and not self._failed:
            try:
                from pyroute2 import IPRoute

                # flags=0: pyroute2 would otherwise *create* a namespace that does not exist
                self._ipr = IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()
            except Exception as exc:  # noqa: BLE001 - pyroute2 missing, netns gone, no privileges
                self._failed = True
                where = f" in netns {self.netns}" if self.netns else ""
                self._note(f"bridge FDB not read{where}: netlink unavailable ({exc})")
        return self._ipr

    def _name(self, index: int) -> str:
        name = self._names.get(index)
        if name is None:
            try:
                links = self._ipr.get_links(index)
                name = links[0].get_attr("IFLA_IFNAME") if links else None
            except Exception:  # noqa: BLE001 - the port vanished between dump and lookup
                name = None
            name = name or f"if{index}"
            self._names[index] = name
        return name

    def sample(self, bridge: str, macs: Iterable[str] = ()) -> list[FdbEntry]:
        ipr = self._open()
        if ipr is None:
            return []
        wanted = {normalize_mac(m) for m in macs if m}
        try:
            found = ipr.link_lookup(ifname=bridge)
            if not found:
                self._note(f"bridge FDB not read: no bridge named {bridge}"
                           + (f" in netns {self.netns}" if self.netns else ""))
                return []
            br_index = found[0]
            # NDA_MASTER in the request: the kernel (strict dump checking) returns only this
            # bridge's entries; the loop below filters again for kernels that ignore it.
            messages = list(ipr.fdb("dump", master=br_index))
        except Exception as exc:  # noqa: BLE001 - netlink errors become a note
            self._note(f"bridge FDB of {bridge} not read: {exc}")
            return []
        now = time.time()
        self._names = {br_index: bridge}
        out = []
        for msg in messages:
            try:
                entry = self._entry(msg, bridge, br_index, wanted, now)
            except Exception:  # noqa: BLE001 - one odd message must not lose the others
                continue
            if entry is not None:
                out.append(entry)
        return out

    def _entry(self, msg: Any, bridge: str, br_index: int, wanted: set[str], now: float) -> FdbEntry | None:
        master = msg.get_attr("NDA_MASTER")
        if master != br_index:
            return None
        mac = msg.get_attr("NDA_LLADDR")
        if not mac:
            return None
        mac = normalize_mac(mac)
        if wanted and mac not in wanted:
            return None
        cache = msg.get_attr("NDA_CACHEINFO")
        age = cache["ndm_updated"] / USER_HZ if cache else None
        return FdbEntry(
            mac=mac,
            port=self._name(msg["ifindex"]),
            bridge=bridge,
            flags=flag_words(msg["state"], msg["flags"], msg.get_attr("NDA_FLAGS_EXT") or 0, True),
            vlan=msg.get_attr("NDA_VLAN") or None,
            age=age,
            time=now,
        )

    def close(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception:  # noqa: BLE001 - closing a dead socket is not news
                pass
            self._ipr = None

    def __enter__(self) -> FdbSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_fdb(bridge: str, macs: Iterable[str] = (), netns: str | None = None,
             notes: list[str] | None = None) -> list[FdbEntry]:
    """The bridge's FDB entries for `macs` (every entry when empty), read over netlink now.

    Only the bridge's own entries (`master`) are returned: `self` entries in a port device's
    address table say nothing about forwarding. Problems are appended to `notes` (when given)
    and give an empty list; this never raises.
    """
    with FdbSampler(netns) as sampler:
        entries = sampler.sample(bridge, macs)
        if notes is not None:
            notes.extend(n for n in sampler.notes if n not in notes)
        return entries


# ---------------------------------------------------------------- replay: text
_KEYED = {"dev", "vlan", "dst", "port", "vni", "src_vni", "via", "nhid", "master", "used", "src"}


def parse_bridge_fdb_show(text: str, bridge: str | None = None,
                          macs: Iterable[str] = ()) -> list[FdbEntry]:
    """Entries from saved `bridge fdb show` (or `bridge -s fdb show`) text.

    Lines look like `02:47:00:7f:22:02 dev e1-up vlan 10 used 4/4 sticky master e1-br static`.
    With `bridge`, only that bridge's entries (`master BRIDGE`) are kept, as the live reader does;
    without it, entries without a master are kept with their device as the table they belong to.
    `used A/B` (from -s) gives the age (B, seconds since last updated). Lines that are not FDB
    entries are skipped; this never raises.
    """
    wanted = {normalize_mac(m) for m in macs if m}
    out = []
    for line in text.splitlines():
        entry = _parse_fdb_line(line)
        if entry is None:
            continue
        if bridge is not None and ("master" not in entry.flags or entry.bridge != bridge):
            continue
        if wanted and entry.mac not in wanted:
            continue
        out.append(entry)
    return out


def _parse_fdb_line(line: str) -> FdbEntry | None:
    tokens = line.split()
    if not tokens or not _MAC.match(tokens[0]):
        return None
    values: dict[str, str] = {}
    words: list[str] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in _KEYED and i + 1 < len(tokens):
            values[tok] = tokens[i + 1]
            i += 2
            continue
        words.append(tok)
        i += 1
    dev = values.get("dev")
    if not dev:
        return None
    flags = [w for w in words if w in FLAG_ORDER]
    if "master" in values:
        flags.append("master")
    age = None
    if "used" in values:
        _, _, updated = values["used"].partition("/")
        age = _number(updated)
    vlan = values.get("vlan")
    return FdbEntry(
        mac=normalize_mac(tokens[0]),
        port=dev,
        bridge=values.get("master", dev),
        flags=_order(flags),
        vlan=int(vlan) if vlan and vlan.isdigit() else None,
        age=age,
    )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_SHOWMACS = re.compile(r"^\s*(?P<no>\d+)\s+(?P<mac>[0-9a-fA-F:]{17})\s+(?P<local>yes|no)\s+(?P<age>[\d.]+)")


def parse_brctl_showmacs(text: str, ports: Mapping[int, str], bridge: str = "") -> list[FdbEntry]:
    """Entries from `brctl showmacs BRIDGE` (bridge-utils), as the KVM seed printed them.

    brctl numbers ports (`port no`, the bridge port number, as in `/sys/class/net/PORT/brport/
    port_no`) instead of naming them, so `ports` maps numbers to names; an unknown number stays
    `port N`. brctl shows no static/sticky flags: local entries become `master permanent`, the
    others plain learned `master` entries with their ageing timer as age.
    """
    out = []
    for line in text.splitlines():
        m = _SHOWMACS.match(line)
        if not m:
            continue
        no = int(m.group("no"))
        local = m.group("local") == "yes"
        out.append(FdbEntry(
            mac=normalize_mac(m.group("mac")),
            port=ports.get(no, f"port {no}"),
            bridge=bridge,
            flags=("master", "permanent") if local else ("master",),
            age=_number(m.group("age")),
        ))
    return out
