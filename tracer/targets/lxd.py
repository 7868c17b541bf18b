"""LXD (and Incus) instances as targets.

Theory of operation
-------------------
LXD keeps an instance's NICs as devices of `type: nic` in its expanded configuration (profiles
merged in): `nictype: bridged` + `parent: BR` (or `network: NAME` for a managed network, whose
bridge carries the network's name), `macvlan` + `parent`, `physical` + `parent`, and more (`ipvlan`,
`p2p`, `routed`, `sriov`, `ovn`). What the kernel got at start is in the instance's volatile keys:
`volatile.eth0.host_name` is the host end (a veth for a container, a tap for a VM) and
`volatile.eth0.hwaddr` the guest's MAC unless the device sets `hwaddr` itself.

Where it is read from:

1. LXD's client, `lxc config show --expanded NAME`. LXD's client is *also* called `lxc` (usually
   /snap/bin/lxc) and has nothing to do with LXC's `lxc-*` tools; it is recognised by answering
   `lxc list --format csv`. Incus' `incus` client speaks the same format.
2. Without a client, LXD's own files: every instance directory holds a `backup.yaml` with the
   expanded config (`/var/snap/lxd/common/lxd/containers/NAME/backup.yaml`, or under
   /var/lib/lxd, /var/lib/incus, $LXD_DIR). Containers run under liblxc with that `containers`
   directory as lxcpath, so their init PID is found like an LXC container's.

The YAML is parsed by `tracer.targets._yaml` (no PyYAML dependency).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import _host
from tracer.targets._yaml import parse_yaml
from tracer.targets.base import Nic, Source, Target, normalize_mac, parse_int

LXD_DIRS = ("/var/snap/lxd/common/lxd", "/var/lib/lxd", "/var/lib/incus")
CLIENTS = ("/snap/bin/lxc", "lxc", "incus")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


# ---------------------------------------------------------------- pure parsing
def parse_lxd_yaml(
    text: str,
    *,
    name: str | None = None,
    origin: str = "lxc config show --expanded",
    running: bool | None = None,
    init_pid: int | None = None,
) -> Target:
    """A target from `lxc config show --expanded` output or an instance's `backup.yaml`."""
    data = parse_yaml(text, origin=origin)
    if not isinstance(data, dict):
        raise TargetError(f"{origin}: expected a YAML mapping, found {type(data).__name__}")
    inst = data
    for key in ("instance", "container"):
        if isinstance(data.get(key), dict):
            inst = data[key]
            break
    config = _mapping(inst.get("expanded_config") or inst.get("config") or {}, "config", origin)
    devices = _mapping(inst.get("expanded_devices") or inst.get("devices") or {}, "devices", origin)
    conf = {str(k): _scalar(v) for k, v in config.items()}
    name = name or (_scalar(inst.get("name")) if inst.get("name") is not None else None)
    if not name:
        raise TargetError(f"{origin}: no instance name")
    instance_type = _scalar(inst.get("type")) if inst.get("type") else (
        "virtual-machine" if "volatile.vsock_id" in conf else "container")
    details: dict[str, Any] = {"instance_type": instance_type}
    if conf.get("volatile.uuid"):
        details["uuid"] = conf["volatile.uuid"].lower()
    status = _scalar(inst.get("status")) if inst.get("status") else None
    if status:
        details["status"] = status
    if running is None:
        if status:
            running = status.lower() == "running"
        else:
            running = conf.get("volatile.last_state.power", "").upper() == "RUNNING"
    if init_pid and running:
        details["init_pid"] = init_pid
    netns = f"pid:{init_pid}" if running and init_pid and instance_type == "container" else None
    nics = []
    for dev_name in sorted(devices, key=str):
        dev = devices[dev_name]
        if not isinstance(dev, dict):
            raise TargetError(f"{origin}: device {dev_name!r} is not a mapping")
        if _scalar(dev.get("type")) != "nic":
            continue
        nics.append(_nic(str(dev_name), {str(k): _scalar(v) for k, v in dev.items()}, conf,
                         origin=origin, netns=netns, vm=instance_type == "virtual-machine", running=running))
    return Target(name=str(name), kind="lxd", nics=tuple(nics), running=bool(running), details=details)


