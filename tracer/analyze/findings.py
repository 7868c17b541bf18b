"""The diagnostic rules: each turns evidence into a Finding a senior engineer would accept.

Each rule's docstring states the kernel behaviour behind it; that knowledge is the product.
Rules are pure functions of the Path, the Evidence and (for traffic-based rules) where the frames
stopped, so live and replayed runs give the same findings.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.analyze.hops import bridges, guest_port, port_towards_guest
from tracer.analyze.kernel_lines import own_address, port_state
from tracer.model import Evidence, FdbEntry, FilterRule, Finding, Path, Role, Severity

BLOCKING_PORT_STATES = {"blocking", "listening", "learning", "disabled"}


@dataclass(frozen=True, slots=True)
class Stop:
    """Where a frame of the guest's exchange stopped, as the correlation found it."""

    label: str
    """'OFFER xid 0x3903f326'."""
    key: str
    """The exchange's correlation key ('xid 0x3903f326')."""
    travel: str
    last_seen: str
    missing: str
    time: float


def fdb_mismatch(path: Path, evidence: Evidence, stop: Stop | None) -> list[Finding]:
    """The bridge's FDB says the guest's MAC lives behind another port.

    A Linux bridge forwards a unicast frame only to the port its FDB holds for the destination
    MAC, and never back out of the port it came in on. When the guest's MAC is learned (or pinned)
    on the uplink, replies addressed to the guest arrive on the uplink and are dropped right there
    (br_handle_frame_finish): the guest never sees its OFFER. Learned entries get there when a loop
    or a duplicate MAC sends the guest's frames back in from the wire; static/sticky ones, when
    someone or something added them.
    """
    port = guest_port(path)
    mac = (path.guest.mac or "").lower()
    if not port or not mac:
        return []
    names = {b.name for b in bridges(path)}
    towards = port_towards_guest(path)

    def expected(e: FdbEntry) -> str:
        return towards.get(e.bridge or "", port.name)

    wrong = [e for e in evidence.fdb if e.mac.lower() == mac and e.port != expected(e)
             and (not names or e.bridge in names) and not e.local]
    if not wrong:
        return []
    entry = _latest(wrong)
    want = expected(entry)
    right = [e for e in evidence.fdb if e.mac.lower() == mac and e.port == want]
    ev = [f"bridge fdb: {_fdb_text(entry)}"]
    if right:
        ev.append(f"bridge fdb (also seen): {_fdb_text(_latest(right))}")
    if stop and stop.missing in (port.name, want):
        ev.append(f"{stop.label} reached {stop.last_seen} but not {stop.missing}")
    pinned = "static" in entry.flags or "sticky" in entry.flags
    how = ("a static/sticky entry someone added, so it will not move back by itself" if pinned
           else "a learned entry: the guest's own frames came back in from the wire (a loop, or another "
                "host using the same MAC)")
    return [Finding(
        code="fdb-mismatch",
        severity=Severity.ERROR if (stop is None or stop.missing in (port.name, want)) else Severity.WARNING,
        hop=entry.port,
        evidence=tuple(ev),
        explanation=(
            f"The bridge {entry.bridge} believes {mac} is behind {entry.port}, but the guest is "
            f"{'on' if want == port.name else 'behind'} {want}. Frames addressed to the guest come in on "
            f"{entry.port} and the bridge will not send a frame back out of the port it arrived on, so it "
            f"drops them: replies never reach the guest. The entry is {how}."
        ),
        fix=(f"bridge fdb del {mac} dev {entry.port} master" +
             ("" if pinned else f"   # then find why {mac} is seen behind {entry.port} (loop? duplicate MAC?)")),
    )]


def own_address_loop(path: Path, evidence: Evidence) -> list[Finding]:
    """The kernel saw the bridge's own MAC come back in from a port: there is an L2 loop.

    A bridge holds its own addresses as local FDB entries; a frame arriving from outside with one
    of them as source can only be the host's own frame reflected back (a mis-cabled LAG, a bond in
    the wrong mode, two uplinks into one segment without STP). The same loop brings the guests'
    broadcasts back too, which moves their MACs to the uplink in the FDB.
    """
    names = {h.name for h in path.hops}
    hits = [(line, parsed) for line in evidence.kernel if (parsed := own_address(line.text))
            and (parsed.bridge in names or parsed.port in names)]
    if not hits:
        return []
    line, parsed = hits[-1]
    ev = [f"kernel: {line.text.strip()}"]
    if len(hits) > 1:
        ev.append(f"{len(hits)} such kernel lines during the trace")
    return [Finding(
        code="own-address-loop",
        severity=Severity.ERROR,
        hop=parsed.port,
        evidence=tuple(ev),
        explanation=(
            f"Frames carrying {parsed.bridge}'s own MAC as source came back in on {parsed.port}. Only a "
            f"loop beyond {parsed.port} does that. The loop also reflects the guests' broadcasts, so the "
            f"bridge learns their MACs on {parsed.port} and sends their replies there instead of to them."
        ),
        fix=(f"check what is beyond {parsed.port} for a loop (switch LAG/port-channel cabling, bond mode vs. "
             f"switch config); meanwhile `ip link set {parsed.bridge} type bridge stp_state 1` stops the loop"),
    )]


