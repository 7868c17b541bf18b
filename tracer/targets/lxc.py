"""LXC containers (`/var/lib/lxc/NAME/config`) as targets.

Theory of operation
-------------------
An LXC config is `key = value` lines; `#` starts a comment; `lxc.include` pulls in a file, or every
`*.conf` file of a directory (LXC's `do_includedir`), at that point. Network keys come in two
dialects:

* LXC >= 2.1: `lxc.net.N.KEY`, all keys with the same index N describe one NIC (`lxc.net.0.type`,
  `lxc.net.0.link`, `lxc.net.0.veth.pair`...). `lxc.net =` with no value clears every NIC.
* LXC 1.x/2.x (removed in 3.0, still on disk on old hosts, e.g. OpenStack-Ansible's per-interface
  `eno1.ini` includes of seed 000): `lxc.network.KEY`, where each `lxc.network.type` starts a new
  NIC and later keys apply to the last one. A key before any type is an error, as it was for LXC.
  LXC 2.1 also read an indexed `lxc.network.N.KEY` form, taken here like `lxc.net.N.KEY`.

Types: `veth` (a pair; the host end is named by `veth.pair`, else LXC picks `vethXXXXXX` at start and
only the running container's namespace can tell which one it is: the guest end's peer ifindex),
`macvlan` (`macvlan.mode`, default private), `ipvlan`, `vlan` (`vlan.id` on `link`), `phys` (`link`
itself moves into the container), `empty` (loopback only) and `none` (the host's own namespace).

A running container's init PID (`lxc-info -p`, or the child of its `[lxc monitor] LXCPATH NAME`
process) makes the guest side enterable as `pid:N`; `lxc-info` also prints the host end of every
veth as a `Link:` line, which names unnamed pairs directly.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import _host
from tracer.targets.base import Nic, Source, Target, normalize_mac, parse_int

DEFAULT_LXCPATH = "/var/lib/lxc"
LXCPATH_ENV = "TRACEPATH_L2_LXCPATH"
"""Extra container directories, separated by ':' (searched before `lxc-config lxc.lxcpath`)."""

NET_TYPES = ("veth", "macvlan", "ipvlan", "vlan", "phys", "empty", "none")
MAX_INCLUDE_DEPTH = 16
MAX_LINES = 100_000

_MODERN_RE = re.compile(r"^lxc\.net\.([^.]+)\.(.+)$")
_LEGACY_INDEXED_RE = re.compile(r"^lxc\.network\.(\d+)\.(.+)$")
_LEGACY_RE = re.compile(r"^lxc\.network\.(.+)$")
_HWADDR_TEMPLATE_RE = re.compile(r"^[0-9a-fx]{2}(:[0-9a-fx]{2}){5}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ConfigLine:
    key: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class ConfigText:
    """A config with its includes expanded, plus what could not be followed."""

    lines: list[ConfigLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class FileSystem(Protocol):
    def read_text(self, path: str) -> str: ...
    def is_dir(self, path: str) -> bool: ...
    def is_file(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def resolve(self, path: str) -> str: ...


class HostFileSystem:
    """The real filesystem; permission problems become PrivilegeError."""

    def read_text(self, path: str) -> str:
        return _host.read_file(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path)

    def listdir(self, path: str) -> list[str]:
        return _host.list_dir(path)

    def resolve(self, path: str) -> str:
        return os.path.realpath(path)


class DictFileSystem:
    """Files given as {path: text}, for tests and recorded samples; directories are implied."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = {posixpath.normpath(k): v for k, v in files.items()}

    def read_text(self, path: str) -> str:
        try:
            return self.files[posixpath.normpath(path)]
        except KeyError:
            raise FileNotFoundError(path) from None

    def is_dir(self, path: str) -> bool:
        prefix = posixpath.normpath(path).rstrip("/") + "/"
        return any(k.startswith(prefix) for k in self.files)

    def is_file(self, path: str) -> bool:
        return posixpath.normpath(path) in self.files

    def listdir(self, path: str) -> list[str]:
        prefix = posixpath.normpath(path).rstrip("/") + "/"
        return sorted({k[len(prefix):].split("/")[0] for k in self.files if k.startswith(prefix)})

    def resolve(self, path: str) -> str:
        return posixpath.normpath(path)


