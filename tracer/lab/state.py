"""What a lab made, written down before it is made.

The state file is the single source of truth for teardown: every resource is recorded (and the
file rewritten) before the command that creates it, so even a SIGKILL half-way through `lab up`
leaves a file that `lab down` can finish from. Teardown of a resource that was recorded but never
created is a harmless no-op.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracer.errors import UsageError

STATE_DIR = Path(os.environ.get("TRACEPATH_L2_STATE_DIR", "/run/tracepath-l2/labs"))
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
"""Lab names prefix interface names, and Linux allows 15 characters: 'NAME-' plus a short suffix."""


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"lab name {name!r} must be 1-6 lowercase letters or digits, starting with a letter"
        )
    return name


@dataclass
class LabState:
    """Resources of one lab, in the order they were created (teardown walks them in reverse)."""

    name: str
    scenario: str = ""
    guest_kind: str = "ns"
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    """Links in the host namespace (bridges, host ends of veths, leftover veths)."""
    nft_tables: list[list[str]] = field(default_factory=list)
    """[family, table] pairs in the host namespace."""
    xt_rules: list[list[str]] = field(default_factory=list)
    """[tool, table, chain, *spec]: rules added with `tool -t table -I chain *spec` (ebtables, iptables);
    teardown deletes exactly that rule with -D."""
    fdb: list[list[str]] = field(default_factory=list)
    """[mac, dev] static entries added to a bridge."""
    processes: list[dict[str, Any]] = field(default_factory=list)
    """{"pid": int, "match": str}: killed only when /proc/PID/cmdline still contains `match`."""
    containers: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    nwfilters: list[str] = field(default_factory=list)
    """libvirt nwfilters the lab defined (undefined after its domains are gone)."""
    paths: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    """Host sysctls the lab changed, with the value to restore."""
    info: dict[str, Any] = field(default_factory=dict)
    """What the lab built, as printed by `lab up --json`."""

    @property
    def file(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, self.file)

    def add(self, kind: str, item: Any) -> Any:
        """Record one resource (before creating it) and persist at once."""
        bucket = getattr(self, kind)
        if item not in bucket:
            bucket.append(item)
        self.save()
        return item

    @classmethod
    def load(cls, name: str) -> LabState | None:
        path = STATE_DIR / f"{name}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return cls(name=name)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def forget(self) -> None:
        self.file.unlink(missing_ok=True)


def all_labs() -> list[str]:
    if not STATE_DIR.is_dir():
        return []
    return sorted(p.stem for p in STATE_DIR.glob("*.json"))
