"""Exit codes and the small error tree.

Findings are data; exceptions only mean "could not look". The CLI has one guard that turns any
TracerError into one line on stderr and its exit code, so no command ever shows a traceback
unless --debug asks for it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes: a public contract, documented in README."""

    OK = 0
    """The path is healthy (or the command did what it was asked)."""
    STOPPED = 1
    """Frames stop somewhere along the path: the report says where and why."""
    USAGE = 2
    """Bad usage or input: unknown or ambiguous target, malformed file, unknown scenario, name in use."""
    INCONCLUSIVE = 3
    """Nothing was seen before the timeout."""
    PRIVILEGES = 4
    """Missing privileges (root or CAP_NET_ADMIN/CAP_NET_RAW)."""
    ENVIRONMENT = 5
    """The host lacks something the command needs: a package, a daemon or a kernel feature."""
    INTERNAL = 70
    """A bug in tracepath-l2 itself (EX_SOFTWARE): one line, and --debug shows the traceback."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C) before anything could be reported."""


class TracerError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(TracerError):
    """The command line or its input is wrong."""


class TargetError(TracerError):
    """The target could not be found, is ambiguous, or its configuration is malformed."""


class TopologyError(TracerError):
    """The kernel's view of the path could not be read or is inconsistent."""


class CaptureError(TracerError):
    """A hop could not be sniffed."""

    exit_code = ExitCode.ENVIRONMENT


class BundleError(TracerError):
    """A recorded bundle or capture file is unreadable."""


class PrivilegeError(TracerError):
    """The command needs privileges it does not have."""

    exit_code = ExitCode.PRIVILEGES


class EnvironmentMissing(TracerError):
    """A package, daemon or kernel feature the command needs is absent."""

    exit_code = ExitCode.ENVIRONMENT


class LabError(TracerError):
    """A lab could not be built or torn down."""

    exit_code = ExitCode.ENVIRONMENT


def require_root(what: str) -> None:
    """Fail early with exit 4 instead of half-building something as an unprivileged user."""
    import os

    if os.geteuid() != 0:
        raise PrivilegeError(f"{what} needs root (CAP_NET_ADMIN and CAP_NET_RAW); run it with sudo")