def _nic(dev_name: str, dev: dict[str, str], conf: dict[str, str], *, origin: str, netns: str | None,
         vm: bool, running: bool) -> Nic:
    where = f"{origin}: device {dev_name}"
    nictype = dev.get("nictype") or ""
    network = dev.get("network") or None
    details: dict[str, Any] = {"device": dev_name}
    if network:
        details["network"] = network
    raw_mac = dev.get("hwaddr") or conf.get(f"volatile.{dev_name}.hwaddr")
    mac = None
    if raw_mac:
        mac = normalize_mac(raw_mac)
        if mac is None:
            raise TargetError(f"{where}: invalid MAC address {raw_mac!r}")
    host_name = conf.get(f"volatile.{dev_name}.host_name") or dev.get("host_name") or None
    guest_dev = dev.get("name") or conf.get(f"volatile.{dev_name}.name") or None
    parent = dev.get("parent") or None
    vlan_id = None
    if dev.get("vlan") and dev["vlan"] != "none":
        vlan_id = parse_int(dev["vlan"], what="vlan", origin=where, low=0, high=4095)
    if dev.get("mtu"):
        details["mtu"] = dev["mtu"]
    if not nictype:
        nictype = "bridged" if network else "unknown"
        if network:
            details["managed_network"] = True
    link = None
    mode = None
    host_dev = None
    note = None
    if nictype == "bridged":
        link = parent or network
        host_dev = host_name if running else None
        if network and not parent:
            note = (f"managed network {network!r}: its bridge is assumed to carry the network's name "
                    "(LXD bridge networks do); `lxc network show` says otherwise for OVN or macvlan networks")
    elif nictype == "macvlan":
        link = parent
        mode = "bridge"
        host_dev = host_name if (vm and running) else None
        note = (f"macvlan on {parent or '?'}: the guest's frames leave through the parent directly, "
                "without a bridge hop; the host cannot reach the guest through the parent")
    elif nictype == "physical":
        link = parent
        note = (f"physical device {parent or '?'} is handed to the instance while it runs and vanishes "
                "from the host")
    elif nictype == "ipvlan":
        link = parent
        mode = dev.get("mode") or "l3"
        note = f"ipvlan ({mode}) on {parent or '?'}" + ("; l3 mode delivers no broadcasts, so no DHCP"
                                                        if mode == "l3" else "")
    elif nictype in ("p2p", "routed"):
        host_dev = host_name if running else None
        note = (f"{nictype}: a veth with no bridge; the host routes to its host end "
                f"{host_name or '(named at start)'}")
    elif nictype == "sriov":
        link = parent
        note = "SR-IOV VF: the guest's frames bypass the host kernel; sniff on the physical switch"
    elif nictype == "ovn":
        note = "OVN NIC: frames go through Open vSwitch flows, not a Linux bridge"
        host_dev = host_name if running else None
    else:
        note = f"unknown LXD nictype {nictype!r}"
    if nictype in ("bridged", "p2p", "routed") and running and not host_dev:
        extra = (f"no volatile.{dev_name}.host_name: the host end is found from the guest side's peer "
                 f"ifindex in {netns}" if netns else f"no volatile.{dev_name}.host_name recorded")
        note = f"{note}; {extra}" if note else extra
    return Nic(mac=mac, host_dev=host_dev, link=link, type=nictype, mode=mode, vlan_id=vlan_id,
               guest_dev=guest_dev, netns=netns, details=details, note=note)


