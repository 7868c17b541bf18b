"""Small shared helpers: run a read-only tool without ever raising, and convert kernel clocks.

Every evidence source must degrade to a note, so `run_tool` turns "not installed", "timed out" and
"failed" into a `ToolResult` with `error` set instead of an exception.
"""

from __future__ import annotations

import os
import time

from tracer.hosttools import ToolResult, run_tool  # noqa: F401 - re-exported for evidence


def monotonic_to_epoch_offset() -> float:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, now.

    Kernel stamps on the monotonic clock (the tracepoint's `mono` trace clock; /dev/kmsg's stamps,
    which come from local_clock() and track it closely) become epoch seconds by adding this. It is
    read at conversion time, not once, so an NTP step of the wall clock during a long trace moves
    kernel times the same way it moves packet timestamps. The two clocks are read back to back and
    the pair with the smallest gap is used, which bounds the error to a few microseconds.
    """
    best_gap, best = float("inf"), 0.0
    for _ in range(3):
        m1 = time.clock_gettime(time.CLOCK_MONOTONIC)
        r = time.clock_gettime(time.CLOCK_REALTIME)
        m2 = time.clock_gettime(time.CLOCK_MONOTONIC)
        if m2 - m1 < best_gap:
            best_gap, best = m2 - m1, r - (m1 + m2) / 2
    return best


def read_text(path: str) -> str | None:
    """A small kernel file's text, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
