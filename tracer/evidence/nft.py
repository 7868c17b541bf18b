"""nftables rules that can drop a guest's L2 traffic, with their counters.

Which families matter, and why:

- `bridge`: its hooks (prerouting/input/forward/output/postrouting) see every frame the bridge
  handles, so every rule there is on the path of every bridged guest. Read in full.
- `netdev`: ingress/egress hooks on one device (`device "vnet0"`), before the bridge sees the
  frame. Read in full; the chain's device is the hop.
- `ip`/`inet`: see bridged IPv4 only when br_netfilter passes it to them
  (bridge-nf-call-iptables = 1), and then with the bridge as `iifname` and the port as
  `ibrport`-style physdev data; they also see frames addressed to the host itself (a dnsmasq on
  the bridge). Only rules that name a hop or match bridge ports (`meta ibrname/obrname`,
  `xt match physdev`) are kept, and forward base chains with policy drop while br_netfilter is on.
- `arp`: ARP to the host, and bridged ARP with bridge-nf-call-arptables = 1; kept likewise.

Rules come from `nft -j list ruleset` (structure and counters) and their human text from
`nft -a list ruleset`, matched by handle. Counter values are cut out of the text
(`counter packets 3 bytes 984` becomes `counter`), so the same rule has the same text at the start
and the end of the window and the analysis can compare its counters. Tables that iptables-nft or
ebtables-nft manage (nft warns "table ip filter is managed by iptables-nft") are left to those
tools' readers when the tools are installed: nft cannot print their `xt` matches in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tracer.model import FilterRule

_MANAGED = re.compile(r"table (?P<family>\w+) (?P<table>\S+) is managed by (?P<tool>[\w-]+)")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_QUOTA_USED = re.compile(r"\s+used \d+ \w+")
_HANDLE = re.compile(r"\s*# handle (?P<handle>\d+)\s*$")
_TABLE = re.compile(r"^table (?P<family>\w+) (?P<name>\S+) \{")
_CHAIN = re.compile(r"^\s*chain (?P<name>\S+) \{")
_DEVICE = re.compile(r'\bdevices? (?:= \{ )?"?(?P<dev>[^";, }]+)')
_INTERFACE_KEYS = {"iifname", "oifname", "iif", "oif", "ibrname", "obrname", "ibriport", "obriport"}
_BRIDGE_KEYS = {"ibrname", "obrname", "ibriport", "obriport"}
FULL_FAMILIES = ("bridge", "netdev")


@dataclass(slots=True)
class _Listing:
    """What the text listing tells beyond the JSON: rule text by handle, chain devices."""

    rules: dict[tuple[str, str, str, int], str] = field(default_factory=dict)
    devices: dict[tuple[str, str, str], str] = field(default_factory=dict)


def managed_tables(stderr: str) -> dict[tuple[str, str], str]:
    """(family, table) -> tool, from nft's 'managed by iptables-nft' warnings."""
    return {(m.group("family"), m.group("table")): m.group("tool") for m in _MANAGED.finditer(stderr)}


def normalize_rule_text(text: str) -> str:
    """A rule's text without its changing parts (counter values, quota use, handle)."""
    text = _HANDLE.sub("", text)
    text = _COUNTER.sub("counter", text)
    text = _QUOTA_USED.sub("", text)
    return " ".join(text.split())


def parse_listing(text: str) -> _Listing:
    """Index `nft -a list ruleset` output by (family, table, chain, handle)."""
    out = _Listing()
    family = table = chain = None
    for line in text.splitlines():
        t = _TABLE.match(line)
        if t:
            family, table, chain = t.group("family"), t.group("name"), None
            continue
        c = _CHAIN.match(line)
        if c and family:
            chain = c.group("name")
            continue
        if not (family and table and chain):
            continue
        stripped = line.strip()
        if stripped.startswith("type ") and " hook " in stripped:
            d = _DEVICE.search(stripped)
            if d:
                out.devices[(family, table, chain)] = d.group("dev")
            continue
        h = _HANDLE.search(stripped)
        if h:
            out.rules[(family, table, chain, int(h.group("handle")))] = normalize_rule_text(stripped)
    return out


def parse_nft(
    ruleset_json: str,
    listing_text: str = "",
    hops: Iterable[str] = (),
    *,
    skip: Iterable[tuple[str, str]] = (),
    br_netfilter_ip: bool = False,
    br_netfilter_arp: bool = False,
) -> list[FilterRule]:
    """FilterRules from `nft -j list ruleset` (+ `nft -a list ruleset` for text). Never raises.

    `skip` lists (family, table) pairs another reader covers. Malformed JSON gives no rules.
    """
    try:
        items = json.loads(ruleset_json).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    if not isinstance(items, list):
        return []
    hopset = set(hops)
    skipped = set(skip)
    listing = parse_listing(listing_text)
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    out: list[FilterRule] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            if "chain" in item:
                ch = item["chain"]
                chains[(ch["family"], ch["table"], ch["name"])] = ch
                rule = _policy_rule(ch, listing, hopset, br_netfilter_ip, br_netfilter_arp, skipped)
            elif "rule" in item:
                rule = _rule(item["rule"], chains, listing, hopset, br_netfilter_ip, br_netfilter_arp, skipped)
            else:
                continue
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if rule is not None:
            out.append(rule)
    return out


