"""The address a bridge had before its MAC floated: read back from its IPv6 link-local address.

An unpinned bridge's MAC follows its lowest port MAC (the host-freeze seed), and the kernel keeps
no history of it. But when the bridge came up, IPv6 gave it a link-local address derived from the
MAC it had then (EUI-64: fe80::XXXX:XXff:feXX:XXXX, with the universal/local bit flipped), and the
kernel does not regenerate that address when the MAC changes later. A link-local that spells
another MAC than the current one is the kernel's own record that the bridge's address moved.
Only EUI-64 link-locals count (addr_gen_mode 0); stable-privacy or random ones spell no MAC.
"""

from __future__ import annotations

import ipaddress
import json

from tracer.hosttools import run_tool


def mac_from_eui64(address: str) -> str | None:
    """The MAC an EUI-64 IPv6 interface identifier was made from; None when it is not EUI-64."""
    try:
        ip = ipaddress.IPv6Address(address.split("/")[0].split("%")[0])
    except ValueError:
        return None
    iid = ip.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    return bytes([iid[0] ^ 0x02, *iid[1:3], *iid[5:8]]).hex(":")


def earlier_mac(bridge: str, current: str | None, netns: str | None = None) -> tuple[str, str] | None:
    """(the MAC the bridge came up with, the evidence line) when it differs from `current`."""
    if not current:
        return None
    argv = ["ip", *(["-n", netns] if netns else []), "-6", "-j", "addr", "show", "dev", bridge, "scope", "link"]
    res = run_tool(argv, timeout=5)
    if not res.ok:
        return None
    try:
        data = json.loads(res.stdout or "[]")
    except ValueError:
        return None
    for item in data if isinstance(data, list) else []:
        for addr in item.get("addr_info", ()) if isinstance(item, dict) else ():
            local = addr.get("local") if isinstance(addr, dict) else None
            mac = mac_from_eui64(local) if isinstance(local, str) else None
            if mac and mac != current.lower():
                return mac, (f"{bridge}'s IPv6 link-local {local} was derived (EUI-64) from {mac}, the MAC it had "
                             f"when it came up; it is {current.lower()} now")
    return None