def kernel_drops(path: Path, evidence: Evidence, stop: Stop | None) -> list[Finding]:
    """The kernel freed a frame with a drop reason (tracepoint skb:kfree_skb).

    Drop reasons say who decided: NETFILTER_DROP a filter rule, BRIDGE_INGRESS_STP_STATE a port
    that STP does not let forward, LOCAL_MAC... Only drops while the exchange was stopped count, so
    unrelated noise on a busy host does not become a finding.
    """
    if stop is None:
        return []  # a host drops plenty on a good day; only drops that explain a stop are evidence
    drops = [d for d in evidence.drops if d.explains_a_stop]
    near = [d for d in drops if d.time is None or abs(d.time - stop.time) <= 2.0]
    drops = near or drops
    if not drops:
        return []
    by_reason: dict[tuple[str, str], int] = {}
    for d in drops:
        key = (d.reason, d.location.split("+")[0])
        by_reason[key] = by_reason.get(key, 0) + 1
    (reason, where), n = max(by_reason.items(), key=lambda kv: kv[1])
    sample = next(d for d in drops if d.reason == reason)
    return [Finding(
        code="kernel-drop",
        severity=Severity.ERROR,
        hop=sample.hop or stop.missing,
        evidence=tuple(f"kfree_skb: reason {r} in {w} x{c}" for (r, w), c in by_reason.items()),
        explanation=(f"The kernel dropped {n} frame(s) with reason {reason} in {where}. "
                     + _DROP_MEANING.get(reason, "The reason names the kernel check that refused the frame.")),
        fix=_DROP_FIX.get(reason, f"look at what {where} checks for this path"),
    )]


_DROP_MEANING = {
    "NOT_SPECIFIED": "On a bridge function this is the forwarding decision itself: the FDB pointed the "
                     "destination back at the port the frame came in on (or nowhere), so the bridge freed it.",
    "NETFILTER_DROP": "A netfilter rule (nftables, ebtables or iptables with br_netfilter) decided to drop it.",
    "BRIDGE_INGRESS_STP_STATE": "The port it arrived on is not forwarding (STP blocking/listening/learning).",
    "LOCAL_MAC": "Its source MAC is one of the bridge's own: a reflected frame.",
}
_DROP_FIX = {
    "NOT_SPECIFIED": "bridge fdb show br BRIDGE | grep -i GUEST_MAC   # which port does the FDB name?",
    "NETFILTER_DROP": "nft list ruleset; ebtables -L; iptables -S | grep physdev   # find the rule, then delete it",
    "BRIDGE_INGRESS_STP_STATE": "bridge link show   # find the blocking port; fix the loop STP is breaking",
    "LOCAL_MAC": "find the loop that reflects the host's frames",
}


