"""Kernel drop events: which IPv4/ARP frames the kernel freed during the window, where and why.

The `skb:kfree_skb` tracepoint fires whenever the kernel frees a packet it did not deliver
(consume_skb() is the "delivered" twin and has its own tracepoint). Since 5.17 it carries a drop
reason; this host's kernel (6.18) prints, with `protocol` in decimal:

    kfree_skb: skbaddr=000000004cc0c3bf rx_sk=0000000000000000 protocol=2048
               location=br_handle_frame_finish+0x392/0x690 reason: NOT_SPECIFIED

- `location` is the function that freed it (%pS: symbol+offset/size).
- `reason` names the check: NETFILTER_DROP (a filter rule; on 6.18 the location is nft_do_chain
  for nftables), BRIDGE_INGRESS_STP_STATE (a port that does not forward), LOCAL_MAC, ... The
  bridge's own forwarding decisions still say NOT_SPECIFIED: a unicast frame whose FDB entry points
  back at the port it came in on (the fdb-mismatch outage) is freed by br_forward()'s plain
  kfree_skb(), and the location names its caller br_handle_frame_finish (the free is a tail call).
  So NOT_SPECIFIED is kept for bridge functions and dropped elsewhere: elsewhere it is mostly the
  host's own copy of a flooded broadcast that no local socket wanted (__udp4_lib_rcv). Reasons
  about local sockets (TCP_*, UNIX_*, SOCKET_CLOSE, QUEUE_PURGE: a packet socket, ours included,
  closed with frames queued) are noise for a path and are filtered out too.
- `rx_sk` is a socket, not a device: the tracepoint does not say which interface the frame came
  from. We tie a drop to a hop through `net:netif_receive_skb` (`dev=NAME skbaddr=... len=...`),
  enabled in the same instance only for the path's interfaces and small frames: a receive of the
  same skb address on the same CPU at most 5 ms before the drop names the interface the frame
  entered the host on (`DropEvent.hop`). A frame's trip through the bridge runs in one softirq on
  one CPU, so this is exact for frames dropped on the way; copies the bridge makes when it floods
  (the filter-drop lab's DISCOVER) have their own address and stay untied, and so does a drop
  whose address was last seen longer ago (addresses are reused).

Tracing runs in a private tracefs instance (see tracer.evidence.tracefs) with the trace clock
`mono` (CLOCK_MONOTONIC), converted to epoch seconds when read so drop times compare with packet
timestamps. The kernel-side filter keeps only IPv4 and ARP (`protocol == 2048 || protocol ==
2054`), NOT_SPECIFIED only in bridge functions (`location.function == ...`, kernel 6.3+) and
none of the reasons `model.drop_reason_is_noise` names; when the kernel refuses that filter, a
simpler one is tried and the same rules are applied in Python.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from tracer.evidence import tracefs
from tracer.evidence._util import monotonic_to_epoch_offset
from tracer.model import DropEvent, drop_reason_is_noise, in_bridge_code

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PROTOCOLS = (ETH_P_IP, ETH_P_ARP)
UNSPECIFIED = "NOT_SPECIFIED"
BRIDGE_DROP_FUNCTIONS = (
    "br_handle_frame_finish", "br_handle_frame", "br_forward", "__br_forward", "br_flood",
    "br_multicast_flood", "br_dev_xmit", "br_pass_frame_up", "br_dev_queue_push_xmit",
    "br_handle_vlan", "br_handle_local_finish", "br_netif_receive_skb",
)
"""Bridge functions that free frames without a reason (kfree_skb()), for the kernel-side filter; in
Python, any bridge function counts (model.in_bridge_code)."""
RECEIVE_MAX_LEN = 1024
"""netif_receive_skb events are kept only for frames up to this L3 length: DHCP (~300-600 bytes)
and ARP (28) fit, bulk traffic on a busy uplink does not flood the buffer."""
BUFFER_KB = 512
"""Per-CPU ring size of the private instance (the kernel default is 1410 KiB per CPU)."""
_READ_MAX = 4 << 20
_TIE_WINDOW = 0.005
"""A receive more than this many seconds before the drop, or on another CPU, is not the same frame:
skb addresses are reused (slab freelists are per CPU and LIFO). A frame's trip through the bridge
runs in one softirq on one CPU and takes microseconds (4 us measured here, receive to drop)."""
_LINE = re.compile(
    r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:[^\s:]{4,6}\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s?(?P<body>.*)$"
)
_LOST = re.compile(r"CPU:\s*(?P<cpu>\d+)\s+\[LOST (?P<n>\d+) EVENTS\]")
_FIELD = re.compile(r"(?P<key>\w+)=(?P<value>\S+)")
_REASON = re.compile(r"reason:\s*(?P<reason>\w+)")
_SYMBOLS = re.compile(r'\{\s*(?P<n>\d+),\s*"(?P<name>\w+)"\s*\}')


# ---------------------------------------------------------------- parsing trace_pipe text
def _protocol(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0) if not value.isdigit() else int(value)
    except ValueError:
        return None


class TraceParser:
    """Turns trace_pipe lines into DropEvents, remembering receives to tie drops to hops.

    Stateful across calls (a receive and its drop may arrive in different reads); pure otherwise:
    recorded text replays through it.
    """

    def __init__(self, *, keep_unspecified: bool = False, hops: Iterable[str] = ()) -> None:
        self.keep_unspecified = keep_unspecified
        self.hops = set(hops)
        self.lost = 0
        self._received: OrderedDict[str, tuple[str, float, str]] = OrderedDict()

    def feed(self, lines: Iterable[str], offset: float | None = None) -> list[DropEvent]:
        out = []
        for line in lines:
            try:
                event = self._line(line, offset)
            except (ValueError, TypeError):
                continue
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str, offset: float | None) -> DropEvent | None:
        lost = _LOST.search(line)
        if lost:
            self.lost += int(lost.group("n"))
            return None
        m = _LINE.match(line)
        if not m:
            return None
        ts = float(m.group("ts"))
        body = m.group("body")
        fields = {f.group("key"): f.group("value") for f in _FIELD.finditer(body)}
        event = m.group("event")
        if event == "netif_receive_skb":
            self._remember(fields, ts, m.group("cpu"))
            return None
        if event != "kfree_skb":
            return None
        proto = _protocol(fields.get("protocol"))
        if proto is not None and proto not in PROTOCOLS:
            return None
        reason_m = _REASON.search(body)
        reason = reason_m.group("reason") if reason_m else UNSPECIFIED
        location = fields.get("location", "")
        if reason == UNSPECIFIED and not self.keep_unspecified and not in_bridge_code(location):
            return None
        if drop_reason_is_noise(reason):
            return None
        hop = None
        seen = self._received.get(fields.get("skbaddr", ""))
        if seen is not None and seen[2] == m.group("cpu") and 0 <= ts - seen[1] <= _TIE_WINDOW:
            hop = seen[0]
        return DropEvent(
            reason=reason,
            location=location,
            time=ts + offset if offset is not None else None,
            hop=hop,
            protocol=f"0x{proto:04x}" if proto is not None else None,
        )

    def _remember(self, fields: dict[str, str], ts: float, cpu: str) -> None:
        dev, addr = fields.get("dev"), fields.get("skbaddr")
        if not dev or not addr or (self.hops and dev not in self.hops):
            return
        self._received[addr] = (dev, ts, cpu)
        self._received.move_to_end(addr)
        while len(self._received) > 8192:
            self._received.popitem(last=False)


def parse_trace_lines(text: str, *, offset: float | None = None, keep_unspecified: bool = False,
                      hops: Iterable[str] = ()) -> list[DropEvent]:
    """Drop events from recorded trace/trace_pipe text (times shifted by `offset` when given)."""
    return TraceParser(keep_unspecified=keep_unspecified, hops=hops).feed(text.splitlines(), offset)


# ---------------------------------------------------------------- the event format
def parse_format(text: str) -> tuple[set[str], dict[str, int]]:
    """(field names, reason name -> number) from an event's `format` file."""
    fields = set(re.findall(r"field:[^;]*?(\w+)(?:\[\d*\])?;", text))
    symbols = {m.group("name"): int(m.group("n")) for m in _SYMBOLS.finditer(text)}
    return fields, symbols


