"""The kernel log: lines logged during the window, and the two kinds that explain L2 outages.

/dev/kmsg hands out one log record per read(), each as `PRIO,SEQ,USEC,FLAGS;TEXT` followed by
optional ` KEY=VALUE` continuation lines. Every open file has its own position: seeking to the end
at open (SEEK_END: "after the last record") means only lines logged after that count, however much
the ring already holds. A reader that falls behind the ring gets EPIPE once and continues from the
oldest record still held; the sequence numbers tell how many were lost. USEC is the printk clock
(local_clock(), microseconds since boot, tracking CLOCK_MONOTONIC closely), converted here to epoch
seconds so kernel lines line up with packet timestamps.

The classifiers are pure and shared with saved `dmesg` text:

- own address: `br0: received packet on up0 with own address as source address (addr:MAC,
  vlan:N)` comes from br_fdb_update() when a frame arrives on a port with a source MAC the bridge
  holds as local: something beyond that port reflected the host's own frame (a loop). Kernels
  before 4.x print it without the parenthesis, as in the KVM seed
  (`brq5dddda71-76: received packet on bond0.2222 with own address as source address`).
- port state: `br0: port 2(vnet3) entered blocking state` (br_log_state()), printed whenever STP
  or an administrator moves a port; a port that is not forwarding drops every frame.
"""

from __future__ import annotations

import errno
import os
import re
import time
from datetime import datetime
from types import TracebackType

from tracer.analyze.kernel_lines import OwnAddress, PortState
from tracer.analyze.kernel_lines import own_address as _own_address
from tracer.analyze.kernel_lines import port_state as _port_state
from tracer.evidence._util import monotonic_to_epoch_offset
from tracer.model import KernelLine

KMSG = "/dev/kmsg"
_RECORD_MAX = 8192
"""A read buffer smaller than the record fails with EINVAL; records are at most ~1 KiB (CONSOLE_LOG_MAX)."""
_MAX_PER_READ = 10_000
"""Bound one read_new() call on a log storm; the rest waits for the next poll."""


def own_address(line: KernelLine | str) -> OwnAddress | None:
    """(bridge, port, mac, vlan) from an own-address warning; mac/vlan None on older kernels."""
    return _own_address(line.text if isinstance(line, KernelLine) else line)


def port_state_change(line: KernelLine | str) -> PortState | None:
    """(bridge, port, state) from `BR: port N(PORT) entered STATE state`."""
    return _port_state(line.text if isinstance(line, KernelLine) else line)


_UNESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    """/dev/kmsg escapes non-printable bytes as \\xNN; a line break inside a message stays visible."""
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_kmsg_record(record: str, offset: float | None = None) -> tuple[int, KernelLine] | None:
    """(seq, line) from one raw /dev/kmsg record; None when it is not one."""
    head, sep, rest = record.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
        return None
    text = rest.split("\n", 1)[0]  # continuation lines (" SUBSYSTEM=net") are metadata
    stamp = int(fields[2]) / 1e6
    return int(fields[1]), KernelLine(_unescape(text), stamp + offset if offset is not None else None)


