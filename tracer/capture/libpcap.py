"""Plain capture files read through libpcap, with the DHCP/ARP filter run in C.

`replay --hop NAME=FILE` takes an operator's own tcpdump files, which can hold millions of packets
of which a handful are DHCP or ARP. Reading every record in Python (tracer.bundle.pcapng) costs
about 3 us a packet; libpcap reads the file and runs the compiled BPF filter on each record in C,
so Python sees only the frames that pass, and the replay runs at close to tcpdump's own speed. The
filter is bpf.OFFLINE_EXPRESSION, the expression the kernel filter and the struct pre-check
(dissect.is_dhcp_or_arp) implement, so the three agree on which frames count.

The bindings are scapy's (scapy.libs.winpcapy: ctypes over the system libpcap, which tcpdump
installs). Where libpcap is missing, or cannot open a file, `open_filtered` returns None and the
caller falls back to the Python reader, which also gives the one-line errors for garbage files.
libpcap does not count what its filter rejected, so this path knows only the matching frames.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

BATCH = 4096
"""Matching frames handed over per pcap_dispatch call: memory stays bounded by a batch."""
PCAP_NETMASK_UNKNOWN = -1  # 0xffffffff as the C int the binding declares


def _lib() -> Any | None:
    try:
        from scapy.libs import winpcapy
    except (ImportError, OSError):
        return None
    return winpcapy


class Filtered:
    """One open capture file with a compiled filter; iterate `frames()` once, then `close()`."""

    def __init__(self, lib: Any, handle: Any, file: str) -> None:
        self._lib, self._p, self.file = lib, handle, file
        self.linktype: int = lib.pcap_datalink(handle)
        self.error: str | None = None
        """Why reading stopped early (a truncated or damaged file): frames before it were read."""

    def frames(self) -> Iterator[tuple[float, bytes]]:
        """(epoch seconds, frame bytes) of every frame that passes the filter, in file order."""
        lib, batch = self._lib, []

        def take(_user: Any, hdr: Any, data: Any) -> None:
            h = hdr.contents
            batch.append((h.ts.tv_sec + h.ts.tv_usec * 1e-6, ctypes.string_at(data, h.caplen)))

        handler = lib.pcap_handler(take)
        while self._p:
            n = lib.pcap_dispatch(self._p, BATCH, handler, None)
            if batch:
                yield from batch
                batch.clear()
            if n < 0:
                self.error = (lib.pcap_geterr(self._p) or b"read error").decode(errors="replace")
                return
            if n == 0:
                return

    def close(self) -> None:
        if self._p:
            self._lib.pcap_close(self._p)
            self._p = None


def open_filtered(file: str, expression: str) -> Filtered | None:
    """The file opened by libpcap with `expression` compiled into it, or None to use the Python reader."""
    lib = _lib()
    if lib is None:
        return None
    err = ctypes.create_string_buffer(512)
    handle = lib.pcap_open_offline(file.encode(), err)
    if not handle:
        return None
    prog = lib.bpf_program()
    if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
        lib.pcap_close(handle)
        return None
    ok = lib.pcap_setfilter(handle, ctypes.byref(prog)) == 0
    lib.pcap_freecode(ctypes.byref(prog))
    if not ok:
        lib.pcap_close(handle)
        return None
    return Filtered(lib, handle, file)