def kfree_skb_filters(fields: set[str], symbols: dict[str, int],
                      functions: Iterable[str] = BRIDGE_DROP_FUNCTIONS) -> list[str]:
    """Filters to try on skb:kfree_skb, most selective first; the last one is no filter."""
    out = []
    proto = ("(protocol == 2048 || protocol == 2054)" if "protocol" in fields else "")
    unspec = symbols.get(UNSPECIFIED)
    funcs = list(functions)
    if proto and "reason" in fields and "location" in fields and unspec is not None and funcs:
        # the trailing space before ")" matters: the parser would take ")" as part of the symbol
        keep = "|| ".join(f"location.function == {f} " for f in funcs)
        quiet = "".join(f" && reason != {n}" for name, n in sorted(symbols.items()) if drop_reason_is_noise(name))
        out.append(f"{proto} && (reason != {unspec} || {keep}){quiet}")
    if proto:
        out.append(proto)
    out.append("0")
    return out


def receive_filter(hops: Iterable[str]) -> str | None:
    """netif_receive_skb filter for the path's interfaces (None when no usable names)."""
    names = [h for h in dict.fromkeys(hops) if h and '"' not in h and "\\" not in h][:64]
    if not names:
        return None
    by_name = " || ".join(f'name == "{n}"' for n in names)
    return f"len <= {RECEIVE_MAX_LEN} && ({by_name})"


