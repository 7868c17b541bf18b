"""Every name and address a lab uses, derived from the lab name alone.

Deriving instead of storing means two labs never clash (different names give different links,
namespaces and MACs), and `lab down` can find a lab's objects even when its state file was lost.
Addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking interconnect devices) and
live only inside the lab's namespaces: the host namespace never gets one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

SERVER_IP = "198.18.0.1"
PREFIX_LEN = 24
DHCP_RANGE = ("198.18.0.100", "198.18.0.199")
STATE_ROOT = "/run/tracepath-l2"


def _mac(prefix: str, lab: str, last: int) -> str:
    h = zlib.crc32(lab.encode())
    return f"{prefix}:{(h >> 8) & 0xFF:02x}:{h & 0xFF:02x}:{last:02x}"


@dataclass(frozen=True, slots=True)
class LabNames:
    """The kernel names of one lab (interface names stay within Linux's 15 characters)."""

    lab: str

    @property
    def bridge(self) -> str:
        return f"{self.lab}-br"

    @property
    def uplink(self) -> str:
        """Host end of the uplink veth: the bridge port that leads to the 'wire'."""
        return f"{self.lab}-up"

    @property
    def guest_port(self) -> str:
        """Host end of the namespace guest's veth."""
        return f"{self.lab}-g0"

    @property
    def upstream_ns(self) -> str:
        return f"tl2-{self.lab}-up"

    @property
    def guest_ns(self) -> str:
        return f"tl2-{self.lab}-guest"

    @property
    def nft_table(self) -> str:
        return f"tl2_{self.lab}"

    @property
    def run_dir(self) -> str:
        return f"{STATE_ROOT}/{self.lab}"

    @property
    def bridge_mac(self) -> str:
        return _mac("02:b0:00", self.lab, 0x01)

    @property
    def ns_guest_mac(self) -> str:
        return _mac("02:47:00", self.lab, 0x02)

    @property
    def upstream_mac(self) -> str:
        return _mac("02:47:00", self.lab, 0xFE)
