"""Xen domains (xl toolstack) as targets.

Theory of operation
-------------------
In dom0 every guest NIC has a netback device named `vif<domid>.<devid>`; an HVM guest started with
an emulated NIC also has a QEMU tap `vif<domid>.<devid>-emu`, which carries the frames until the
guest's PV driver takes over. The `vif-bridge` script enslaves the vif to the NIC's bridge.
`xl list` names the domains, `xl network-list DOM` gives each NIC's devid and MAC, and `xl list -l`
(JSON) adds the bridge. Without `xl`, the kernel's own names still say which domains have NICs.

The old `network-bridge` script (Xen < 4.1, seed 002) renamed the physical `ethN` to `pethN` and gave
the name `ethN` to a netloop vif (or the bridge): a VLAN built on `ethN` afterwards is built on the
wrong device. `renamed_physicals` reports such pairs so a path through `ethN` can say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import _host
from tracer.targets.base import Nic, Source, Target, normalize_mac

_VIF_RE = re.compile(r"^vif(\d+)\.(\d+)(-emu)?$")
_NETLIST_RE = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+\S+\s*(\S*)\s*$")
SYS_CLASS_NET = "/sys/class/net"


# ---------------------------------------------------------------- pure parsing
def parse_xl_list(text: str) -> list[tuple[str, int, str]]:
    """`xl list`: (name, domid, state) per domain, Domain-0 included."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[0] == "Name":
            continue
        domid, state = fields[-5], fields[-2]
        if not domid.isdigit():
            continue
        out.append((" ".join(fields[:-5]), int(domid), state))
    return out


def parse_xl_network_list(text: str) -> list[dict[str, Any]]:
    """`xl network-list DOM`: devid, backend domid, MAC, state and backend path per NIC."""
    out = []
    for line in text.splitlines():
        m = _NETLIST_RE.match(line)
        if m:
            out.append({"devid": int(m.group(1)), "backend": int(m.group(2)), "mac": m.group(3).lower(),
                        "state": int(m.group(5)), "be_path": m.group(7) or None})
    return out


def parse_xl_list_long(text: str, *, origin: str = "xl list -l") -> dict[int, dict[str, Any]]:
    """`xl list -l` JSON: domid -> {name, type, nics: [{devid, mac, bridge, nictype, model}]}."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TargetError(f"{origin}: not JSON ({exc.__class__.__name__})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise TargetError(f"{origin}: expected a JSON list of domains")
    out: dict[int, dict[str, Any]] = {}
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("domid"), int):
            continue
        config = item.get("config") if isinstance(item.get("config"), dict) else {}
        c_info = config.get("c_info") if isinstance(config.get("c_info"), dict) else {}
        nics = []
        for pos, nic in enumerate(config.get("nics") or []):
            if not isinstance(nic, dict):
                continue
            devid = nic.get("devid")
            nics.append({"devid": devid if isinstance(devid, int) else pos, "mac": nic.get("mac"),
                         "bridge": nic.get("bridge"), "nictype": nic.get("nictype"), "model": nic.get("model"),
                         "script": nic.get("script")})
        out[item["domid"]] = {"name": c_info.get("name"), "type": c_info.get("type"), "uuid": c_info.get("uuid"),
                              "nics": nics}
    return out


def vif_names(ifnames: Iterable[str]) -> dict[int, dict[int, list[str]]]:
    """Kernel link names -> domid -> devid -> [vifD.N, vifD.N-emu]."""
    out: dict[int, dict[int, list[str]]] = {}
    for name in ifnames:
        m = _VIF_RE.match(name)
        if m:
            out.setdefault(int(m.group(1)), {}).setdefault(int(m.group(2)), []).append(name)
    for devs in out.values():
        for names in devs.values():
            names.sort(key=lambda n: n.endswith("-emu"))
    return out


def renamed_physicals(ifnames: Iterable[str]) -> dict[str, str]:
    """`ethN` -> `pethN` for every physical NIC Xen's network-bridge script renamed (seed 002)."""
    names = set(ifnames)
    return {n[1:]: n for n in sorted(names) if n.startswith("peth") and n[1:] in names}