def filter_drops(path: Path, evidence: Evidence) -> list[Finding]:
    """Dropping filter rules on this path: proof when their counter grew while we watched.

    Counters are read at the start and end of the window: a drop rule that counted packets during
    the trace is proof, not a guess. Rules that name a hop of this path or the guest's MAC are
    reported even without counters (that is all `check`, which waits for nothing, can say). The
    rules of one hop and one firewall make one finding: libvirt's nwfilter or neutron put several
    DROPs in a per-port chain, and the operator fixes them in one place, which the finding names.
    """
    before = {(r.source, r.family, r.table, r.chain, r.rule): r.packets for r in evidence.filters_before}
    names = {h.name for h in path.hops}
    mac = (path.guest.mac or "").lower()
    nwfilter = {r.hop: r.table for r in evidence.filters if r.source == "nwfilter" and r.hop}
    groups: dict[tuple[str | None, ...], list[tuple[FilterRule, int]]] = {}
    for r in evidence.filters:
        if r.source == "nwfilter" or not any(w in r.rule.lower() for w in ("drop", "reject")):
            continue
        delta = (r.packets or 0) - (before.get((r.source, r.family, r.table, r.chain, r.rule)) or 0)
        grew = r.packets is not None and delta > 0
        if not grew and not (r.hop and r.hop in names) and not (mac and mac in r.rule.lower()):
            continue
        key = (r.hop, r.source) if r.hop else (None, r.source, r.table, r.chain, r.rule)
        groups.setdefault(key, []).append((r, delta if grew else 0))
    out = []
    for items in groups.values():
        items.sort(key=lambda it: -it[1])
        first, grew = items[0][0], any(d for _, d in items)
        ev = [f"{r.source} {r.family or ''} table {r.table} chain {r.chain}: {r.rule}".replace("  ", " ")
              + (f" (its counter grew by {d} packet(s) during the trace)" if d else "") for r, d in items]
        owner = nwfilter.get(first.hop) if first.source != "nft" else None
        if owner:
            ev.append(f"libvirt nwfilter {owner} is bound to {first.hop}: libvirt wrote these rules and writes them "
                      "again whenever the domain starts")
        many = len(items) > 1
        what = (f"The rules libvirt's nwfilter {owner} wrote" if owner
                else f"These {first.source} rules" if many else f"This {first.source} rule")
        verb = "drop" if owner or many else "drops"
        out.append(Finding(
            code="filter-drop",
            severity=Severity.ERROR if grew else Severity.WARNING,
            hop=first.hop,
            evidence=tuple(ev),
            explanation=(f"{what} (table {first.table}, chain {first.chain}) {verb} frames on this path"
                         + (" and dropped some while we traced." if grew else ".")),
            fix=(f"virsh nwfilter-dumpxml {owner}   # then fix the filter (virsh nwfilter-edit {owner}) or remove the "
                 "<filterref> from the guest's interface (virsh edit DOMAIN); a rule deleted by hand comes back"
                 if owner else _filter_fix(first.source, first.family, first.table, first.chain)),
        ))
    return out


def _filter_fix(source: str, family: str | None, table: str, chain: str) -> str:
    if source == "nft":
        return f"nft -a list chain {family} {table} {chain}   # then: nft delete rule {family} {table} {chain} handle N"
    if source == "ebtables":
        return f"ebtables -t {table} -L {chain} --Ln   # then: ebtables -t {table} -D {chain} N"
    if source == "nwfilter":
        return "virsh nwfilter-dumpxml " + table + "   # the filter libvirt attached to the guest's interface"
    return f"iptables -t {table} -S {chain} | grep physdev   # then delete the rule"


def upstream_no_reply(path: Path, stop: Stop | None) -> list[Finding]:
    """Requests leave the host's last hop and no reply ever comes back.

    Nothing on this host drops them: whatever is beyond the uplink does (no server, a server that
    ignores this client, or port security that drops frames from MACs it does not know, as a cloud
    network does for containers bridged onto a VM's NIC).
    """
    if stop is None or stop.missing != "upstream":
        return []
    return [Finding(
        code="upstream-no-reply",
        severity=Severity.ERROR,
        hop=stop.last_seen,
        evidence=(f"{stop.label} left {stop.last_seen}; no reply came back within the grace period",),
        explanation=(f"The request crossed every hop of this host and left through {stop.last_seen}; nothing "
                     "answered. The problem is beyond this host: the server is down or does not serve this "
                     "client, or the network beyond drops frames from a MAC it does not know (cloud port "
                     "security)."),
        fix=(f"tcpdump -eni {stop.last_seen} 'udp port 67 or udp port 68 or arp'   # confirm, then check the "
             "server, and on OpenStack allowed-address-pairs (or a port per guest) for this MAC"),
    )]


def link_down(path: Path) -> list[Finding]:
    """A hop that is administratively down, has no carrier, or whose lower layer is down.

    A down interface neither sends nor receives: every frame stops at it. LOWERLAYERDOWN on a veth
    or tap means its other end (the guest side, or the peer namespace) is down.
    """
    out = []
    for h in path.hops:
        if h.role is Role.UPSTREAM or h.details.get("absent"):
            continue
        problem = None
        if h.admin_up is False:
            problem = "administratively down"
        elif h.state in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT") or h.carrier is False:
            problem = f"operstate {h.state or 'DOWN'}" + (", no carrier" if h.carrier is False else "")
        if problem:
            out.append(Finding(
                code="link-down", severity=Severity.ERROR, hop=h.name,
                evidence=(f"{h.name}: {problem}",),
                explanation=f"{h.name} ({h.role}) is {problem}; no frame crosses a link that is down.",
                fix=(f"ip link set {h.name} up" if h.admin_up is False
                     else f"ip link show {h.name}   # bring its other end (guest or peer) up"),
            ))
    return out


