"""ebtables and iptables rules on the bridge path.

- ebtables filters bridged frames at L2 (tables filter, nat, broute); libvirt's nwfilter and
  OpenStack's linuxbridge agent (neutronARP-tapXXX chains) put their anti-spoofing rules here.
  Every rule is on the path of bridged traffic, so all are read, plus built-in chains whose
  policy is DROP.
- iptables sees bridged IPv4 only when br_netfilter is loaded and
  /proc/sys/net/bridge/bridge-nf-call-iptables is 1; then `-m physdev --physdev-in/--physdev-out`
  match the bridge ports, `-i/-o` the bridge itself, and a FORWARD policy of DROP (Docker sets
  one) silently drops every bridged IPv4 frame on every bridge, DHCP included. Rules naming a hop
  with -i/-o are read regardless: they also filter frames addressed to the host (a dnsmasq
  listening on the bridge).

Both tools come in two backends. With nf_tables (Debian 12's default), `-save -c` only lists
tables that exist and creates nothing. With the legacy backend, a listing may load kernel
modules, so tables are read only when the kernel already has them (/proc/net/ip_tables_names,
or the ebtables module loaded).

Rule text is the `-save` form without counters (`-A FORWARD -p udp -m physdev --physdev-in vnet0
-j DROP`), stable across the window so counters can be compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tracer.model import FilterRule

_SAVE_COUNTERS = re.compile(r"^\[(?P<p>\d+):(?P<b>\d+)\]\s+")
_TRAILING_C = re.compile(r"\s+-c\s+(?P<p>\d+)\s+(?P<b>\d+)\s*$")
_POLICY = re.compile(r"^:(?P<chain>\S+)\s+(?P<policy>[A-Z]+)(?:\s+\[(?P<p>\d+):(?P<b>\d+)\])?")
_LIST_TABLE = re.compile(r"^Bridge table:\s*(?P<table>\S+)")
_LIST_CHAIN = re.compile(r"^Bridge chain:\s*(?P<chain>[^,]+),\s*entries:\s*\d+,\s*policy:\s*(?P<policy>\w+)")
_LIST_RULE = re.compile(r"^(?P<no>\d+)\.?\s+(?P<rule>.*?)(?:\s*,\s*pcnt\s*=\s*(?P<p>\d+)\s*--\s*bcnt\s*=\s*\d+)?\s*$")
_IFACE_OPTS = ("--physdev-in", "--physdev-out", "-i", "-o", "--in-interface", "--out-interface",
               "--logical-in", "--logical-out", "--in-if", "--out-if")
BUILTIN_EB_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING", "BROUTING"}


def interfaces(rule: str) -> list[str]:
    """Interface names a rule matches on (physdev first, then -i/-o), '!' negations included."""
    tokens = rule.split()
    found: list[tuple[int, str]] = []
    for i, tok in enumerate(tokens[:-1]):
        if tok in _IFACE_OPTS:
            value = tokens[i + 1]
            if value == "!" and i + 2 < len(tokens):
                value = tokens[i + 2]
            found.append((0 if tok.startswith("--physdev") else 1, value.rstrip("+")))
    return [name for _, name in sorted(found, key=lambda f: f[0])]


def _hop(names: list[str], hops: set[str]) -> str | None:
    return next((n for n in names if n in hops), names[0] if names else None)


# ---------------------------------------------------------------- iptables
def parse_iptables_save(text: str, hops: Iterable[str] = (), *, physdev: bool = True,
                        tables: Iterable[str] | None = None) -> list[FilterRule]:
    """Physdev rules (when `physdev`, i.e. br_netfilter hands bridged frames to iptables), rules
    naming a hop with -i/-o, every rule of the chains those jump to (with the hop of the jump), and a
    FORWARD policy of DROP (when `physdev`), from `iptables-save -c`.

    Following the jumps is what makes managed firewalls readable: libvirt's nwfilter and neutron's
    iptables firewall match the tap once (`-m physdev --physdev-in vnet3 -g FI-vnet3`) and put the
    DROPs in a per-port chain that never names the tap again.
    """
    hopset = set(hops)
    only = set(tables) if tables is not None else None
    table = ""
    out: list[FilterRule] = []
    chains: dict[tuple[str, str], list[tuple[int | None, str]]] = {}
    entries: list[tuple[FilterRule, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not table or (only is not None and table not in only):
            continue
        pol = _POLICY.match(line)
        if pol:
            if physdev and pol.group("chain") == "FORWARD" and pol.group("policy") == "DROP":
                out.append(FilterRule(source="iptables-physdev", family="ip", table=table, chain="FORWARD",
                                      rule="-P FORWARD DROP",
                                      packets=int(pol.group("p")) if pol.group("p") else None))
            continue
        packets, rule = _strip_counters(line)
        if not rule.startswith("-A "):
            continue
        words = rule.split()
        chain = words[1] if len(words) > 1 else ""
        chains.setdefault((table, chain), []).append((packets, rule))
        names = interfaces(rule)
        is_physdev = "-m physdev" in rule
        named = [n for n in names if n in hopset]
        if not ((physdev and is_physdev) or named):
            continue
        found = FilterRule(source="iptables-physdev" if is_physdev else "iptables", family="ip", table=table,
                           chain=chain, rule=rule, packets=packets, hop=_hop(names, hopset))
        out.append(found)
        entries.append((found, table))
    seen: set[tuple[str, str]] = set()
    for entry, tbl in entries:
        out += _jumped(entry, tbl, chains, seen)
    return out


def _jumped(entry: FilterRule, table: str, chains: dict[tuple[str, str], list[tuple[int | None, str]]],
            seen: set[tuple[str, str]]) -> list[FilterRule]:
    """The rules of the user chain `entry` jumps (-j) or goes (-g) to, recursively, each once."""
    words = entry.rule.split()
    target = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")), None)
    if target is None or (table, target) not in chains or (table, target) in seen:
        return []
    seen.add((table, target))
    out = []
    for packets, rule in chains[(table, target)]:
        found = FilterRule(source=entry.source, family="ip", table=table, chain=target, rule=rule,
                           packets=packets, hop=entry.hop)
        out.append(found)
        out += _jumped(found, table, chains, seen)
    return out


def _strip_counters(line: str) -> tuple[int | None, str]:
    m = _SAVE_COUNTERS.match(line)
    if m:
        return int(m.group("p")), line[m.end():].strip()
    t = _TRAILING_C.search(line)
    if t:
        return int(t.group("p")), line[:t.start()].strip()
    return None, line


# ---------------------------------------------------------------- ebtables
def parse_ebtables_save(text: str, hops: Iterable[str] = ()) -> list[FilterRule]:
    """Every rule (and DROP policy of a built-in chain) from `ebtables-save -c`."""
    hopset = set(hops)
    table = ""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not table:
            continue
        pol = _POLICY.match(line)
        if pol:
            if pol.group("policy") == "DROP" and pol.group("chain") in BUILTIN_EB_CHAINS:
                out.append(FilterRule(source="ebtables", family="bridge", table=table, chain=pol.group("chain"),
                                      rule=f"-P {pol.group('chain')} DROP"))
            continue
        packets, rule = _strip_counters(line)
        if not rule.startswith("-A "):
            continue
        chain = rule.split()[1] if len(rule.split()) > 1 else ""
        out.append(FilterRule(source="ebtables", family="bridge", table=table, chain=chain, rule=rule,
                              packets=packets, hop=_hop(interfaces(rule), hopset)))
    return out


def parse_ebtables_list(text: str, hops: Iterable[str] = ()) -> list[FilterRule]:
    """Every rule from `ebtables [-t T] -L --Lc --Ln` (both backends print this form).

    Rules are given the `-save` form (`-A CHAIN ...`) so both parsers agree on the text.
    """
    hopset = set(hops)
    table = chain = ""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        t = _LIST_TABLE.match(line)
        if t:
            table, chain = t.group("table"), ""
            continue
        c = _LIST_CHAIN.match(line)
        if c:
            chain = c.group("chain").strip()
            if c.group("policy") == "DROP" and chain in BUILTIN_EB_CHAINS and table:
                out.append(FilterRule(source="ebtables", family="bridge", table=table, chain=chain,
                                      rule=f"-P {chain} DROP"))
            continue
        if not (table and chain):
            continue
        r = _LIST_RULE.match(line)
        if not r or not r.group("rule"):
            continue
        rule = f"-A {chain} {r.group('rule').strip()}"
        out.append(FilterRule(source="ebtables", family="bridge", table=table, chain=chain, rule=rule,
                              packets=int(r.group("p")) if r.group("p") else None,
                              hop=_hop(interfaces(rule), hopset)))
    return out
