"""`check`: everything that can be said about a guest's path without sending or waiting for a frame.

The static findings of its path (port state, MTU, filter rules that name one of its hops or the
guest's MAC, bridge MAC, VLAN parents, ...) plus the
host's leftover links that concern it (`tracer.analyze.leftovers`): the named veth a stopped LXC
container needs but an earlier start left behind, a libvirt `<target dev>` that is taken, orphan
veths and taps on its bridge. `fix` is the only code in the project that changes the host's
network, and it deletes exactly the links the check listed, nothing whose ifindex has changed since.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tracer.analyze.leftovers import Leftover
from tracer.errors import TargetError, TopologyError
from tracer.model import Finding, Path, Role


@dataclass
class CheckResult:
    paths: list[Path]
    findings: list[Finding]
    removable: list[Leftover] = field(default_factory=list)
    """The leftovers `fix` may delete (none a running guest uses)."""

    @property
    def failed(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


def check(query: str, nic: str | None = None) -> CheckResult:
    """Check TARGET's paths and the leftovers that concern it.

    A stopped guest whose path cannot be resolved (its device does not exist yet, its bridge is
    gone) is shown from its configuration alone; a leftover holding the name its configuration asks
    for is the finding, and the other findings at that link (down, disabled port) are its
    consequences, so they are not repeated.
    """
    from tracer.analyze.checks import static_checks
    from tracer.analyze.findings import filter_drops, static_findings
    from tracer.analyze.leftovers import leftovers, relevant
    from tracer.evidence.filters import read_filters
    from tracer.model import Evidence
    from tracer.resolve import path_for
    from tracer.targets import find_target, select_nic
    from tracer.topology.inventory import read_inventory

    tgt = find_target(query)
    nics = select_nic(tgt, nic)
    paths = []
    for n in nics:
        try:
            paths.append(path_for(tgt, n))
        except (TargetError, TopologyError) as exc:
            if tgt.running:
                raise
            dev = n.host_dev or "its host device"
            paths.append(Path(tgt.to_guest(n), (), notes=(
                str(exc), f"{tgt.name} is not running: checked from its configuration only ({dev} is created"
                          + (f" in {n.link}" if n.link else "") + " when it starts)")))
    bridges = {h.name for p in paths for h in p.hops if h.role is Role.BRIDGE} | {n.link for n in nics if n.link}
    mine = relevant(leftovers(read_inventory()), guest=tgt.label, bridges=bridges)
    held = {lo.link for lo in mine if lo.guest == tgt.label and not tgt.running}
    if held:
        paths = [replace(p, notes=(*p.notes, *(f"{h.name} is not {tgt.name}'s own port: {tgt.name} is not running "
                                               "and this leftover holds the name its configuration asks for "
                                               "(leftover-veth)" for h in p.hops if h.name in held)))
                 for p in paths]
    rules = tuple(read_filters(sorted({h.name for p in paths for h in p.hops})))
    filters = Evidence(filters=rules, filters_before=rules)  # one reading: rules on the path, no counters
    found = [f for p in paths for f in [*static_findings(p, Evidence()), *static_checks(p), *filter_drops(p, filters)]
             if f.hop not in held]
    found += [lo.finding for lo in mine]
    removable = list({lo.link: lo for lo in mine if lo.removable}.values())
    return CheckResult(paths, found, removable)


def fix(removable: list[Leftover]) -> list[dict[str, Any]]:
    """`ip link del` each leftover, only if the link with that name is still the one the check saw."""
    from tracer.hosttools import run_tool

    done = []
    for lo in removable:
        item: dict[str, Any] = {"link": lo.link, "command": lo.command, "code": lo.finding.code, "guest": lo.guest,
                                "ok": False, "error": None}
        try:
            with open(f"/sys/class/net/{lo.link}/ifindex") as f:
                now: int | None = int(f.read().strip())
        except (OSError, ValueError):
            now = None
        if now != lo.ifindex:
            item["error"] = "the link is gone or was replaced since the check; left alone"
        else:
            res = run_tool(["ip", "link", "del", "dev", lo.link])
            item["ok"] = res.ok
            item["error"] = res.error
        done.append(item)
    return done
