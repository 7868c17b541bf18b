"""Running the host's own tools (ip, bridge, nft, dnsmasq, lxc-*, virsh) for the labs.

Labs use the same commands an operator would type, so what a lab built can be shown and repeated
by hand; `run` keeps the last command's stderr in the error so a failed step explains itself.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence

from tracer.errors import EnvironmentMissing, LabError


def run(
    cmd: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one command (inside `netns` when given) and raise LabError with its stderr on failure."""
    argv = list(cmd)
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    if shutil.which(argv[0]) is None:
        raise EnvironmentMissing(f"'{argv[0]}' is not installed; run scripts/setup")
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:g}s: {shlex.join(argv)}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{shlex.join(argv)} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def quiet(cmd: Sequence[str], *, netns: str | None = None, timeout: float = 30) -> bool:
    """Run a best-effort teardown step; True when it succeeded. Never raises."""
    try:
        return run(cmd, netns=netns, check=False, timeout=timeout).returncode == 0
    except Exception:  # noqa: BLE001 - teardown must go on whatever one step does
        return False
