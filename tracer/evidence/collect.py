"""One object that gathers all kernel evidence for one capture window.

    with EvidenceCollector(bridges=["e1-br"], macs=[guest_mac], hops=["e1-g0", "e1-up"]) as ev:
        while capturing:
            ev.poll()          # every ~200 ms: new kernel lines, new drops, an FDB sample
    evidence = ev.finish()     # filters read again, so counters can be compared

`start()` reads the filters first (`filters_before`: the counters at the start of the window),
then opens /dev/kmsg at its end and starts the drop tracer, so nothing logged or dropped before
the window counts. `poll()` is cheap: one non-blocking read of each source and one netlink FDB
dump per bridge. FDB samples are kept only when an entry changes (port, flags, VLAN): a MAC moving
between ports during the window shows as its successive positions, each with the time it was seen.
`finish()` samples once more, reads the filters again (when there were any), stops everything
and returns the frozen Evidence; leaving the `with` block without `finish()` still stops everything.

`hops` are interface names in the host's namespace (the guest's port, the bridge, the uplink): the
drop tracer ties drops to them and the filter readers look for rules that name them.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from tracer.evidence.drops import DropTracer
from tracer.evidence.fdb import FdbSampler, normalize_mac
from tracer.evidence.filters import read_filters
from tracer.evidence.kmsg import KmsgReader
from tracer.model import DropEvent, Evidence, FdbEntry, FilterRule, KernelLine

KMSG_LOOKBACK = 120.0
"""Kernel lines from this long before the trace started count as evidence too."""


class EvidenceCollector:
    """Kernel evidence for one window: FDB samples, kernel log lines, drops and filter rules."""

    def __init__(
        self,
        bridges: Iterable[str],
        macs: Iterable[str],
        hops: Iterable[str] = (),
        *,
        netns: str | None = None,
        drops: bool = True,
        kmsg: bool = True,
        filters: bool = True,
    ) -> None:
        self.bridges = [b for b in dict.fromkeys(bridges) if b]
        self.macs = [normalize_mac(m) for m in dict.fromkeys(macs) if m]
        self.hops = [h for h in dict.fromkeys([*hops, *self.bridges]) if h]
        self.netns = netns
        self._want_drops, self._want_kmsg, self._want_filters = drops, kmsg, filters
        self._fdb: list[FdbEntry] = []
        self._last: dict[tuple[str, str, int | None], tuple[str, tuple[str, ...]]] = {}
        self._kernel: list[KernelLine] = []
        self._drops: list[DropEvent] = []
        self._before: list[FilterRule] = []
        self._notes: list[str] = []
        self._sampler: FdbSampler | None = None
        self._kmsg: KmsgReader | None = None
        self._tracer: DropTracer | None = None
        self._started = False
        self._result: Evidence | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            if self._want_filters:
                self._before = read_filters(self.hops, self._notes)
            self._sampler = FdbSampler(self.netns)
            if self._want_kmsg:
                self._kmsg = KmsgReader(lookback=KMSG_LOOKBACK)
                self._kmsg.open()
            if self._want_drops:
                self._tracer = DropTracer(self.hops)
                self._tracer.start()
            self._sample_fdb()
        except BaseException:
            self._close()
            raise

    def poll(self) -> None:
        """Gather what arrived since the last poll (non-blocking)."""
        if not self._started or self._result is not None:
            return
        if self._kmsg is not None:
            self._kernel.extend(self._kmsg.read_new())
        if self._tracer is not None:
            self._drops.extend(self._tracer.read_new())
        self._sample_fdb()

    def snapshot(self) -> Evidence:
        """What was gathered so far, without stopping anything (filters as read at the start).

        Lets a caller run the analysis mid-window and stop early once the verdict cannot change.
        """
        return Evidence(fdb=tuple(self._fdb), kernel=tuple(self._kernel), drops=tuple(self._drops),
                        filters=tuple(self._before), filters_before=tuple(self._before),
                        notes=tuple(self._live_notes()))

    def _live_notes(self) -> list[str]:
        notes = list(self._notes)
        for source in (self._tracer, self._kmsg, self._sampler):
            for note in getattr(source, "notes", []):
                if note not in notes:
                    notes.append(note)
        return notes

    def finish(self) -> Evidence:
        """Last poll, filters read again, everything stopped; the same Evidence on every call."""
        if self._result is not None:
            return self._result
        if not self._started:
            self.start()
        try:
            self.poll()
            # Read again only to compare counters: with no rule at the start there is nothing to
            # compare, and the second read (nft, ebtables, iptables, virsh) is most of finish().
            filters = read_filters(self.hops, self._notes) if self._want_filters and self._before else []
        finally:
            self._close()
        self._result = Evidence(
            fdb=tuple(self._fdb),
            kernel=tuple(self._kernel),
            drops=tuple(self._drops),
            filters=tuple(filters),
            filters_before=tuple(self._before),
            notes=tuple(self._notes),
        )
        return self._result

    def _close(self) -> None:
        for source in (self._tracer, self._kmsg, self._sampler):
            if source is None:
                continue
            try:
                if isinstance(source, DropTracer):
                    source.stop()
                else:
                    source.close()
            except Exception as exc:  # noqa: BLE001 - closing must reach every source
                self._notes.append(f"evidence: closing {type(source).__name__} failed ({exc})")
            for note in getattr(source, "notes", []):
                if note not in self._notes:
                    self._notes.append(note)
        self._tracer = self._kmsg = self._sampler = None

    def __enter__(self) -> EvidenceCollector:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    # ------------------------------------------------------------ FDB samples
    def _sample_fdb(self) -> None:
        if self._sampler is None or not self.macs:
            return
        for bridge in self.bridges:
            for entry in self._sampler.sample(bridge, self.macs):
                key = (entry.bridge, entry.mac, entry.vlan)
                state = (entry.port, entry.flags)
                if self._last.get(key) != state:
                    self._last[key] = state
                    self._fdb.append(entry)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)