def _present_functions(functions: Iterable[str]) -> list[str]:
    """The functions that exist in this kernel (a missing one makes the filter invalid).

    One regex pass over /proc/kallsyms as bytes (5 MB, ~120k symbols): a line-by-line split cost
    50-80 ms of every trace's start-up here, where br_handle_vlan is always missing (no bridge
    VLAN filtering in this kernel).
    """
    wanted = list(functions)
    if not wanted:
        return []
    try:
        with open("/proc/kallsyms", "rb") as f:
            data = f.read()
    except OSError:
        return []
    names = b"|".join(re.escape(name.encode()) for name in wanted)
    found = {m.group(1).decode() for m in re.finditer(rb" [tTwW] (" + names + rb")(?:\t\S+)?$", data, re.M)}
    return [f for f in wanted if f in found]


# ---------------------------------------------------------------- the live tracer
class DropTracer:
    """skb:kfree_skb drops of IPv4/ARP frames, read without touching the host's tracing state.

    ``with DropTracer(hops=["e1-g0", "e1-up"]) as t: ... t.read_new()``. Every problem (no tracefs,
    not root, no skb events) ends up in `notes` and leaves `available` False; `read_new()` then
    returns nothing. `__exit__` disables and removes the instance and unmounts what it mounted,
    whatever happened inside the block. start() may be called again after stop().
    """

    def __init__(self, hops: Iterable[str] = (), *, keep_unspecified: bool = False,
                 buffer_kb: int = BUFFER_KB) -> None:
        self.hops = [h for h in dict.fromkeys(hops) if h]
        self.keep_unspecified = keep_unspecified
        self.buffer_kb = buffer_kb
        self.notes: list[str] = []
        self.filter: str | None = None
        """The kfree_skb filter the kernel accepted (for the report)."""
        self.clock: str | None = None
        self._instance: tracefs.Instance | None = None
        self._acquired = False
        self._fd: int | None = None
        self._parser = TraceParser(keep_unspecified=keep_unspecified, hops=self.hops)
        self._partial = ""
        self._lost_reported = 0

    @property
    def available(self) -> bool:
        return self._fd is not None

    @property
    def instance_path(self) -> str | None:
        return str(self._instance.path) if self._instance else None

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def start(self) -> None:
        if self._acquired:
            return
        try:
            self._start()
        except tracefs.TracefsUnavailable as exc:
            self._note(str(exc))
            self.stop()
        except OSError as exc:
            self._note(f"kernel drops not traced: {exc.strerror or exc} ({getattr(exc, 'filename', '')})")
            self.stop()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        root = tracefs.acquire(self.notes)
        self._acquired = True
        tracefs.remove_stale_instances(root, self.notes)
        self._instance = inst = tracefs.Instance(root)
        if not inst.file("events/skb/kfree_skb").is_dir():
            raise tracefs.TracefsUnavailable("kernel drops not traced: this kernel has no skb:kfree_skb event")
        try:
            inst.write("trace_clock", "mono")
            self.clock = "mono"
        except OSError:
            self.clock = "local"
            self._note("kernel drops: trace clock 'mono' unavailable; times use 'local' (close to monotonic)")
        try:
            inst.write("buffer_size_kb", str(self.buffer_kb))
        except OSError:
            pass  # the default size works too
        fields, symbols = parse_format(inst.read("events/skb/kfree_skb/format"))
        if "reason" not in fields:
            self._note("kernel drops: this kernel's kfree_skb has no drop reason (before 5.17); "
                       "reasons show as NOT_SPECIFIED")
        self.filter = self._set_filter(inst, fields, symbols)
        rx = receive_filter(self.hops)
        if rx and inst.file("events/net/netif_receive_skb").is_dir():
            try:
                inst.write("events/net/netif_receive_skb/filter", rx)
                inst.write("events/net/netif_receive_skb/enable", "1")
            except OSError:
                self._note("kernel drops: cannot follow receives, drops are not tied to hops")
        self._fd = os.open(inst.file("trace_pipe"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        inst.write("events/skb/kfree_skb/enable", "1")

    def _set_filter(self, inst: tracefs.Instance, fields: set[str], symbols: dict[str, int]) -> str | None:
        candidates = kfree_skb_filters(fields, symbols)
        first = True
        while candidates:
            flt = candidates.pop(0)
            try:
                inst.write("events/skb/kfree_skb/filter", flt)
            except OSError:
                if first and len(candidates) >= 2:
                    # the location.function form fails if one function is missing (bridge not
                    # loaded, renamed, inlined): retry naming only the functions kallsyms has
                    present = _present_functions(BRIDGE_DROP_FUNCTIONS)
                    if present and len(present) < len(BRIDGE_DROP_FUNCTIONS):
                        candidates.insert(0, kfree_skb_filters(fields, symbols, present)[0])
                first = False
                continue
            if "location.function" not in flt:
                self._note(f"kernel drops: this kernel refused the full filter; using {flt!r} "
                           "in the kernel and the rest in Python")
            return None if flt == "0" else flt
        return None

    def read_new(self) -> list[DropEvent]:
        """Drops traced since the last call (non-blocking)."""
        if self._fd is None:
            return []
        chunks = []
        total = 0
        while total < _READ_MAX:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                self._note(f"kernel drops: reading stopped ({exc.strerror or exc})")
                break
            if not data:
                break
            chunks.append(data)
            total += len(data)
        if not chunks:
            return []
        text = self._partial + b"".join(chunks).decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        events = self._parser.feed(lines, monotonic_to_epoch_offset())
        if self._parser.lost > self._lost_reported:
            self._lost_reported = self._parser.lost
            self._note(f"kernel drops: the trace buffer overflowed, {self._parser.lost} event(s) lost")
        return events

    def stop(self) -> None:
        """Disable, close, remove the instance, release the mount. Idempotent; never raises."""
        inst, self._instance = self._instance, None
        if inst is not None:
            for rel in ("events/skb/kfree_skb/enable", "events/net/netif_receive_skb/enable"):
                try:
                    inst.write(rel, "0")
                except OSError:
                    pass
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if inst is not None:
            inst.remove(self.notes)
        if self._acquired:
            self._acquired = False
            tracefs.release(self.notes)
        self._partial = ""

    def __enter__(self) -> DropTracer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def instance_dirs(root: str = tracefs.TRACEFS) -> list[str]:
    """Names of this tool's tracing instances currently present (for checks and tests)."""
    try:
        return sorted(p.name for p in (Path(root) / "instances").iterdir()
                      if p.name.startswith(tracefs.INSTANCE_PREFIX))
    except OSError:
        return []
