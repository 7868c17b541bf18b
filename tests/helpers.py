"""Small helpers for live tests: polling with a deadline and reading what the host has."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T | None:
    """Poll until `predicate` returns something truthy; None when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def count(path: str, pattern: str) -> int:
    return len(re.findall(pattern, read(path), flags=re.IGNORECASE))


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def host_residue(lab: str) -> list[str]:
    """Everything on the host that still carries the lab's name: must be empty after teardown."""
    found: list[str] = []
    found += [f"link {line.split()[0]}" for line in sh("ip", "-br", "link").splitlines()
              if line.split()[0].split("@")[0].startswith(f"{lab}-")]
    found += [f"netns {line.split()[0]}" for line in sh("ip", "netns", "list").splitlines()
              if line.startswith(f"tl2-{lab}-")]
    found += [f"nft {line}" for line in sh("nft", "list", "tables").splitlines() if f"tl2_{lab}" in line]
    found += [f"fdb {line}" for line in sh("bridge", "fdb", "show").splitlines() if f"dev {lab}-" in line]
    found += [f"iptables {line}" for line in sh("iptables-save").splitlines()
              if f" {lab}-" in line or f"lab {lab}" in line]
    found += [f"ebtables {line}" for line in sh("ebtables-save").splitlines() if f" {lab}-" in line]
    found += [f"process {line}" for line in sh("ps", "-eo", "pid,args").splitlines()
              if f"/run/tracepath-l2/{lab}/" in line or f"tl2-{lab}-" in line]
    found += [f"nwfilter {line}" for line in sh("virsh", "-q", "-c", "qemu:///system", "nwfilter-list").splitlines()
              if f"tl2-{lab}-" in line]
    found += [f"container {c}" for c in sh("lxc-ls", "-1").split() if c.startswith(f"tl2-{lab}-")]
    if Path(f"/run/tracepath-l2/{lab}").exists():
        found.append(f"dir /run/tracepath-l2/{lab}")
    if Path(f"/run/tracepath-l2/labs/{lab}.json").exists():
        found.append(f"state /run/tracepath-l2/labs/{lab}.json")
    return found
