"""Running the host's own read-only tools (virsh, lxc-info, nft, iptables-save, ...) without ever raising.

Shared by target lookup and evidence collection: a missing tool, a timeout or a refusal becomes a
sentence in `error` (and `denied` tells a privilege problem apart), which the caller turns into a
note or a PrivilegeError. Tools run in the C locale so their output parses the same everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

_DENIED_WORDS = ("permission denied", "authentication failed", "authentication unavailable", "access denied",
                 "not permitted", "polkit", "not authorized")


@dataclass(frozen=True, slots=True)
class ToolResult:
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    error: str | None = None
    """Why the tool gave nothing usable (missing, timed out, failed); None on success."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def denied(self) -> bool:
        text = (self.stderr + " " + (self.error or "")).lower()
        return any(word in text for word in _DENIED_WORDS)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def run_tool(argv: Sequence[str], *, timeout: float = 20.0) -> ToolResult:
    """Run a read-only command in the C locale; never raises."""
    if not argv or shutil.which(argv[0]) is None:
        return ToolResult(error=f"{argv[0] if argv else '?'} is not installed")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, errors="replace", env=env)
    except subprocess.TimeoutExpired:
        return ToolResult(error=f"{' '.join(argv)} timed out after {timeout:g}s")
    except OSError as exc:
        return ToolResult(error=f"{' '.join(argv)} could not run: {exc.strerror or exc}")
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit {proc.returncode}"
        return ToolResult(proc.stdout, proc.stderr, proc.returncode, f"{' '.join(argv)} failed: {why}")
    return ToolResult(proc.stdout, proc.stderr, proc.returncode)