# ---------------------------------------------------------------- pure parsing
def split_config(text: str, *, origin: str) -> list[ConfigLine]:
    """`key = value` lines, comments and blank lines dropped; anything else is a TargetError."""
    if not isinstance(text, str):
        raise TargetError(f"{origin}: expected text")
    out: list[ConfigLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if number > MAX_LINES:
            raise TargetError(f"{origin}: more than {MAX_LINES} lines; not an LXC config")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\0" in line:
            raise TargetError(f"{origin}:{number}: NUL byte in an LXC config line")
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise TargetError(f"{origin}:{number}: not a 'key = value' line: {raw.strip()[:80]!r}")
        if not key.startswith("lxc."):
            raise TargetError(f"{origin}:{number}: unknown key {key!r} (LXC keys start with 'lxc.')")
        out.append(ConfigLine(key, value.strip(), origin, number))
    return out


def read_config(path: str, *, fs: FileSystem | None = None) -> ConfigText:
    """The config at `path` with every `lxc.include` expanded in place.

    A file that includes itself, directly or through others, is a TargetError naming the include
    line and the chain; a missing include is a note (LXC would refuse to start; the rest of the
    config still says what the operator meant). Relative include paths are taken from the including
    file's directory.
    """
    fs = fs or HostFileSystem()
    result = ConfigText()
    _read_into(path, fs=fs, result=result, stack=[], site=None)
    return result


def _read_into(path: str, *, fs: FileSystem, result: ConfigText, stack: list[str], site: ConfigLine | None) -> None:
    real = fs.resolve(path)
    if real in stack:
        chain = " -> ".join([*stack[stack.index(real):], real])
        where = site.where if site else path
        raise TargetError(f"{where}: lxc.include cycle: {chain}")
    if len(stack) >= MAX_INCLUDE_DEPTH:
        where = site.where if site else path
        raise TargetError(f"{where}: lxc.include nested deeper than {MAX_INCLUDE_DEPTH} files")
    try:
        text = fs.read_text(path)
    except PrivilegeError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        if site is None:
            raise TargetError(f"{path}: no such LXC config") from None
        result.notes.append(f"{site.where}: lxc.include {site.value} does not exist (LXC would refuse to start)")
        return
    except OSError as exc:
        where = site.where if site else path
        raise TargetError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    result.files.append(path)
    stack.append(real)
    try:
        for line in split_config(text, origin=path):
            if len(result.lines) >= MAX_LINES:
                raise TargetError(f"{line.where}: configuration expands to more than {MAX_LINES} lines")
            if line.key != "lxc.include":
                result.lines.append(line)
                continue
            if not line.value:
                continue
            target = line.value
            if not target.startswith("/"):
                target = posixpath.join(posixpath.dirname(path), target)
            if fs.is_dir(target):
                for entry in fs.listdir(target):
                    if len(entry) >= 6 and entry.endswith(".conf"):
                        _read_into(posixpath.join(target, entry), fs=fs, result=result, stack=stack, site=line)
            else:
                _read_into(target, fs=fs, result=result, stack=stack, site=line)
    finally:
        stack.pop()


@dataclass(slots=True)
class _NetDev:
    index_name: str
    legacy: bool
    keys: dict[str, ConfigLine] = field(default_factory=dict)
    multi: dict[str, list[ConfigLine]] = field(default_factory=dict)
    first: ConfigLine | None = None

    def get(self, *names: str) -> ConfigLine | None:
        for name in names:
            line = self.keys.get(name)
            if line is not None and line.value != "":
                return line
        return None

    def value(self, *names: str) -> str | None:
        line = self.get(*names)
        return line.value if line else None


_MULTI_KEYS = {"ipv4", "ipv4.address", "ipv6", "ipv6.address", "veth.vlan.tagged.id", "veth.ipv4.route",
               "veth.ipv6.route"}


def parse_lxc_config(
    lines: Sequence[ConfigLine],
    *,
    name: str,
    config_path: str | None = None,
    running: bool = False,
    init_pid: int | None = None,
    runtime_links: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Target:
    """A target from expanded config lines (see `read_config`/`split_config`).

    `runtime_links` are the `Link:` lines of `lxc-info` for a running container, in NIC order: the
    host end of each veth (and the link of other types), which names veths LXC named itself.
    """
    indexed: dict[int, _NetDev] = {}
    legacy: list[_NetDev] = []
    details: dict[str, Any] = {}
    target_notes = list(notes)
    saw_modern = saw_legacy = False
    for line in lines:
        key = line.key
        if key in ("lxc.net", "lxc.network"):
            if line.value == "":
                indexed.clear()
                legacy.clear()
            continue
        if key in ("lxc.uts.name", "lxc.utsname"):
            details["hostname"] = line.value.strip('"')
            continue
        if key in ("lxc.rootfs.path", "lxc.rootfs"):
            details["rootfs"] = line.value
            continue
        if m := _LEGACY_INDEXED_RE.match(key):
            saw_legacy = True
            _set(indexed, m.group(1), m.group(2), line, legacy_key=True)
            continue
        if m := _MODERN_RE.match(key):
            saw_modern = True
            _set(indexed, m.group(1), m.group(2), line, legacy_key=False)
            continue
        if key.startswith("lxc.net.") and key[len("lxc.net."):].isdigit():
            if line.value == "":
                indexed.pop(int(key[len("lxc.net."):]), None)
            continue
        if m := _LEGACY_RE.match(key):
            saw_legacy = True
            sub = m.group(1)
            if sub == "type":
                dev = _NetDev(index_name=f"network{len(legacy)}", legacy=True)
                legacy.append(dev)
            elif not legacy:
                raise TargetError(f"{line.where}: {key} before any lxc.network.type (LXC 1.x/2.x starts "
                                  "a NIC with lxc.network.type)")
            _store(legacy[-1], sub, line)
            continue
    if saw_modern and saw_legacy:
        target_notes.append("the config mixes legacy lxc.network.* keys (LXC < 3.0) with lxc.net.N.* keys; "
                            "LXC >= 3.0 refuses the legacy ones")
    elif saw_legacy:
        target_notes.append("legacy lxc.network.* keys: LXC >= 3.0 cannot start this container as it is "
                            "(lxc-update-config converts it)")
    if not running:
        target_notes.append("the container is not running: LXC creates its host-side devices when it starts")
    devs = [indexed[i] for i in sorted(indexed)] + legacy
    netns = f"pid:{init_pid}" if running and init_pid else None
    nics = []
    for position, dev in enumerate(devs):
        runtime = runtime_links[position] if position < len(runtime_links) else None
        nics.append(_nic(dev, netns=netns, running=running, runtime=runtime))
    if config_path:
        details["config"] = config_path
    if init_pid:
        details["init_pid"] = init_pid
    return Target(name=name, kind="lxc", nics=tuple(nics), running=running, details=details,
                  notes=tuple(target_notes))


def _set(indexed: dict[int, _NetDev], index: str, sub: str, line: ConfigLine, *, legacy_key: bool) -> None:
    if not index.isdigit():
        raise TargetError(f"{line.where}: {line.key}: the NIC index must be a number")
    number = parse_int(index, what="NIC index", origin=line.where, low=0, high=1 << 20)
    prefix = "network" if legacy_key else "net"
    dev = indexed.setdefault(number, _NetDev(index_name=f"{prefix}{number}", legacy=legacy_key))
    _store(dev, sub, line)


def _store(dev: _NetDev, sub: str, line: ConfigLine) -> None:
    if dev.first is None:
        dev.first = line
    if sub in _MULTI_KEYS:
        if line.value == "":
            dev.multi.pop(sub, None)
        else:
            dev.multi.setdefault(sub, []).append(line)
    dev.keys[sub] = line


def _nic(dev: _NetDev, *, netns: str | None, running: bool, runtime: str | None) -> Nic:
    type_line = dev.get("type")
    where = (type_line or dev.first).where if (type_line or dev.first) else "?"
    details: dict[str, Any] = {"index_name": dev.index_name, "config": where, "legacy": dev.legacy}
    mac = None
    hw = dev.get("hwaddr")
    if hw is not None:
        mac = normalize_mac(hw.value)
        if mac is None:
            if _HWADDR_TEMPLATE_RE.match(hw.value):
                details["hwaddr_template"] = hw.value
            else:
                raise TargetError(f"{hw.where}: invalid MAC address {hw.value!r}")
    for key, out in (("flags", "flags"), ("mtu", "mtu"), ("script.up", "script_up"), ("l2proxy", "l2proxy")):
        if dev.value(key):
            details[out] = dev.value(key)
    addresses = [ln.value for k in ("ipv4", "ipv4.address") for ln in dev.multi.get(k, [])]
    if addresses:
        details["ipv4"] = addresses
    if dev.value("ipv4.gateway"):
        details["ipv4_gateway"] = dev.value("ipv4.gateway")
    guest_dev = dev.value("name")
    link = dev.value("link")
    if type_line is None:
        return Nic(mac=mac, link=link, type="unset", guest_dev=guest_dev, details=details,
                   note=f"{dev.index_name} has no type (lxc.net.N.type): LXC cannot create it")
    kind = type_line.value
    if kind not in NET_TYPES:
        raise TargetError(f"{type_line.where}: unknown network type {kind!r} (LXC knows {', '.join(NET_TYPES)})")
    host_dev = None
    mode = None
    vlan_id = None
    note = None
    if kind == "veth":
        host_dev = dev.value("veth.pair")
        mode = dev.value("veth.mode") or "bridge"
        vid = dev.get("veth.vlan.id")
        if vid is not None and vid.value != "none":
            vlan_id = parse_int(vid.value, what="veth.vlan.id", origin=vid.where, low=0, high=4095)
        tagged = [parse_int(ln.value, what="veth.vlan.tagged.id", origin=ln.where, low=0, high=4095)
                  for ln in dev.multi.get("veth.vlan.tagged.id", [])]
        if tagged:
            details["vlan_tagged"] = tagged
        if runtime and running:
            if host_dev and runtime != host_dev:
                details["configured_pair"] = host_dev
            host_dev = runtime
        if mode == "router":
            link = None
            note = ("veth in router mode: no bridge; the host routes to the host end and answers ARP "
                    "by proxy, so DHCP broadcasts do not leave the host")
        elif not host_dev:
            note = ("the host end of this veth is named by LXC at start (vethXXXXXX): "
                    + ("the topology walker finds it from the guest side's peer ifindex in "
                       f"{netns}" if netns else "the container is not running, so it does not exist"))
        if not link and mode != "router":
            extra = "no lxc.net.N.link: the host end is created but attached to no bridge"
            note = f"{note}; {extra}" if note else extra
    elif kind == "macvlan":
        mode = dev.value("macvlan.mode") or "private"
        note = (f"macvlan ({mode}) on {link or '?'}: the guest's frames leave through the lower device "
                "directly, without a bridge hop; the host itself cannot reach the guest through it")
    elif kind == "ipvlan":
        mode = dev.value("ipvlan.mode") or "l3"
        details["isolation"] = dev.value("ipvlan.isolation") or "bridge"
        note = (f"ipvlan ({mode}) on {link or '?'}: shares the lower device's MAC"
                + ("; in l3/l3s mode broadcasts are not delivered, so DHCP cannot work" if mode != "l2" else ""))
    elif kind == "vlan":
        vid = dev.get("vlan.id")
        if vid is not None:
            vlan_id = parse_int(vid.value, what="vlan.id", origin=vid.where, low=0, high=4095)
        note = (f"VLAN {vlan_id if vlan_id is not None else '?'} device on {link or '?'} moved into the "
                "container: its frames cross the lower device tagged")
    elif kind == "phys":
        note = (f"physical device {link or '?'} is moved into the container while it runs: it vanishes "
                "from the host; sniff it inside the container's namespace")
        if not guest_dev:
            guest_dev = link
    elif kind == "empty":
        note = "empty: the container only has a loopback; there is no path to trace"
    elif kind == "none":
        note = "none: the container shares the host's network namespace; its frames are the host's own"
        netns = None
    return Nic(mac=mac, host_dev=host_dev, link=link, type=kind, mode=mode, vlan_id=vlan_id,
               guest_dev=guest_dev, netns=netns,
               details=details, note=note)


@dataclass(frozen=True, slots=True)
class LxcInfo:
    state: str | None = None
    pid: int | None = None
    links: tuple[str, ...] = ()


def parse_lxc_info(text: str) -> LxcInfo:
    """`lxc-info -n NAME -H`: `State:`, `PID:` and one `Link:` per NIC in index order."""
    state = None
    pid = None
    links: list[str] = []
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if key == "State":
            state = value or None
        elif key == "PID" and value.isdigit():
            pid = int(value) or None
        elif key == "Link" and value and raw[:1] != " ":
            links.append(value)
    return LxcInfo(state=state, pid=pid, links=tuple(links))


# ---------------------------------------------------------------- reading the host
class LxcSource(Source):
    """Containers under every lxcpath: exactly `lxcpaths` when given; otherwise `extra`,
    $TRACEPATH_L2_LXCPATH, `lxc-config lxc.lxcpath` and /var/lib/lxc, in that order."""

    kind = "lxc"

    def __init__(
        self,
        lxcpaths: Sequence[str] | None = None,
        *,
        extra: Sequence[str] = (),
        runner: Callable[..., _host.ToolResult] = _host.run_tool,
        fs: FileSystem | None = None,
        proc: str = "/proc",
        use_tools: bool = True,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.fs = fs or HostFileSystem()
        self.proc = proc
        self.use_tools = use_tools
        self._explicit = list(lxcpaths) if lxcpaths is not None else None
        self._extra = list(extra)
        self._paths: list[str] | None = None
        self._where: dict[str, str] = {}

    def lxcpaths(self) -> list[str]:
        if self._paths is None:
            paths = list(self._explicit or [])
            if self._explicit is None:
                paths += self._extra
                paths += [p for p in os.environ.get(LXCPATH_ENV, "").split(":") if p]
                if self.use_tools:
                    res = self.runner(["lxc-config", "lxc.lxcpath"], timeout=10)
                    if res.ok and res.stdout.strip():
                        paths.append(res.stdout.strip().splitlines()[0].strip())
                paths.append(DEFAULT_LXCPATH)
            self._paths = list(dict.fromkeys(p.rstrip("/") or "/" for p in paths))
        return self._paths

    def names(self) -> list[str]:
        self._where.clear()
        denied: PrivilegeError | None = None
        for path in self.lxcpaths():
            try:
                entries = self.fs.listdir(path)
            except PrivilegeError as exc:
                denied = denied or exc
                continue
            for entry in entries:
                if entry not in self._where and self.fs.is_file(posixpath.join(path, entry, "config")):
                    self._where[entry] = path
        if not self._where and denied:
            raise denied
        return list(self._where)

    def load(self, name: str) -> Target:
        if name not in self._where:
            self.names()
        path = self._where.get(name)
        if path is None:
            raise TargetError(f"no LXC container named {name!r}")
        config = posixpath.join(path, name, "config")
        text = read_config(config, fs=self.fs)
        info = self.runtime(name, path)
        running = info.state not in (None, "STOPPED") and info.pid is not None
        target = parse_lxc_config(text.lines, name=name, config_path=config, running=running,
                                  init_pid=info.pid if running else None,
                                  runtime_links=info.links if running else (), notes=text.notes)
        extra: dict[str, Any] = {"lxcpath": path}
        if info.state:
            extra["state"] = info.state
        if len(text.files) > 1:
            extra["includes"] = text.files[1:]
        return target.with_details(**extra)

    def runtime(self, name: str, lxcpath: str) -> LxcInfo:
        """State, init PID and veth host ends of a container, via lxc-info or /proc."""
        if self.use_tools:
            res = self.runner(["lxc-info", "-n", name, "-P", lxcpath, "-H"], timeout=15)
            if res.ok:
                info = parse_lxc_info(res.stdout)
                if info.state is not None:
                    return info
        pid = _host.lxc_init_pid(lxcpath, name, self.proc)
        return LxcInfo(state="RUNNING", pid=pid) if pid else LxcInfo()