class KmsgReader:
    """New kernel log lines since the reader was opened, read without blocking.

    Use as a context manager; `read_new()` returns what arrived since the last call. When
    /dev/kmsg cannot be opened (not root, a container without it) the reader says so in `notes`
    and returns nothing.
    """

    def __init__(self, path: str = KMSG, *, lookback: float = 0.0) -> None:
        """`lookback` seconds of lines logged *before* opening count too: an operator who starts
        tracing mid-outage wants the loop warning the kernel printed a minute ago (the kernel
        rate-limits them, so the next one may be long in coming)."""
        self.path = path
        self._since = time.time() - lookback if lookback > 0 else None
        self.notes: list[str] = []
        self._fd: int | None = None
        self._next_seq: int | None = None

    def open(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.notes.append(f"kernel log not read: cannot open {self.path} ({exc.strerror or exc})")
            return
        try:
            os.lseek(fd, 0, os.SEEK_SET if self._since is not None else os.SEEK_END)
        except OSError as exc:
            os.close(fd)
            self.notes.append(f"kernel log not read: cannot seek {self.path} ({exc.strerror or exc})")
            return
        self._fd = fd

    def read_new(self) -> list[KernelLine]:
        if self._fd is None:
            return []
        offset = monotonic_to_epoch_offset()
        out: list[KernelLine] = []
        lost = 0
        while len(out) < _MAX_PER_READ:
            try:
                data = os.read(self._fd, _RECORD_MAX)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it: go on from the oldest
                    continue
                self.notes.append(f"kernel log reading stopped: {exc.strerror or exc}")
                self.close()
                break
            if not data:
                break
            parsed = parse_kmsg_record(data.decode("utf-8", errors="replace"), offset)
            if parsed is None:
                continue
            seq, line = parsed
            if self._next_seq is not None and seq > self._next_seq:
                lost += seq - self._next_seq
            self._next_seq = seq + 1
            if self._since is None or line.time is None or line.time >= self._since:
                out.append(line)
        if lost:
            self.notes.append(f"kernel log: {lost} line(s) were overwritten before they could be read")
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> KmsgReader:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# ---------------------------------------------------------------- saved dmesg text
_BOOT_STAMP = re.compile(r"^\[\s*(?P<s>\d+\.\d+)\]\s?")
_HUMAN_STAMP = re.compile(r"^\[(?:[A-Z][a-z]{2} ){1,2}[ \d]\d \d\d:\d\d:\d\d \d{4}\]\s?")
_ISO_STAMP = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[,.]\d+)?(?:[+-]\d\d:?\d\d|Z)?)\s+")
_LEVEL_PREFIX = re.compile(
    r"^(?:<\d+>|(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7])\s*:"
    r"\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s)"
)
_KMSG_RECORD = re.compile(r"^\d+,\d+,\d+(?:,[^;]*)?;")
_SYSLOG = re.compile(r"^(?:\w{3}\s+\d+\s+\d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)\s+\S+\s+kernel:\s")
_CONTINUATION = re.compile(r"^ [A-Z_]+=\S*$")


def parse_dmesg(text: str, *, boot_time: float | None = None) -> list[KernelLine]:
    """Kernel lines from saved log text, with their time when the text allows it.

    Understands plain `dmesg` (`[  123.456789] text`, seconds since boot: an epoch time only when
    `boot_time` is given), `dmesg -T` (human stamps: no time, they are in the saving host's
    zone), `dmesg --time-format iso`, `dmesg -r`/`-x` level prefixes, syslog/journal lines
    (`... kernel: text`), raw /dev/kmsg records and stamp-less text. Never raises.
    """
    out = []
    for raw in text.splitlines():
        if not raw.strip() or _CONTINUATION.match(raw):
            continue
        line = _parse_dmesg_line(raw, boot_time)
        if line is not None and line.text:
            out.append(line)
    return out


def _parse_dmesg_line(raw: str, boot_time: float | None) -> KernelLine | None:
    if _KMSG_RECORD.match(raw):
        rec = parse_kmsg_record(raw, boot_time)
        return rec[1] if rec else None
    rest = raw.rstrip("\r\n")
    when: float | None = None
    syslog = _SYSLOG.match(rest)
    if syslog:
        rest = rest[syslog.end():]
    iso = _ISO_STAMP.match(rest)
    if iso:
        when = _iso_epoch(iso.group("iso"))
        rest = rest[iso.end():]
    level = _LEVEL_PREFIX.match(rest)
    if level:
        rest = rest[level.end():]
    stamp = _BOOT_STAMP.match(rest)
    if stamp:
        if when is None and boot_time is not None:
            when = boot_time + float(stamp.group("s"))
        rest = rest[stamp.end():]
    else:
        human = _HUMAN_STAMP.match(rest)
        if human:
            rest = rest[human.end():]
    return KernelLine(rest.strip(), when)


def _iso_epoch(text: str) -> float | None:
    try:
        stamp = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return stamp.timestamp() if stamp.tzinfo is not None else None
