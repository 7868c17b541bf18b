"""Doing one thing inside another network namespace without moving the main thread.

setns(2) changes the namespace of the calling thread only; sockets keep the namespace they were
created in. So a short-lived thread enters the namespace, creates the socket (or runs the
function), and ends; the main thread never leaves the host's namespace. Python 3.11 has no
os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from tracer.errors import CaptureError, PrivilegeError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    if netns.startswith("pid:"):
        return f"/proc/{netns[4:]}/ns/net"
    if netns.startswith("/"):
        return netns
    return f"/run/netns/{netns}"


def run_in(netns: str | None, fn: Callable[[], T]) -> T:
    """Run `fn` inside `netns` (None: here) and return its result or raise its exception."""
    if netns is None:
        return fn()
    path = netns_path(netns)
    result: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            result["error"] = CaptureError(f"network namespace {netns} does not exist (gone?)")
            return
        except PermissionError:
            result["error"] = PrivilegeError(f"cannot open {path}: needs root")
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = PrivilegeError(f"cannot enter {netns}: {os.strerror(err)}")
                return
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            result["error"] = exc
        finally:
            os.close(fd)

    t = threading.Thread(target=target, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
