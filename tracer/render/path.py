"""`resolve` output: one hop per line with the facts that decide whether frames cross it."""

from __future__ import annotations

import json

from rich.markup import escape

from tracer.model import Hop, Path
from tracer.render.console import out


def hop_line(h: Hop) -> str:
    facts = [h.kind, h.mac or "-", f"mtu {h.mtu}" if h.mtu else None, h.state,
             "no-carrier" if h.carrier is False else None, "admin-down" if h.admin_up is False else None,
             f"port {h.port_state}" if h.port_state else None, f"master {h.master}" if h.master else None,
             f"netns {h.netns}" if h.netns else None, f"driver {h.driver}" if h.driver else None,
             f"promisc {h.promiscuity}" if h.promiscuity else None]
    facts += [f"{k} {v}" for k, v in sorted(h.details.items()) if k in ("mode", "id", "parent", "lower",
                                                                         "active_slave", "slaves", "peer")]
    return f"{h.name:<16} {str(h.role):<11} " + "  ".join(str(f) for f in facts if f)


def text(paths: list[Path]) -> None:
    c = out()
    for i, path in enumerate(paths):
        g = path.guest
        if i:
            c.print()
        nic = f", NIC {g.nic}" if g.nic else ""
        c.print(f"[bold]{escape(g.name)}[/] ({g.kind}, MAC {g.mac or 'unknown'}{escape(nic)})")
        for h in path.hops:
            c.print("  " + escape(hop_line(h)))
        for note in path.notes:
            c.print(f"  note: {escape(note)}")


def as_json(paths: list[Path]) -> str:
    return json.dumps({"paths": [p.to_dict() for p in paths]}, indent=2)
