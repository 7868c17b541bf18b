"""The only ways target sources touch the host: run a read-only tool, read a file, scan /proc.

Each helper turns "not installed", "timed out" and "failed" into a value instead of an exception,
and "permission denied" into PrivilegeError, so a source whose tool is absent simply finds nothing
while a source that is present but unreadable says why.
"""

from __future__ import annotations

import os
from pathlib import Path

from tracer.errors import PrivilegeError
from tracer.hosttools import ToolResult, have, run_tool  # noqa: F401 - re-exported for targets


def read_file(path: str | Path, *, limit: int = 16 * 1024 * 1024) -> str:
    """A configuration file's text. PermissionError becomes PrivilegeError; other OSErrors propagate."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except PermissionError:
        raise PrivilegeError(f"cannot read {path}: permission denied (run as root)") from None


def list_dir(path: str | Path) -> list[str]:
    """Entries of a directory, [] when it does not exist; PermissionError becomes PrivilegeError."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except PermissionError:
        raise PrivilegeError(f"cannot list {path}: permission denied (run as root)") from None


def proc_cmdlines(proc: str = "/proc") -> dict[int, tuple[str, int]]:
    """pid -> (cmdline with NULs as spaces, ppid) for every readable process."""
    found: dict[int, tuple[str, int]] = {}
    for entry in list_dir_quiet(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/cmdline", "rb") as f:
                cmdline = f.read(4096).replace(b"\0", b" ").decode("utf-8", "replace").strip()
            with open(f"{proc}/{entry}/stat", "rb") as f:
                stat = f.read(1024).decode("utf-8", "replace")
        except OSError:
            continue
        # stat: "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) >= 2 and rest[1].lstrip("-").isdigit():
            found[int(entry)] = (cmdline, int(rest[1]))
    return found


def list_dir_quiet(path: str | Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def lxc_init_pid(lxcpath: str, name: str, proc: str = "/proc") -> int | None:
    """The init PID of a running LXC (or LXD) container, found without LXC's tools.

    LXC runs one monitor per container whose command line is `[lxc monitor] LXCPATH NAME`; the
    container's init is the monitor's child (seen on LXC 5.0.2: monitor 8263, init 8264, ppid 8263).
    """
    table = proc_cmdlines(proc)
    wanted = f"[lxc monitor] {lxcpath.rstrip('/')} {name}"
    monitors = [pid for pid, (cmd, _) in table.items() if cmd == wanted]
    for monitor in monitors:
        children = sorted(pid for pid, (_, ppid) in table.items() if ppid == monitor)
        if children:
            return children[0]
    return None


def same_netns_as_host(pid: int, proc: str = "/proc") -> bool | None:
    """Whether process `pid` shares our own network namespace (the one the tracer sniffs from);
    None when that cannot be read. Our own namespace, not PID 1's: PID 1 may be unreadable even to
    root (seen on this project's machines) and the tracer may itself run inside a container."""
    try:
        return os.stat(f"{proc}/{pid}/ns/net").st_ino == os.stat(f"{proc}/self/ns/net").st_ino
    except OSError:
        return None