def _mapping(value: Any, what: str, origin: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TargetError(f"{origin}: '{what}' is not a mapping")
    return value


def _scalar(value: Any) -> str:
    """LXD's config values are strings; YAML may have read `false` or `5` as other types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return ""
    return str(value)


def parse_lxd_list(text: str) -> dict[str, tuple[str, int | None]]:
    """`lxc list --format csv -c nsp`: name -> (STATE, init PID or None)."""
    out: dict[str, tuple[str, int | None]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if not cells or not cells[0]:
            continue
        state = cells[1] if len(cells) > 1 else ""
        pid = int(cells[2]) if len(cells) > 2 and cells[2].isdigit() and int(cells[2]) > 0 else None
        out[cells[0]] = (state, pid)
    return out


# ---------------------------------------------------------------- reading the host
class LxdSource(Source):
    """Instances from LXD's (or Incus') client, else from LXD's instance directories."""

    kind = "lxd"

    def __init__(
        self,
        *,
        client: str | None = None,
        dirs: Sequence[str] | None = None,
        runner: Callable[..., _host.ToolResult] = _host.run_tool,
        proc: str = "/proc",
    ) -> None:
        super().__init__()
        self.runner = runner
        self.proc = proc
        self._client_arg = client
        self._client: str | None | bool = None
        env_dir = os.environ.get("LXD_DIR")
        self.dirs = list(dirs) if dirs is not None else [d for d in ((env_dir,) if env_dir else ()) + LXD_DIRS]
        self._states: dict[str, tuple[str, int | None]] = {}
        self._files: dict[str, tuple[str, str]] = {}

    def client(self) -> str | None:
        """LXD's or Incus' client, told apart from anything else called `lxc` by its answer."""
        if self._client is None:
            self._client = False
            candidates = [self._client_arg] if self._client_arg else list(CLIENTS)
            for cand in candidates:
                path = cand if cand.startswith("/") else shutil.which(cand)
                if not path or not os.access(path, os.X_OK):
                    continue
                res = self.runner([path, "list", "--format", "csv", "-c", "nsp"], timeout=20)
                if res.ok or res.denied:
                    self._client = path
                    if res.ok:
                        self._states = parse_lxd_list(res.stdout)
                    break
        return self._client or None

    def names(self) -> list[str]:
        names: list[str] = []
        client = self.client()
        if client:
            res = self.runner([client, "list", "--format", "csv", "-c", "nsp"], timeout=20)
            if res.ok:
                self._states = parse_lxd_list(res.stdout)
                names.extend(self._states)
            elif res.denied:
                raise PrivilegeError(f"{client} list was refused: {res.error} (run as root or join the lxd group)")
        if names:
            return names
        self._files.clear()
        denied: PrivilegeError | None = None
        for base in self.dirs:
            for sub in ("containers", "virtual-machines"):
                directory = posixpath.join(base, sub)
                try:
                    entries = _host.list_dir(directory)
                except PrivilegeError as exc:
                    denied = denied or exc
                    continue
                for entry in entries:
                    backup = posixpath.join(directory, entry, "backup.yaml")
                    if entry not in self._files and _NAME_RE.match(entry) and os.path.isfile(backup):
                        self._files[entry] = (backup, directory)
        if not self._files and denied:
            raise denied
        return list(self._files)

    def load(self, name: str) -> Target:
        client = self.client()
        if client:
            res = self.runner([client, "config", "show", "--expanded", name], timeout=20)
            if res.ok:
                state, pid = self._states.get(name, ("", None))
                running = state.upper() == "RUNNING" if state else None
                return parse_lxd_yaml(res.stdout, name=name, origin=f"{client} config show --expanded {name}",
                                      running=running, init_pid=pid).with_details(source=client)
            if res.denied:
                raise PrivilegeError(f"{client} config show {name} was refused: {res.error}")
        if name not in self._files:
            self.names()
        if name not in self._files:
            raise TargetError(f"no LXD instance named {name!r}")
        backup, lxcpath = self._files[name]
        pid = _host.lxc_init_pid(lxcpath, name, self.proc) if lxcpath.endswith("containers") else None
        return parse_lxd_yaml(_host.read_file(backup), name=name, origin=backup,
                              running=True if pid else None, init_pid=pid).with_details(source=backup)
