#!/usr/bin/env python3
"""Replay throughput and peak memory, side by side with tshark and tcpdump on the same files.

Writes two pcaps of mixed traffic (1% DHCP/ARP: a new xid per DISCOVER, 5000 client MACs; the rest
400-byte UDP) of N and N/10 packets,
then runs, each `--runs` times (median reported):
  tracepath-l2 replay --hop x=FILE --json
  tshark -r FILE -Y "dhcp or arp"
  tcpdump -n -r FILE "udp port 67 or udp port 68 or arp"
and prints packets/s, peak RSS (GNU time's %M) and the ratios the issue sets as targets.
Usage: bench/replay_vs_tshark.py [--packets 2000000] [--runs 3]   (writes bench/results/replay.json)
bench/run runs the same comparison (with these files) among all the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path


def frames() -> tuple[bytes, bytes, bytes]:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether

    mac = "02:47:00:00:00:02"
    dhcp = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("024700000002"), xid=0x1234)
                 / DHCP(options=[("message-type", "discover"), "end"]))
    arp = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="198.18.0.148", pdst="198.18.0.1", hwsrc=mac))
    other = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.18.0.50", dst="198.18.0.1")
                  / UDP(sport=5000, dport=5201) / (b"x" * 400))
    return dhcp, arp, other


def write_pcap(path: Path, n: int, clients: int = 5000) -> None:
    """Every 200th packet a DHCP DISCOVER with a new xid, the next an ARP request, from one of
    `clients` MACs in turn (so neither a cache of frames nor of exchanges gets a free ride); the
    rest 400-byte UDP between two other hosts."""
    dhcp, arp, other = frames()
    rec = struct.Struct("<IIII")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            if i % 200 in (0, 1):
                k = i // 200
                mac = b"\x02\x47" + (k % clients).to_bytes(4, "big")
                d = bytearray(dhcp if i % 200 == 0 else arp)
                d[6:12] = mac
                if i % 200 == 0:
                    d[46:50] = (0x10000000 + k).to_bytes(4, "big")  # BOOTP xid
                    d[70:76] = mac  # chaddr
                else:
                    d[22:28] = mac  # ARP sender MAC
                    d[28:32] = bytes((198, 18, (k % clients) >> 8 & 0xFF, k % clients & 0xFF))  # sender IP
                d = bytes(d)
            else:
                d = other
            f.write(rec.pack(1_700_000_000 + i // 10_000, (i * 97) % 1_000_000, len(d), len(d)))
            f.write(d)


def measure(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of `argv` alone.

    wait4's ru_maxrss of a child forked from this process starts at this process's own RSS (vfork
    shares our memory until exec), so small tools would show our size; GNU time forks from a 2 MB
    process instead (bench/run does the same, with a fallback when /usr/bin/time is missing).
    """
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs GNU time (/usr/bin/time) for peak RSS; or run bench/run, which has a fallback")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-o", out.name, "-f", "%M", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        os.wait4(proc.pid, 0)
        return time.perf_counter() - start, int(Path(out.name).read_text().split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tools = {
        "tracepath-l2": lambda f: ["tracepath-l2", "replay", "--hop", f"x={f}", "--json"],
        "tshark": lambda f: ["tshark", "-r", str(f), "-Y", "dhcp or arp"],
        "tcpdump": lambda f: ["tcpdump", "-n", "-r", str(f), "udp port 67 or udp port 68 or arp"],
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.pcap", Path(tmp) / "small.pcap"
        write_pcap(big, args.packets)
        write_pcap(small, args.packets // 10)
        for name, cmd in tools.items():
            runs = [measure(cmd(big)) for _ in range(args.runs)]
            secs = statistics.median(r[0] for r in runs)
            small_rss = measure(cmd(small))[1]
            results[name] = {"seconds": round(secs, 3), "pps": round(args.packets / secs),
                             "peak_rss_kb": max(r[1] for r in runs), "peak_rss_small_kb": small_rss}
    ours, tshark, tcpdump = results["tracepath-l2"], results["tshark"], results["tcpdump"]
    summary = {
        "packets": args.packets, "runs": args.runs, "file_bytes_per_packet": 458,
        "results": results,
        "ratio_vs_tshark_pps": round(ours["pps"] / tshark["pps"], 2), "target_vs_tshark": ">= 2.0",
        "ratio_vs_tcpdump_time": round(ours["seconds"] / tcpdump["seconds"], 1), "target_vs_tcpdump": "<= 3.0",
        "memory_growth_10x_file": round(ours["peak_rss_kb"] / ours["peak_rss_small_kb"], 2),
        "target_memory_growth": "<= 1.2",
    }
    print(f"{'tool':<14}{'seconds':>10}{'packets/s':>12}{'peak RSS MB':>13}{'(N/10 file)':>13}")
    for name, r in results.items():
        print(f"{name:<14}{r['seconds']:>10}{r['pps']:>12}{r['peak_rss_kb'] / 1024:>13.0f}"
              f"{r['peak_rss_small_kb'] / 1024:>13.0f}")
    print(f"vs tshark: {summary['ratio_vs_tshark_pps']}x packets/s (target >= 2); vs tcpdump: "
          f"{summary['ratio_vs_tcpdump_time']}x the time (target <= 3); memory 10x file: "
          f"{summary['memory_growth_10x_file']}x (target <= 1.2)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "replay.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