def _policy_rule(ch: dict[str, Any], listing: _Listing, hops: set[str], br_ip: bool, br_arp: bool,
                 skipped: set[tuple[str, str]]) -> FilterRule | None:
    """A base chain whose policy drops is a rule too: everything no rule accepted dies there."""
    family, table, name = ch["family"], ch["table"], ch["name"]
    if ch.get("policy") != "drop" or "hook" not in ch or (family, table) in skipped:
        return None
    dev = ch.get("dev") or listing.devices.get((family, table, name))
    keep = (family in FULL_FAMILIES
            or (family in ("ip", "inet") and br_ip and ch.get("hook") == "forward")
            or (family == "arp" and br_arp))
    if not keep:
        return None
    return FilterRule(source="nft", family=family, table=table, chain=name, rule="policy drop",
                      hop=dev if isinstance(dev, str) else None)


def _rule(r: dict[str, Any], chains: dict[tuple[str, str, str], dict[str, Any]], listing: _Listing,
          hops: set[str], br_ip: bool, br_arp: bool, skipped: set[tuple[str, str]]) -> FilterRule | None:
    family, table, chain = r["family"], r["table"], r["chain"]
    if (family, table) in skipped:
        return None
    exprs = r.get("expr") or []
    names, bridge_match = _interfaces(exprs)
    named_hop = next((n for n in names if n in hops), None)
    if family in FULL_FAMILIES:
        keep = True
    elif family in ("ip", "inet"):
        keep = bool(named_hop) or bridge_match
    elif family == "arp":
        keep = bool(named_hop) or br_arp
    else:
        keep = False
    if not keep:
        return None
    dev = listing.devices.get((family, table, chain)) or chains.get((family, table, chain), {}).get("dev")
    device = dev if isinstance(dev, str) else None
    # the hop: an interface of the path the rule names, else the netdev chain's device, else any name
    hop = named_hop or device or (names[0] if names else None)
    handle = r.get("handle")
    text = listing.rules.get((family, table, chain, handle)) if isinstance(handle, int) else None
    if not text:
        text = render_exprs(exprs)
        if r.get("comment"):
            text += f' comment "{r["comment"]}"'
    return FilterRule(source="nft", family=family, table=table, chain=chain, rule=text,
                      packets=_packets(exprs), hop=hop)


def _interfaces(exprs: list[Any]) -> tuple[list[str], bool]:
    """Interface names the rule matches on, and whether it matches on bridge ports at all."""
    names: list[str] = []
    bridge = False
    for e in exprs:
        if not isinstance(e, dict):
            continue
        xt = e.get("xt")
        if isinstance(xt, dict) and xt.get("name") == "physdev":
            bridge = True
        match = e.get("match")
        if not isinstance(match, dict):
            continue
        left = match.get("left")
        key = left.get("meta", {}).get("key") if isinstance(left, dict) and isinstance(left.get("meta"), dict) else None
        if key not in _INTERFACE_KEYS:
            continue
        bridge = bridge or key in _BRIDGE_KEYS
        names.extend(_strings(match.get("right")))
    return names, bridge


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and "set" in value:
        return _strings(value["set"])
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _packets(exprs: list[Any]) -> int | None:
    for e in exprs:
        if isinstance(e, dict) and isinstance(e.get("counter"), dict):
            packets = e["counter"].get("packets")
            if isinstance(packets, int):
                return packets
    return None


def render_exprs(exprs: list[Any]) -> str:
    """A readable approximation of a rule from its JSON, for when the text listing is missing."""
    parts = []
    for e in exprs:
        if not isinstance(e, dict) or not e:
            continue
        key, val = next(iter(e.items()))
        if key == "match" and isinstance(val, dict):
            op = val.get("op", "==")
            parts.append(f"{_operand(val.get('left'))}{'' if op == '==' else ' ' + op} {_operand(val.get('right'))}")
        elif key == "counter":
            parts.append("counter")
        elif key == "xt" and isinstance(val, dict):
            parts.append(f"xt {val.get('type', 'match')} {val.get('name', '?')}")
        elif key in ("jump", "goto") and isinstance(val, dict):
            parts.append(f"{key} {val.get('target', '?')}")
        elif key in ("accept", "drop", "continue", "return", "reject", "log", "queue", "notrack"):
            parts.append(key)
        else:
            parts.append(key)
    return " ".join(parts)


def _operand(value: Any) -> str:
    if isinstance(value, dict):
        if isinstance(value.get("meta"), dict):
            return str(value["meta"].get("key", "meta"))
        if isinstance(value.get("payload"), dict):
            p = value["payload"]
            return f"{p.get('protocol', '')} {p.get('field', '')}".strip()
        if "set" in value:
            return "{ " + ", ".join(_operand(v) for v in value["set"]) + " }"
        if isinstance(value.get("prefix"), dict):
            return f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}"
        return next(iter(value), "?")
    if isinstance(value, str):
        return f'"{value}"' if not re.match(r"^[\w.:/-]+$", value) else value
    return str(value)
