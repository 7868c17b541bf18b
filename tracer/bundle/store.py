"""Writing a bundle at the end of a trace, and loading one back for replay.

Layout of BUNDLE/:
  manifest.json    format, version, tool version, target, protocol, window, hops, capture counters
  topology.json    the Path the trace used (hops with their kernel facts)
  capture.pcapng   one interface block per sniffed hop, direction flag on every packet
  evidence.jsonl   one JSON object a line: {"type": "fdb"|"kernel"|"drop"|"filter"|"filter_before"|
                   "capture"|"note", ...}
A bundle is written to a temporary directory and renamed into place, so a Ctrl-C never leaves
half a bundle that replays to a wrong verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from tracer import __version__
from tracer.bundle.pcapng import DIR_IN, DIR_OUT, Interface, Reader, Writer
from tracer.errors import BundleError
from tracer.model import (
    CaptureStats,
    DropEvent,
    Evidence,
    FdbEntry,
    FilterRule,
    KernelLine,
    Path,
)

FORMAT = "tracepath-l2-bundle"
VERSION = 1
FILES = ("manifest.json", "topology.json", "capture.pcapng", "evidence.jsonl")


@dataclass(frozen=True, slots=True)
class Packet:
    """A captured frame as the bundle stores it (the live RawFrame has the same fields)."""

    hop: str
    time: float
    outgoing: bool
    data: bytes


@dataclass
class Bundle:
    manifest: dict[str, Any]
    path: Path
    evidence: Evidence
    directory: FsPath

    @property
    def window(self) -> tuple[float, float]:
        start, end = self.manifest["window"]
        return float(start), float(end)

    @property
    def hops(self) -> list[str]:
        return list(self.manifest["hops"])

    def packets(self, problems: list[str]) -> Iterator[Packet]:
        """Stream the capture; anything skipped is appended to `problems`."""
        file = self.directory / "capture.pcapng"
        try:
            fh = open(file, "rb")  # noqa: SIM115 - closed when the generator ends
        except OSError as exc:
            raise BundleError(f"{file}: {exc.strerror}") from None
        with fh:
            reader = Reader(fh, name=str(file))
            for rec in reader:
                iface = reader.interfaces[rec.interface]
                yield Packet(iface.name, rec.time, rec.direction == DIR_OUT, rec.data)
            problems.extend(reader.problems)


def write(
    directory: str | os.PathLike[str],
    *,
    manifest: dict[str, Any],
    path: Path,
    packets: Iterable[Any],
    evidence: Evidence,
    hop_descriptions: dict[str, str],
) -> FsPath:
    """Write the bundle atomically; `packets` have hop, time, outgoing, data."""
    final = FsPath(directory)
    if final.exists() and any(final.iterdir()):
        raise BundleError(f"{final} exists and is not empty; choose a new directory for --record")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = FsPath(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        hops = list(manifest["hops"])
        with open(tmp / "capture.pcapng", "wb") as fh:
            writer = Writer(fh, [Interface(h, hop_descriptions.get(h, "")) for h in hops],
                            application=f"tracepath-l2 {__version__}")
            for p in packets:
                if p.hop in hops:
                    writer.write(p.hop, p.time, p.data, DIR_OUT if p.outgoing else DIR_IN)
        (tmp / "topology.json").write_text(json.dumps(path.to_dict(), indent=2))
        with open(tmp / "evidence.jsonl", "w") as fh:
            for line in _evidence_lines(evidence):
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        full = {"format": FORMAT, "version": VERSION, "tool": f"tracepath-l2 {__version__}", **manifest}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True))
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _evidence_lines(ev: Evidence) -> Iterator[dict[str, Any]]:
    for e in ev.fdb:
        yield {"type": "fdb", **e.to_dict()}
    for k in ev.kernel:
        yield {"type": "kernel", **k.to_dict()}
    for d in ev.drops:
        yield {"type": "drop", **d.to_dict()}
    for r in ev.filters_before:
        yield {"type": "filter_before", **r.to_dict()}
    for r in ev.filters:
        yield {"type": "filter", **r.to_dict()}
    for c in ev.capture:
        yield {"type": "capture", **c.to_dict()}
    for n in ev.notes:
        yield {"type": "note", "text": n}


def load(directory: str | os.PathLike[str]) -> Bundle:
    """Load and check a bundle; BundleError (exit 2) names the first thing wrong with it."""
    d = FsPath(directory)
    if not d.is_dir():
        raise BundleError(f"{d}: not a bundle directory")
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise BundleError(f"{d}: incomplete bundle, missing {', '.join(missing)}")
    manifest = _json(d / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{d}/manifest.json: not a {FORMAT} manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BundleError(f"{d}: bundle format version {version!r} is newer than this tool reads ({VERSION}); "
                          "upgrade tracepath-l2")
    for key in ("target", "protocol", "window", "hops"):
        if key not in manifest:
            raise BundleError(f"{d}/manifest.json: missing {key!r}")
    try:
        path = Path.from_dict(_json(d / "topology.json"))
        evidence = _load_evidence(d / "evidence.jsonl")
        window = [float(x) for x in manifest["window"]]
        if len(window) != 2 or manifest["protocol"] not in ("dhcp", "arp"):
            raise ValueError("window or protocol")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{d}: malformed bundle ({exc})") from None
    unknown = [h for h in manifest["hops"] if path.hop(h) is None]
    if unknown:
        raise BundleError(f"{d}: manifest hops {unknown} are not in topology.json (mismatched files?)")
    return Bundle(manifest, path, evidence, d)


def _json(file: FsPath) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{file}: unreadable JSON ({exc})") from None


def _load_evidence(file: FsPath) -> Evidence:
    kinds: dict[str, list[Any]] = {k: [] for k in ("fdb", "kernel", "drop", "filter", "filter_before",
                                                    "capture", "note")}
    builders = {"fdb": FdbEntry.from_dict, "kernel": KernelLine.from_dict, "drop": DropEvent.from_dict,
                "filter": FilterRule.from_dict, "filter_before": FilterRule.from_dict,
                "capture": lambda d: CaptureStats(d["hop"], int(d["packets"]), int(d["drops"])),
                "note": lambda d: str(d["text"])}
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: unreadable ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            kind = obj.pop("type")
            kinds[kind].append(builders[kind](obj))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"{file}:{n}: malformed evidence line ({exc})") from None
    return Evidence(fdb=tuple(kinds["fdb"]), kernel=tuple(kinds["kernel"]), drops=tuple(kinds["drop"]),
                    filters=tuple(kinds["filter"]), filters_before=tuple(kinds["filter_before"]),
                    capture=tuple(kinds["capture"]), notes=tuple(kinds["note"]))
