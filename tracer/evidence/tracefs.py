"""tracefs without side effects: a private instance, and a mount only when there was none.

Kernel facts this relies on (Documentation/trace/ftrace.rst, "Instances"):

- `mkdir /sys/kernel/tracing/instances/NAME` creates a new, independent ring buffer with its own
  copy of every event's `enable` and `filter` files, its own `trace_clock`, `tracing_on` and
  `trace_pipe`. Enabling an event there does not touch the top-level `events/*/enable` files or
  any other instance, so the host's own tracing (perf, another tool) is left exactly as it was.
- `rmdir` of the instance frees its buffer and its event state (enabled events are disabled with
  it). It fails with EBUSY while a file of the instance is held open, so the trace_pipe must be
  closed first.
- tracefs is one kernel-wide filesystem: the instances exist whether or not it is mounted, and a
  mount only makes them reachable. Hosts without systemd (this project's) do not mount it at
  boot; we mount it at /sys/kernel/tracing only then, and unmount only what we mounted, when the
  last user in this process is done. A path under /sys/kernel/debug/tracing is used only if
  already mounted: merely looking there makes debugfs automount tracefs.

A tracer killed with SIGKILL cannot clean up: its instance (named with its pid) stays behind. The
next start removes instances whose pid is dead, and a marker file in /run says who mounted tracefs,
so a mount left by a dead run is unmounted by the next run instead of becoming permanent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import threading
import time
from pathlib import Path

from tracer.evidence._util import pid_alive

TRACEFS = "/sys/kernel/tracing"
INSTANCE_PREFIX = "tracepath-l2-"
_INSTANCE_NAME = re.compile(rf"^{re.escape(INSTANCE_PREFIX)}(?P<pid>\d+)(?:-\d+)?$")
MARKER_DIR = "/run/tracepath-l2/tracefs"
_MARKER = "tracefs-mounted-by-"

_lock = threading.Lock()
_users = 0
"""Tracers in this process currently using the mount."""
_mounted_here: str | None = None
"""The mount point this process mounted (or adopted from a dead run), to unmount when unused."""


class TracefsUnavailable(Exception):
    """tracefs could not be found or mounted; the message is the note to record."""


def mount_point(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where tracefs is mounted in this mount namespace (preferring /sys/kernel/tracing)."""
    try:
        text = Path(mountinfo).read_text()
    except OSError:
        return None
    found = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        if len(fields) >= 5 and right.split()[:1] == ["tracefs"]:
            found.append(fields[4].replace("\\040", " "))
    if TRACEFS in found:
        return TRACEFS
    return found[0] if found else None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(target: str) -> None:
    if _libc().mount(b"nodev", target.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _umount(target: str) -> None:
    if _libc().umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _marker(pid: int) -> Path:
    return Path(MARKER_DIR) / f"{_MARKER}{pid}"


def _dead_mount_markers() -> list[Path]:
    try:
        markers = list(Path(MARKER_DIR).glob(f"{_MARKER}*"))
    except OSError:
        return []
    dead = []
    for m in markers:
        pid = m.name[len(_MARKER):]
        if pid.isdigit() and not pid_alive(int(pid)):
            dead.append(m)
    return dead


def acquire(notes: list[str]) -> str:
    """The tracefs root to use, mounting it if needed; pair every call with `release`."""
    global _users, _mounted_here
    with _lock:
        root = mount_point()
        dead = _dead_mount_markers()
        if root is None:
            for m in dead:  # the mount they recorded is gone already
                m.unlink(missing_ok=True)
            if not Path(TRACEFS).is_dir():
                raise TracefsUnavailable(f"kernel drops not traced: {TRACEFS} does not exist (no tracefs)")
            try:
                _mount(TRACEFS)
            except OSError as exc:
                raise TracefsUnavailable(
                    f"kernel drops not traced: cannot mount tracefs at {TRACEFS} ({exc.strerror or exc})"
                ) from exc
            root = TRACEFS
            _mounted_here = root
            _write_marker()
        elif _mounted_here is None and root == TRACEFS:
            if dead:  # a killed run mounted it: it is ours to unmount when we are done
                _mounted_here = root
                for m in dead:
                    m.unlink(missing_ok=True)
                _write_marker()
                notes.append("tracefs was left mounted by a killed run; it is unmounted at the end")
        _users += 1
        return root


def _write_marker() -> None:
    try:
        Path(MARKER_DIR).mkdir(parents=True, exist_ok=True)
        _marker(os.getpid()).write_text(f"{TRACEFS}\n")
    except OSError:
        pass  # without /run the marker is a convenience lost, not a failure


def release(notes: list[str]) -> None:
    """Drop one use; the last user unmounts tracefs if this process mounted it."""
    global _users, _mounted_here
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        if _mounted_here is None:
            # a run that mounted tracefs while we were using it could not unmount it (busy) and
            # has died since: its marker says so, and the mount is now ours to remove
            dead = _dead_mount_markers()
            if not dead or mount_point() != TRACEFS:
                return
            for m in dead:
                m.unlink(missing_ok=True)
            _mounted_here = TRACEFS
            _write_marker()
        target = _mounted_here
        for attempt in range(20):
            try:
                _umount(target)
                break
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # no longer a mount point: someone else unmounted it
                    break
                if exc.errno == errno.EBUSY and attempt < 19:
                    time.sleep(0.05)
                    continue
                notes.append(f"tracefs left mounted at {target}: unmount failed ({exc.strerror or exc}); "
                             f"`umount {target}` when nothing uses it")
                return
        _mounted_here = None
        _marker(os.getpid()).unlink(missing_ok=True)


# ---------------------------------------------------------------- instances
def remove_stale_instances(root: str, notes: list[str]) -> None:
    """Remove instances left by tracers that died (their pid no longer exists)."""
    base = Path(root) / "instances"
    try:
        names = [p.name for p in base.iterdir()]
    except OSError:
        return
    for name in names:
        m = _INSTANCE_NAME.match(name)
        if not m or pid_alive(int(m.group("pid"))):
            continue
        try:
            _disable_all(base / name)
            (base / name).rmdir()
            notes.append(f"removed tracing instance {name} left by a killed run")
        except OSError as exc:
            notes.append(f"stale tracing instance {name} could not be removed ({exc.strerror or exc})")


def _disable_all(instance: Path) -> None:
    try:
        (instance / "events" / "enable").write_text("0\n")
    except OSError:
        pass


class Instance:
    """One private tracing instance under ROOT/instances/tracepath-l2-PID[-N]."""

    def __init__(self, root: str) -> None:
        base = Path(root) / "instances"
        if not base.is_dir():
            raise TracefsUnavailable(f"kernel drops not traced: {base} missing (kernel without instances)")
        pid = os.getpid()
        for n in range(1000):
            name = f"{INSTANCE_PREFIX}{pid}" + (f"-{n}" if n else "")
            path = base / name
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise TracefsUnavailable(
                    f"kernel drops not traced: cannot create tracing instance ({exc.strerror or exc})"
                ) from exc
            self.name, self.path = name, path
            return
        raise TracefsUnavailable("kernel drops not traced: no free tracing instance name")

    def file(self, rel: str) -> Path:
        return self.path / rel

    def read(self, rel: str) -> str:
        return self.file(rel).read_text(errors="replace")

    def write(self, rel: str, text: str) -> None:
        """Write a control file; OSError (EINVAL for a bad filter) propagates to the caller."""
        fd = os.open(self.file(rel), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def remove(self, notes: list[str]) -> None:
        """Disable its events and remove it, retrying while a just-closed reader lets go."""
        _disable_all(self.path)
        for attempt in range(40):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno == errno.EBUSY and attempt < 39:
                    time.sleep(0.05)
                    continue
                notes.append(f"tracing instance {self.path} could not be removed ({exc.strerror or exc}); "
                             f"`rmdir {self.path}` removes it")
                return
