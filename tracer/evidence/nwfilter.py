"""libvirt nwfilter: the anti-spoofing filters libvirt attaches to a guest's tap.

`<filterref filter='clean-traffic'/>` on a domain interface makes libvirt install ebtables and
iptables rules for that tap (chains libvirt-I-vnet0 / libvirt-O-vnet0): only the guest's own MAC
and IP may leave it (no-mac-spoofing, no-ip-spoofing, no-arp-spoofing, allow-dhcp...). A guest
whose MAC or IP parameter is stale, or a filter without allow-dhcp, loses its DHCP there. The
rules themselves show up in the ebtables reader with their counters; this reader names the filter
and its parameters, which is what an operator changes.

Two sources, both read-only: `virsh nwfilter-binding-list` (libvirt 4.5+, needs libvirtd), and the
live domain status XML in /run/libvirt/qemu/*.xml, which is readable even when the daemon is down.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from tracer.model import FilterRule

RUN_DIR = "/run/libvirt/qemu"


def parse_binding_list(text: str) -> list[tuple[str, str]]:
    """(port dev, filter) pairs from `virsh nwfilter-binding-list` output."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or set(line.strip()) <= {"-"} or (parts[0] == "Port" and parts[1] == "Dev"):
            continue
        out.append((parts[0], parts[1]))
    return out


def parse_domain_xml(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """(target dev, filter, parameters) for each interface with a filterref in a domain XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    out = []
    for iface in root.iter("interface"):
        ref = iface.find("filterref")
        target = iface.find("target")
        if ref is None or not ref.get("filter"):
            continue
        dev = target.get("dev") if target is not None else None
        params = {p.get("name", ""): p.get("value", "") for p in ref.findall("parameter")}
        out.append((dev or "", ref.get("filter", ""), params))
    return out


def rules_from(bindings: Iterable[tuple[str, str, dict[str, str]]], hops: Iterable[str] = ()) -> list[FilterRule]:
    """One FilterRule per (dev, filter) on a hop (every binding when no hops are given)."""
    hopset = set(hops)
    seen: set[tuple[str, str]] = set()
    out = []
    for dev, name, params in bindings:
        if (dev, name) in seen or (hopset and dev not in hopset):
            continue
        seen.add((dev, name))
        text = f"<filterref filter='{name}'/>"
        if params:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(params.items()))
        out.append(FilterRule(source="nwfilter", family="bridge", table=name, chain=dev or "?",
                              rule=text, hop=dev or None))
    return out


def domain_xml_bindings(run_dir: str = RUN_DIR) -> list[tuple[str, str, dict[str, str]]]:
    """filterref bindings of every running domain, from libvirt's status files."""
    out = []
    try:
        files = sorted(Path(run_dir).glob("*.xml"))
    except OSError:
        return []
    for f in files:
        try:
            out.extend(parse_domain_xml(f.read_text(errors="replace")))
        except OSError:
            continue
    return out
