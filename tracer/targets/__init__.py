"""Target lookup: which guest does `tracepath-l2 TARGET` mean, and what are its NICs?

Theory of operation
-------------------
Every place guests come from is a *source* (`libvirt`, `lxc`, `lxd`, `netns`, `xen`). A source's
`names()` is cheap (a directory listing, `virsh list --name`), `load(name)` reads one guest's
configuration and turns it into a `Target` with its `Nic`s, and the parsing itself is pure (text in,
Target out) so recorded samples test it without root. A source whose tool or directory is absent
simply has no names; one that is present but unreadable reports PrivilegeError.

`find_target` tries the query against all sources at once, most specific meaning first:

1. an exact name (`instance-00000347`, `web1`, a netns name);
2. a form only one source understands: `pid:1234` or a bare number that is a live PID with its own
   network namespace, a namespace path, `xen:5` (domain id);
3. a UUID (libvirt domain UUID = nova instance UUID, neutron port UUID, LXD `volatile.uuid`) or a guest
   MAC: every guest is loaded and compared;
4. a unique name prefix (`instance-000003`), or the same trailing number (`instance-0347` finds
   `instance-00000347`: nova names are `instance-%08x`; a bare `347` finds any name ending in it);
   a prefix of one name and the number of another is an ambiguity;
5. a host device (`tap0b5f208b-76`, `vif5.0`, `web1_eth0`), a nova display name, a UUID prefix.

Several matches at the first step that has any is an ambiguity (TargetError listing them; a kind
prefix such as `lxc:NAME` narrows the search to one source); none at all is a TargetError that
suggests the closest names (difflib), or a PrivilegeError when a source could not be read. All
TargetErrors exit with code 2, PrivilegeError with 4 (tracer.errors).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

from tracer.errors import PrivilegeError, TargetError
from tracer.targets.base import (
    KINDS,
    Nic,
    Source,
    StaticSource,
    Target,
    is_uuid,
    netns_path,
    normalize_mac,
    select_nic,
    uuid_key,
)

__all__ = [
    "KINDS", "Nic", "Source", "StaticSource", "Target", "default_sources", "find_target", "list_names",
    "netns_path", "select_nic", "split_query",
]

_HEX_SUFFIX = re.compile(r"^(?P<stem>.*?[-_.])(?P<num>[0-9a-fA-F]+)$")
_DEC_SUFFIX = re.compile(r"^(?P<stem>.*?\D)?(?P<num>\d+)$")
_UUID_PREFIX = re.compile(r"^[0-9a-fA-F-]{6,35}$")
MAX_LISTED = 10


def default_sources(*, lxcpath: Sequence[str] | None = None) -> list[Source]:
    """One source per kind, reading this host. `lxcpath` adds LXC container directories."""
    from tracer.targets.libvirt import LibvirtSource
    from tracer.targets.lxc import LxcSource
    from tracer.targets.lxd import LxdSource
    from tracer.targets.netns import NetnsSource
    from tracer.targets.xen import XenSource

    return [LibvirtSource(), LxcSource(extra=list(lxcpath or ())), LxdSource(), NetnsSource(), XenSource()]


def split_query(query: str) -> tuple[str | None, str]:
    """`lxc:web1` -> ('lxc', 'web1'); `pid:42` -> ('netns', 'pid:42'); anything else -> (None, query)."""
    text = query.strip()
    head, sep, rest = text.partition(":")
    if sep and rest:
        if head in KINDS:
            return head, rest.strip()
        if head == "pid":
            return "netns", text
    return None, text


def list_names(*, sources: Sequence[Source] | None = None) -> dict[str, list[str]]:
    """kind -> the names its source lists (cheap: nothing is loaded)."""
    out: dict[str, list[str]] = {}
    for src in sources if sources is not None else default_sources():
        out.setdefault(src.kind, []).extend(src.safe_names())
    return out


def find_target(query: str, *, sources: Sequence[Source] | None = None) -> Target:
    """The one target `query` means (see the module docstring for the order of meanings).

    The returned Target's details carry `matched_by` (name, pid, uuid, mac, prefix, digits,
    host_dev, nova_name, uuid_prefix) and the original `query`.
    """
    kind, q = split_query(query)
    if not q:
        raise TargetError("no target given: name a VM, container, namespace, PID or guest MAC")
    srcs = list(sources) if sources is not None else default_sources()
    if kind:
        srcs = [s for s in srcs if s.kind == kind]
        if not srcs:
            raise TargetError(f"no {kind} source to search for {q!r}")
    search = _Search(q, srcs, prefixed=kind is not None)
    return search.run()


class _Search:
    def __init__(self, query: str, sources: list[Source], *, prefixed: bool) -> None:
        self.q = query
        self.sources = sources
        self.prefixed = prefixed
        self.names = [(s, n) for s in sources for n in s.safe_names()]
        self._loaded: list[Target] | None = None

    def run(self) -> Target:
        q = self.q
        exact = [(s, n) for s, n in self.names if n == q]
        if exact:
            return self.one(exact, "name")
        looked = [t for s in self.sources if (t := s.lookup(q, prefixed=self.prefixed)) is not None]
        if looked:
            digits = self.digit_matches() if q.isdigit() else []
            if digits:
                raise self.ambiguous([t.label for t in looked] + [f"{s.kind}:{n}" for s, n in digits],
                                     hint=f"write pid:{q} for the process, or the full name")
            return self.pick(looked, "pid" if looked[0].kind == "netns" else "id")
        mac = normalize_mac(q)
        if mac is not None:
            return self.pick([t for t in self.loaded() if any(n.mac == mac for n in t.nics)], "mac", must=True)
        if is_uuid(q):
            key = uuid_key(q)
            return self.pick([t for t in self.loaded() if key in _uuids(t)], "uuid", must=True)
        prefix = [(s, n) for s, n in self.names if n.startswith(q)]
        if not prefix:
            prefix = [(s, n) for s, n in self.names if n.lower().startswith(q.lower())]
        digits = self.digit_matches()
        if prefix and digits:
            both = list(dict.fromkeys(prefix + digits))
            return self.one(both, "prefix" if both == prefix else "digits")
        if prefix:
            return self.one(prefix, "prefix")
        if digits:
            return self.one(digits, "digits")
        for how, test in self.late_tests():
            found = [t for t in self.loaded() if test(t)]
            if found:
                return self.pick(found, how)
        raise self.unknown()

    # -- matching helpers
    def digit_matches(self) -> list[tuple[Source, str]]:
        wanted = _split_number(self.q)
        if wanted is None:
            return []
        stem, num = wanted
        out = []
        for src, name in self.names:
            got = _split_number(name)
            if got is None or name == self.q:
                continue
            if (not stem or got[0] == stem) and got[1].lower().lstrip("0") == num.lower().lstrip("0"):
                out.append((src, name))
        return out

    def late_tests(self) -> list[tuple[str, Callable[[Target], bool]]]:
        q = self.q
        tests: list[tuple[str, Callable[[Target], bool]]] = [
            ("host_dev", lambda t: any(q in (n.host_dev, n.details.get("emu_dev")) for n in t.nics)),
            ("nova_name", lambda t: (t.details.get("nova") or {}).get("name") == q),
        ]
        if _UUID_PREFIX.match(q) and sum(c.isalnum() for c in q) >= 6:
            key = uuid_key(q)
            tests.append(("uuid_prefix", lambda t: any(u.startswith(key) for u in _uuids(t))))
        return tests

    def loaded(self) -> list[Target]:
        if self._loaded is None:
            self._loaded = [t for s in self.sources for t in s.targets()]
        return self._loaded

    # -- results
    def one(self, pairs: list[tuple[Source, str]], how: str) -> Target:
        if len(pairs) > 1:
            raise self.ambiguous([f"{s.kind}:{n}" for s, n in pairs])
        src, name = pairs[0]
        return src.load(name).with_details(matched_by=how, query=self.q)

    def pick(self, targets: list[Target], how: str, *, must: bool = False) -> Target:
        unique = list({t.label: t for t in targets}.values())
        if len(unique) > 1:
            raise self.ambiguous([t.label for t in unique])
        if not unique:
            if must:
                raise self.unknown(what={"mac": "a NIC with MAC", "uuid": "a UUID"}.get(how))
            raise self.unknown()
        return unique[0].with_details(matched_by=how, query=self.q)

    def ambiguous(self, labels: list[str], *, hint: str | None = None) -> TargetError:
        shown = sorted(dict.fromkeys(labels))
        more = f" and {len(shown) - MAX_LISTED} more" if len(shown) > MAX_LISTED else ""
        hint = hint or "give the full name, or prefix it with its kind (e.g. lxc:NAME)"
        return TargetError(f"{self.q!r} is ambiguous: it matches {', '.join(shown[:MAX_LISTED])}{more}; {hint}")

    def unknown(self, what: str | None = None) -> TargetError | PrivilegeError:
        names = sorted({n for _, n in self.names})
        close = difflib.get_close_matches(self.q, names, n=3, cutoff=0.6)
        if not close:
            close = [n for _, n in self.digit_like()][:3]
        searched = ", ".join(f"{s.kind} ({len([1 for src, _ in self.names if src is s])})" for s in self.sources)
        subject = f"{what} {self.q}" if what else repr(self.q)
        message = f"no VM, container or namespace matches {subject}"
        if close:
            message += f"; did you mean {', '.join(close)}?"
        message += f" (searched {searched or 'nothing'})"
        problems = [p for s in self.sources for p in s.problems]
        denied = [p for p in problems if isinstance(p.error, PrivilegeError)]
        if denied:
            return PrivilegeError(f"{message}; could not read: " + "; ".join(str(p.error) for p in denied[:3]))
        if problems:
            message += "; skipped unreadable: " + "; ".join(
                f"{p.kind}:{p.name or '*'}: {p.error}" for p in problems[:3])
        return TargetError(message)

    def digit_like(self) -> list[tuple[Source, str]]:
        """Names whose trailing number resembles the query's, for suggestions."""
        wanted = _split_number(self.q)
        if wanted is None:
            return []
        return [(s, n) for s, n in self.names
                if (got := _split_number(n)) is not None and got[0] == wanted[0]
                and difflib.SequenceMatcher(None, got[1], wanted[1]).ratio() >= 0.6]


def _split_number(name: str) -> tuple[str, str] | None:
    """('instance-', '00000347') for instance-00000347; ('', '347') for 347; None without a number."""
    m = _HEX_SUFFIX.match(name) or _DEC_SUFFIX.match(name)
    if not m:
        return None
    return m.group("stem") or "", m.group("num")


def _uuids(target: Target) -> set[str]:
    keys = set()
    for key in ("uuid", "nova_uuid"):
        value = target.details.get(key)
        if isinstance(value, str) and value:
            keys.add(uuid_key(value))
    for port in (target.details.get("nova") or {}).get("ports", []) or []:
        if isinstance(port, dict) and isinstance(port.get("uuid"), str):
            keys.add(uuid_key(port["uuid"]))
    for nic in target.nics:
        for key in ("neutron_port", "portid", "interfaceid"):
            value = nic.details.get(key)
            if isinstance(value, str) and value:
                keys.add(uuid_key(value))
    return keys
