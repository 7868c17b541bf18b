"""Doing one thing inside another network namespace without moving the main thread.

setns(2) changes the namespace of the calling *thread* only, and a socket stays in the namespace
it was created in for its whole life, whichever thread later reads it. So a short-lived thread
enters the namespace, creates the socket (or runs the function), hands the result back and ends;
the main thread never leaves the namespace it started in. Python 3.11 has no os.setns, hence
ctypes on libc's setns.

Only what is resolved through the thread's namespace follows it: sockets, netlink, ioctls and
if_nametoindex(). /sys/class/net does not (sysfs shows the namespace of whoever mounted it, here
the host's), and /proc/net follows the thread group leader; use /proc/thread-self/net or a socket.

A namespace is named as `ip netns` does (NAME -> /run/netns/NAME), by a path (a bind mount or
/proc/PID/ns/net), or as `pid:N` (/proc/N/ns/net: an LXC container's init, a QEMU process).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from tracer.errors import CaptureError, PrivilegeError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    """The file that stands for `netns`: pid:N, an absolute path, or a name under /run/netns."""
    if netns.startswith("pid:"):
        pid = netns[4:]
        if not pid.isdigit():
            raise CaptureError(f"bad namespace {netns!r}: expected pid:N")
        return f"/proc/{pid}/ns/net"
    if netns.startswith("/"):
        return netns
    if "/" in netns or netns in ("", ".", ".."):
        raise CaptureError(f"bad namespace name {netns!r}")
    return f"/run/netns/{netns}"


def _enter(netns: str) -> None:
    """Move the calling thread into `netns` (never call this on the main thread)."""
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CaptureError(f"network namespace {netns} does not exist ({path} is missing)") from None
    except PermissionError:
        raise PrivilegeError(f"cannot open {path}: entering a network namespace needs root") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                raise PrivilegeError(f"cannot enter network namespace {netns}: needs CAP_SYS_ADMIN (root)")
            if err == errno.EINVAL:
                raise CaptureError(f"{path} is not a network namespace")
            raise CaptureError(f"cannot enter network namespace {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(netns: str | None, fn: Callable[[], T]) -> T:
    """Run `fn` inside `netns` (None: right here) and return its result or raise its exception.

    The work happens on a dedicated thread that exits afterwards, so its namespace dies with it.
    """
    if netns is None:
        return fn()
    result: dict[str, object] = {}

    def target() -> None:
        try:
            _enter(netns)
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def socket_in(netns: str | None, family: int, type: int, proto: int = 0) -> socket.socket:
    """A socket that lives in `netns` (it keeps that namespace even though we use it from here)."""
    return run_in(netns, lambda: socket.socket(family, type, proto))
