"""The report as a hop ladder: one row per hop in path order, one column per message of the exchange.

Plain text (piped) uses only ASCII and a stable layout, so scripts and tests can read it; a
terminal gets the same words with colour. `explain` walks a learner through each hop: what was
expected there, what was seen, and what that rules in or out.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from tracer.analyze.hops import DOWN, UP, expected_direction
from tracer.analyze.hops import transit as transit_hops
from tracer.model import Finding, Observation, Report, Role, Status
from tracer.render.console import out

DHCP_ORDER = ["DISCOVER", "OFFER", "REQUEST", "ACK", "NAK", "DECLINE", "RELEASE", "INFORM"]
STATUS_STYLE = {Status.OK: "bold green", Status.STOPPED: "bold red", Status.INCONCLUSIVE: "bold yellow"}
TO_SERVER = {"DISCOVER", "REQUEST", "DECLINE", "RELEASE", "INFORM", "request"}


def as_json(report: Report, extra: dict[str, Any] | None = None) -> str:
    return json.dumps({**report.to_dict(), **(extra or {})}, indent=2, sort_keys=False)


def ladder(report: Report) -> tuple[list[str], list[list[str]]]:
    """Columns (messages of the focus exchange) and rows (hop, role, one cell per message)."""
    focus = [o for o in report.observations if o.key == report.focus] if report.focus else []
    messages = _columns(focus, report.protocol)
    hops = [h for h in report.path.hops if h.role is not Role.UPSTREAM]
    required = {h.label for t in (UP, DOWN) for h in transit_hops(report.path, set(report.sniffed), t)}
    rows = []
    for hop in hops:
        row = [hop.label, str(hop.role)]
        for msg in messages:
            travel = UP if msg in TO_SERVER else DOWN
            want = str(expected_direction(hop, travel))
            seen = [o for o in focus if o.message == msg and o.hop == hop.label and str(o.direction) == want]
            if seen:
                first = min(o.time for o in focus if o.message == msg)
                row.append(f"{want} +{(seen[0].time - first) * 1000:.2f}ms")
            elif hop.label not in report.sniffed:
                row.append("n/a")
            elif hop.label not in required:
                row.append(".")
            else:
                row.append("--")
        rows.append(row)
    return messages, rows


def _columns(focus: list[Observation], protocol: str) -> list[str]:
    present = {o.message for o in focus}
    if protocol == "dhcp":
        return [m for m in DHCP_ORDER if m in present]
    return [m for m in ("request", "reply") if m in present]


def text(report: Report, *, explain: bool = False) -> None:
    c = out()
    g = report.path.guest
    head = f"{report.protocol.upper()} trace of {g.name} ({g.kind}" + (f", MAC {g.mac})" if g.mac else ")")
    c.print(f"[bold]{escape(head)}[/]" + (escape("  [replay]") if report.replay else ""))
    messages, rows = ladder(report)
    header = ["hop", "role", *messages]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    c.print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        c.print("  " + escape("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()))
    if report.focus:
        c.print(f"  ({report.focus}; '--' missing, '.' not expected there, 'n/a' not sniffed)")
    v = report.verdict
    c.print(f"verdict: [{STATUS_STYLE[v.status]}]{v.status.upper()}[/]  {escape(v.message)}")
    if v.between:
        c.print(f"  between: {v.between[0]} -> {v.between[1]}")
    if report.findings:
        c.print("findings:")
    for f in report.findings:
        for line in finding_lines(f):
            c.print(escape(line))
    if explain:
        for line in explanation(report):
            c.print(escape(line))


def finding_lines(f: Finding) -> list[str]:
    return [f"  [{f.severity}] {f.code}" + (f" at {f.hop}" if f.hop else ""),
            *(f"      evidence: {e}" for e in f.evidence),
            f"      why: {f.explanation}", f"      fix: {f.fix}"]


def explanation(report: Report) -> list[str]:
    """A hop-by-hop walk for learners: expected, seen, and what that rules in or out."""
    lines = ["", "how to read this, hop by hop:"]
    focus = [o for o in report.observations if o.key == report.focus] if report.focus else []
    messages = _columns(focus, report.protocol)
    if not messages:
        lines.append(f"  No {report.protocol.upper()} frame of this guest was seen on any sniffed hop. Either the "
                     "guest sent nothing while we watched (is it retrying? try --probe), or the hop closest to "
                     "the guest does not carry its frames (see link-down / not-attached above).")
        return lines
    for msg in messages:
        travel = UP if msg in TO_SERVER else DOWN
        hops = transit_hops(report.path, set(report.sniffed), travel)
        towards = "from the guest towards the wire" if travel == UP else "from the wire towards the guest"
        lines.append(f"  {msg} travels {towards}:")
        reached = None
        for hop in hops:
            want = str(expected_direction(hop, travel))
            seen = any(o.message == msg and o.hop == hop.label and str(o.direction) == want for o in focus)
            if seen:
                lines.append(f"    {hop.label} ({hop.role}): expected '{want}', seen. It got this far.")
                reached = hop.label
            elif reached is None:
                lines.append(f"    {hop.label} ({hop.role}): expected '{want}', not seen: it never got here "
                             "(or it started further along).")
            else:
                lines.append(f"    {hop.label} ({hop.role}): expected '{want}', NOT seen although {reached} saw it: "
                             f"the frame was lost between {reached} and {hop.label}. Everything before {reached} is "
                             f"ruled out; look at what sits between the two (the bridge's FDB, filters, port state).")
                break
    return lines
