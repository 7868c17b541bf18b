"""Reading the kernel's own words: the log lines that explain L2 outages.

Pure text classifiers, shared by the live kmsg reader, saved-dmesg replay and the findings.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_OWN_ADDRESS = re.compile(
    r"(?P<bridge>\S+): received packet on (?P<port>\S+) with own address as source address"
    r"(?: \(addr:(?P<mac>[0-9a-fA-F:]{17}), vlan:(?P<vlan>\d+)\))?"
)
_PORT_STATE = re.compile(r"(?P<bridge>\S+): port (?P<no>\d+)\((?P<port>[^)]+)\) entered (?P<state>\w+) state")


class OwnAddress(NamedTuple):
    bridge: str
    port: str
    mac: str | None
    vlan: int | None


class PortState(NamedTuple):
    bridge: str
    port: str
    state: str


def own_address(line: str) -> OwnAddress | None:
    """The bridge got a frame whose *source* is one of its own addresses: something reflected it.

    The kernel (br_fdb_update) prints this when a frame arrives on a port with a source MAC the
    bridge holds as local. A physical loop upstream (the KVM seed's mis-cabled LAG) is the usual
    cause; older kernels print no "(addr:..., vlan:...)" tail.
    """
    m = _OWN_ADDRESS.search(line)
    if not m:
        return None
    vlan = m.group("vlan")
    return OwnAddress(m.group("bridge"), m.group("port"), m.group("mac"), int(vlan) if vlan else None)


def port_state(line: str) -> PortState | None:
    """STP (or admin) moved a bridge port: 'br0: port 2(vnet3) entered blocking state'."""
    m = _PORT_STATE.search(line)
    return PortState(m.group("bridge"), m.group("port"), m.group("state")) if m else None
