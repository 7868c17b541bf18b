"""What `lab up` and `lab list` print: the lab as a lesson, not just a list of objects."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from tracer.render.console import out


def lab_up(info: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    c = out()
    c.print(f"[bold]lab {info['name']}[/] is up: [bold]{info['scenario']}[/] - {escape(info['summary'])}")
    c.print(f"  seed:      {escape(info['seed'])}")
    c.print(f"  target:    [bold]{info['target']}[/]  ({info['guest']['kind']} guest, MAC {info['guest']['mac']})")
    c.print("  path:      " + "  ->  ".join(escape(h) for h in info["hops"]))
    server = info.get("server") or {}
    if server:
        c.print(
            f"  server:    dnsmasq {server['address']} in {server['namespace']}, range {server['range']}"
            f", log {server['log']}"
        )
    for key, value in (info.get("fault") or {}).items():
        c.print(f"  fault:     {key}: {escape(str(value))}")
    c.print("  try next:")
    for line in info["try_next"]:
        c.print(f"    {escape(line)}")
    c.print(f"  tear down: tracepath-l2 lab down --name {info['name']}")


def lab_list(scenarios: list[tuple[str, str, str]], running: list[str]) -> None:
    c = out()
    width = max(len(name) for name, _, _ in scenarios)
    for name, guests, summary in scenarios:
        c.print(f"{name:<{width}}  {escape('[' + guests + ']'):<14}  {escape(summary)}")
    if running:
        c.print("labs up: " + ", ".join(running))