def xen_target(
    name: str,
    domid: int,
    *,
    nics: Iterable[Mapping[str, Any]] = (),
    kernel: Mapping[int, list[str]] | None = None,
    dom_type: str | None = None,
    state: str | None = None,
    renamed: Mapping[str, str] | None = None,
    uuid: str | None = None,
) -> Target:
    """A Xen domain from its NICs (`xl network-list`/`xl list -l`) and the kernel's vif names."""
    by_devid: dict[int, dict[str, Any]] = {}
    for nic in nics:
        devid = nic.get("devid")
        if isinstance(devid, int):
            by_devid.setdefault(devid, {}).update({k: v for k, v in nic.items() if v is not None})
    for devid in (kernel or {}):
        by_devid.setdefault(devid, {"devid": devid})
    out = []
    for devid in sorted(by_devid):
        info = by_devid[devid]
        devs = (kernel or {}).get(devid, [])
        emu = next((d for d in devs if d.endswith("-emu")), None)
        details: dict[str, Any] = {"devid": devid}
        for key in ("nictype", "model", "script", "be_path", "state"):
            if info.get(key) is not None:
                details[key] = info[key]
        note = None
        if emu:
            details["emu_dev"] = emu
            note = (f"HVM guest: until its PV network driver loads (e.g. in firmware, PXE or the installer) "
                    f"its frames use the emulated tap {emu}, not vif{domid}.{devid}")
        bridge = info.get("bridge")
        if renamed and bridge in renamed:
            extra = (f"{bridge} is the name Xen's network-bridge script gave a stand-in: the physical NIC is "
                     f"{renamed[bridge]}; VLANs for guests must be built on {renamed[bridge]}")
            note = f"{note}; {extra}" if note else extra
        out.append(Nic(mac=normalize_mac(info.get("mac")), host_dev=f"vif{domid}.{devid}", link=bridge or None,
                       type="vif", details=details, note=note))
    details: dict[str, Any] = {"domid": domid}
    if dom_type:
        details["domain_type"] = dom_type
    if uuid:
        details["uuid"] = uuid.lower()
    if state:
        details["state"] = state
    if renamed:
        details["renamed_physicals"] = dict(renamed)
    return Target(name=name, kind="xen", nics=tuple(out), running=True, details=details)


# ---------------------------------------------------------------- reading the host
class XenSource(Source):
    """Domains from `xl` when installed, else from the kernel's vifD.N names."""

    kind = "xen"

    def __init__(
        self,
        *,
        runner: Callable[..., _host.ToolResult] = _host.run_tool,
        sys_class_net: str = SYS_CLASS_NET,
        use_xl: bool | None = None,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.sys_class_net = sys_class_net
        self.use_xl = _host.have("xl") if use_xl is None else use_xl
        self._domains: dict[str, tuple[int, str | None]] = {}

    def _ifnames(self) -> list[str]:
        return _host.list_dir_quiet(self.sys_class_net)

    def names(self) -> list[str]:
        self._domains.clear()
        if self.use_xl:
            res = self.runner(["xl", "list"], timeout=20)
            if res.ok:
                for name, domid, state in parse_xl_list(res.stdout):
                    if domid != 0:
                        self._domains[name] = (domid, state)
                return list(self._domains)
            if res.denied:
                raise PrivilegeError(f"xl list was refused: {res.error} (xl needs root)")
        for domid in sorted(vif_names(self._ifnames())):
            self._domains[f"domid-{domid}"] = (domid, None)
        return list(self._domains)

    def load(self, name: str) -> Target:
        if name not in self._domains:
            self.names()
        if name not in self._domains:
            raise TargetError(f"no Xen domain named {name!r}")
        domid, state = self._domains[name]
        ifnames = self._ifnames()
        kernel = vif_names(ifnames).get(domid, {})
        nics: list[dict[str, Any]] = []
        dom_type = None
        uuid = None
        if self.use_xl:
            res = self.runner(["xl", "network-list", str(domid)], timeout=20)
            if res.ok:
                nics.extend(parse_xl_network_list(res.stdout))
            long = self.runner(["xl", "list", "-l", str(domid)], timeout=20)
            if long.ok:
                try:
                    info = parse_xl_list_long(long.stdout).get(domid, {})
                except TargetError:
                    info = {}
                dom_type = info.get("type")
                uuid = info.get("uuid") if isinstance(info.get("uuid"), str) else None
                nics.extend(info.get("nics", []))
        return xen_target(name, domid, nics=nics, kernel=kernel, dom_type=dom_type, state=state,
                          renamed=renamed_physicals(ifnames), uuid=uuid)

    def lookup(self, query: str, *, prefixed: bool = False) -> Target | None:
        """`xen:5`: a domain id, taken only with the `xen:` prefix (a bare number is a PID)."""
        if prefixed and query.isdigit():
            domid = int(query)
            self.names()
            for name, (known, _state) in self._domains.items():
                if known == domid:
                    return self.load(name)
        return None
