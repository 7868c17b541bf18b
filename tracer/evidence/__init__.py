"""Kernel evidence gathered during the capture window, beside the frames.

Theory of operation
-------------------
Frames tell *where* DHCP or ARP stopped; the kernel tells *why*. While the sniffers run, this
package asks the kernel four questions, each through the interface the kernel offers for it:

- **Which port does the bridge believe the guest's MAC is behind?** (`fdb`): an AF_BRIDGE
  RTM_GETNEIGH dump, filtered to the bridge by the kernel (NDA_MASTER), sampled on every poll so a
  MAC that moves between ports (a loop) shows up as distinct samples.
- **What did the kernel log meanwhile?** (`kmsg`): /dev/kmsg read from its end, so only lines
  logged during the window count (own-address warnings, STP port state changes).
- **Which frames did the kernel free, where, and why?** (`drops`): the `skb:kfree_skb` tracepoint
  in a private tracefs instance, so the host's global tracing state is never touched, with the
  drop reason and the dropping function, tied to the interface the frame came in on when the
  `net:netif_receive_skb` tracepoint lets us.
- **Which filter rules sit on the path, and did their counters grow?** (`filters`): nftables
  bridge/netdev rules, ebtables, iptables physdev rules (when br_netfilter hands bridged frames to
  iptables) and libvirt nwfilter bindings, read at the start and the end of the window.

`collect.EvidenceCollector` ties them into one `tracer.model.Evidence`. Nothing here raises
because a source is missing: an absent tool, an unmounted tracefs or a missing privilege becomes a
sentence in `Evidence.notes`, because partial evidence is still evidence. Nothing here changes the
host either: tracefs is mounted only when it was not, and unmounted again; the tracing instance is
removed; filters and the FDB are only read.

Times are epoch seconds, like packet timestamps: kernel clocks (the tracepoint's `mono` trace
clock, /dev/kmsg's boot-relative stamps) are converted with the offset between CLOCK_REALTIME and
CLOCK_MONOTONIC read at conversion time.
"""

from __future__ import annotations

from tracer.evidence.collect import EvidenceCollector
from tracer.evidence.drops import DropTracer, parse_trace_lines
from tracer.evidence.fdb import parse_brctl_showmacs, parse_bridge_fdb_show, read_fdb
from tracer.evidence.filters import read_filters
from tracer.evidence.kmsg import KmsgReader, own_address, parse_dmesg, port_state_change

__all__ = [
    "DropTracer",
    "EvidenceCollector",
    "KmsgReader",
    "own_address",
    "parse_bridge_fdb_show",
    "parse_brctl_showmacs",
    "parse_dmesg",
    "parse_trace_lines",
    "port_state_change",
    "read_fdb",
    "read_filters",
]
