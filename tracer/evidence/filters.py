"""Every packet filter that can stand between a guest and the wire, read (never changed).

Order of reading: nftables (bridge and netdev families in full, ip/inet/arp only where they touch
bridge ports or the path's interfaces), ebtables, iptables physdev rules (only meaningful when
br_netfilter hands bridged frames to iptables: /proc/sys/net/bridge/bridge-nf-call-iptables = 1),
libvirt nwfilter bindings. A table that iptables-nft/ebtables-nft manages appears once, from the
tool that wrote it. A missing tool or an unreadable source is a note, never an error.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tracer.evidence import nft as nftmod
from tracer.evidence import nwfilter, xtables
from tracer.evidence._util import read_text, run_tool
from tracer.model import FilterRule

BR_NF = "/proc/sys/net/bridge"


def br_netfilter(which: str) -> bool | None:
    """bridge-nf-call-<which> (iptables, arptables, ip6tables); None when br_netfilter is not loaded."""
    text = read_text(f"{BR_NF}/bridge-nf-call-{which}")
    return None if text is None else text.strip() == "1"


def _backend(tool: str) -> str | None:
    """'nf_tables' or 'legacy' from `TOOL -V`, None when the tool is missing."""
    if shutil.which(tool) is None:
        return None
    res = run_tool([tool, "-V"], timeout=5)
    text = res.stdout + res.stderr
    return "legacy" if "legacy" in text else "nf_tables" if "nf_tables" in text else "legacy"


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def read_filters(hops: Iterable[str] = (), notes: list[str] | None = None) -> list[FilterRule]:
    """Filter rules on the path of `hops` (interface names in the host namespace). Never raises."""
    notes = notes if notes is not None else []
    hops = [h for h in dict.fromkeys(hops) if h]
    call_ip = br_netfilter("iptables")
    call_arp = br_netfilter("arptables")
    eb_backend = _backend("ebtables")
    ipt_backend = _backend("iptables")
    out: list[FilterRule] = []
    out += _read_nft(hops, notes, bool(call_ip), bool(call_arp), eb_backend, ipt_backend)
    out += _read_ebtables(hops, notes, eb_backend)
    out += _read_iptables(hops, notes, ipt_backend, call_ip)
    out += _read_nwfilter(hops, notes)
    return out


def _read_nft(hops: list[str], notes: list[str], call_ip: bool, call_arp: bool,
              eb_backend: str | None, ipt_backend: str | None) -> list[FilterRule]:
    js = run_tool(["nft", "-j", "list", "ruleset"])
    if not js.ok:
        _note(notes, f"nftables not read: {js.error}")
        return []
    text = run_tool(["nft", "-a", "list", "ruleset"])
    managed = nftmod.managed_tables(text.stderr + js.stderr)
    skip = set()
    for family, table in managed:
        if (family == "bridge" and eb_backend == "nf_tables") or (family == "ip" and ipt_backend == "nf_tables"):
            skip.add((family, table))  # read by ebtables/iptables, which print their xt matches in full
    return nftmod.parse_nft(js.stdout, text.stdout if text.ok else "", hops, skip=skip,
                            br_netfilter_ip=call_ip, br_netfilter_arp=call_arp)


def _read_ebtables(hops: list[str], notes: list[str], backend: str | None) -> list[FilterRule]:
    if backend is None:
        return []  # no ebtables on this host: nothing to read, nothing worth a note
    if backend == "nf_tables":
        res = run_tool(["ebtables-save", "-c"]) if shutil.which("ebtables-save") else None
        if res is not None and res.ok:
            return xtables.parse_ebtables_save(res.stdout, hops)
    elif not _legacy_ebtables_loaded():
        return []
    out = []
    for table in ("filter", "nat", "broute"):
        res = run_tool(["ebtables", "-t", table, "-L", "--Lc", "--Ln"])
        if res.ok:
            out += xtables.parse_ebtables_list(res.stdout, hops)
    return out


def _legacy_ebtables_loaded() -> bool:
    modules = read_text("/proc/modules")
    return modules is None or "ebtables" in modules  # no /proc/modules: everything is built in


def _read_iptables(hops: list[str], notes: list[str], backend: str | None,
                   call_ip: bool | None) -> list[FilterRule]:
    if backend is None:
        if call_ip:
            _note(notes, "iptables not read: not installed (br_netfilter passes bridged IPv4 to iptables here)")
        return []
    tables = None
    if backend == "legacy":
        names = read_text("/proc/net/ip_tables_names")
        if not names:
            return []  # no legacy table in the kernel: no rule, and listing would load modules
        tables = names.split()
    res = run_tool(["iptables-save", "-c"])
    if not res.ok:
        _note(notes, f"iptables not read: {res.error}")
        return []
    if call_ip is None:
        _note(notes, "br_netfilter is not loaded: iptables and ip/inet nftables rules do not see bridged frames")
    elif not call_ip:
        _note(notes, "bridge-nf-call-iptables is 0: iptables physdev rules do not see bridged frames")
    return xtables.parse_iptables_save(res.stdout, hops, physdev=bool(call_ip), tables=tables)


def _read_nwfilter(hops: list[str], notes: list[str]) -> list[FilterRule]:
    bindings = nwfilter.domain_xml_bindings()
    if shutil.which("virsh") and Path("/run/libvirt").exists():
        res = run_tool(["virsh", "-q", "-c", "qemu:///system", "nwfilter-binding-list"], timeout=5)
        if res.ok:
            bindings += [(dev, name, {}) for dev, name in nwfilter.parse_binding_list(res.stdout)]
        else:
            _note(notes, f"libvirt nwfilter bindings not listed: {res.error}")
    return nwfilter.rules_from(_merge(bindings), hops)


def _merge(bindings: list[tuple[str, str, dict[str, str]]]) -> list[tuple[str, str, dict[str, str]]]:
    """One entry per (dev, filter), keeping parameters from whichever source had them."""
    merged: dict[tuple[str, str], dict[str, str]] = {}
    for dev, name, params in bindings:
        merged.setdefault((dev, name), {}).update(params)
    return [(dev, name, params) for (dev, name), params in merged.items()]