def stp_blocking(path: Path, evidence: Evidence) -> list[Finding]:
    """A bridge port on the path that STP does not let forward.

    Ports in blocking/listening/learning drop everything but BPDUs; a port STP blocked because it
    sees a loop stays that way, and ports of a bridge with a long forward_delay spend that long in
    listening/learning after they come up.
    """
    out = []
    for h in path.hops:
        if h.port_state and h.port_state.lower() in BLOCKING_PORT_STATES:
            lines = [k.text for k in evidence.kernel if (p := port_state(k.text)) and p.port == h.name]
            out.append(Finding(
                code="stp-blocking", severity=Severity.ERROR, hop=h.name,
                evidence=(f"{h.name}: bridge port state {h.port_state}", *lines[-2:]),
                explanation=f"{h.name} is a bridge port in state {h.port_state}: it does not forward frames.",
                fix=f"bridge link show dev {h.name}; ip -d link show {h.master or 'BRIDGE'}   # STP, forward_delay",
            ))
    return out


def not_attached(path: Path) -> list[Finding]:
    """The guest's host-side port is in no bridge (or not the one its configuration names).

    A tap or veth that lost its master (a bridge recreated under it, a failed plug) still shows
    the guest's frames, which then go nowhere.
    """
    port = guest_port(path)
    if port is None or port.kind in ("macvlan", "macvtap", "ipvlan"):
        return []
    if path.guest.details.get("nic_type") in ("macvlan", "vlan", "phys", "physical", "direct", "hostdev"):
        return []  # their `link` is a lower device, not a bridge to be a port of
    want = path.guest.details.get("expected_bridge")
    if port.master and want and port.master != want:
        return [Finding(
            code="not-attached", severity=Severity.ERROR, hop=port.name,
            evidence=(f"{port.name} is a port of {port.master}; the configuration names {want}",),
            explanation=(f"The guest's port {port.name} is plugged into {port.master}, not {want} as its "
                         f"configuration says: its frames reach {port.master}'s network, where nothing expects "
                         "them (a bridge recreated and the port re-plugged by hand, or a config edited while "
                         "the guest ran)."),
            fix=f"ip link set {port.name} master {want}",
        )]
    if port.master:
        return []
    if not any(h.role is Role.BRIDGE for h in path.hops) and want is None:
        return []
    want = want or "its bridge"
    return [Finding(
        code="not-attached", severity=Severity.ERROR, hop=port.name,
        evidence=(f"{port.name} has no master; the configuration names {want}",),
        explanation=f"The guest's port {port.name} is not a port of any bridge, so its frames go nowhere.",
        fix=f"ip link set {port.name} master {want if want != 'its bridge' else 'BRIDGE'}",
    )]


def mtu_mismatch(path: Path) -> list[Finding]:
    """Hops with different MTUs: large frames die silently at the smaller one.

    DHCP and ARP frames are small and pass, but the guest's later traffic will not: worth saying
    while we look at the path.
    """
    mtus = {h.name: h.mtu for h in path.hops if h.mtu and h.role not in (Role.GUEST, Role.UPSTREAM)}
    if len(set(mtus.values())) <= 1:
        return []
    # A bridge's MTU follows its smallest port, so blame a port (uplink first), never the bridge.
    ports = {h.name: h.mtu for h in reversed(path.hops) if h.name in mtus and h.role is not Role.BRIDGE}
    low = min(ports or mtus, key=lambda n: (ports or mtus)[n])
    return [Finding(
        code="mtu-mismatch", severity=Severity.WARNING, hop=low,
        evidence=tuple(f"{n}: mtu {m}" for n, m in mtus.items()),
        explanation=(f"{low} has MTU {mtus[low]}, smaller than other hops on the path; frames larger than that "
                     "are dropped there (DHCP and ARP are small and pass)."),
        fix=f"ip link set {low} mtu {max(mtus.values())}   # or lower the guest's MTU to match",
    )]


def static_findings(path: Path, evidence: Evidence) -> list[Finding]:
    """Findings that need no traffic: the path's own state."""
    return [*link_down(path), *not_attached(path), *stp_blocking(path, evidence), *mtu_mismatch(path)]


def _latest(entries: list[FdbEntry]) -> FdbEntry:
    return max(entries, key=lambda e: e.time or 0.0)


def _fdb_text(e: FdbEntry) -> str:
    vlan = f" vlan {e.vlan}" if e.vlan else ""
    age = f" (age {e.age:.1f}s)" if e.age is not None else ""
    flags = " ".join(f for f in e.flags if f != "master")
    return f"{e.mac} dev {e.port}{vlan} master {e.bridge} {flags}".rstrip() + age

