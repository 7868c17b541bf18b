"""libvirt domains (QEMU/KVM and libvirt's own LXC driver) as targets.

Theory of operation
-------------------
A domain's XML says everything the path walk needs: per `<interface>` the guest MAC, the host device
libvirt created or was given (`<target dev=...>`: `tap0b5f208b-76` for nova, `vnetN` when libvirt
names it, `macvtapN` for direct), and what it attaches it to. Which XML depends on what the host has:

1. libvirt-python, when importable (`XMLDesc` of every domain, read-only connection);
2. `virsh -c qemu:///system` (`list --all --name`, `dumpxml`) when installed;
3. the driver's own state files: `/run/libvirt/qemu/NAME.xml` (and `/run/libvirt/lxc/`) hold the
   live status of running domains as `<domstatus>` around the live `<domain>`; `/etc/libvirt/qemu`
   holds the persistent definitions of stopped ones. This works with no libvirt binding at all.

Interface types, as libvirt 9.0 writes them (recorded on this project's machines):

* `bridge`: `<source bridge=BR>`, `<target dev=TAP>`. The tap is a port of BR.
* `network`: `<source network=NAME>`. Live XML adds the network's bridge (`bridge=` on `<source>`),
  and for a network in `forward mode='bridge'` the live type even becomes `bridge`; the status file
  keeps `type='network'` and says it in `<actual type=...>`. A stopped domain only names the network,
  so the bridge comes from the network's XML (`virsh net-dumpxml`, `/run/libvirt/network/NAME.xml`,
  `/etc/libvirt/qemu/networks/NAME.xml`).
* `direct`: macvtap on `<source dev=LOWER mode=vepa|bridge|private|passthrough>`; libvirt's default
  mode is vepa. Frames go from the macvtap straight to LOWER, never through a bridge.
* `ethernet`: a tap libvirt does not plug anywhere (`<target dev=...>`): whatever plugs it decides.
* `vhostuser`: QEMU hands the virtio rings to a userspace switch over a UNIX socket; the frames never
  reach a kernel link, so nothing can sniff them from the kernel.
* `user`, `hostdev`, `vdpa`, `mcast`/`server`/`client`/`udp`: no host kernel link either.

Nova: the instance name is `instance-%08x` (hex), the domain `<uuid>` *is* the nova instance UUID
(nova sets the guest UUID to the instance UUID), and `<metadata><nova:instance>` (namespace
`http://openstack.org/xmlns/libvirt/nova/1.0` or `1.1`) carries the display name, flavor, owner,
image and, since Yoga-era nova, the neutron ports (`<nova:port uuid=...>`) whose first 11 characters
name the tap (`tap0b5f208b-76`).
"""

from __future__ import annotations

import importlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.errors import PrivilegeError, TargetError
from tracer.targets import _host
from tracer.targets.base import (
    Nic,
    Source,
    Target,
    local_name,
    namespace,
    normalize_mac,
    parse_int,
    parse_xml,
)

NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"
LXC_URI = "lxc:///system"
QEMU_URI = "qemu:///system"

VHOSTUSER_NOTE = (
    "vhost-user: QEMU hands this NIC's virtio rings to a userspace switch (OVS-DPDK, VPP, snabb) "
    "over a UNIX socket, so its frames never cross a host kernel link and cannot be sniffed from the "
    "kernel; capture inside that switch instead (e.g. ovs-tcpdump or its port mirroring)"
)
_UNSNIFFABLE_NOTES = {
    "user": "user-mode networking (slirp/passt): QEMU itself plays the network and answers DHCP; "
            "there is no host device to sniff",
    "hostdev": "PCI passthrough (SR-IOV VF or whole NIC): the device belongs to the guest and its "
               "frames bypass the host kernel; sniff on the switch port or the PF's other side",
    "vdpa": "vDPA: the datapath is offloaded to the NIC hardware and bypasses the host kernel",
    "mcast": "socket backend: QEMU tunnels frames over UDP multicast; no host link carries them",
    "server": "socket backend: QEMU tunnels frames over a TCP socket; no host link carries them",
    "client": "socket backend: QEMU tunnels frames over a TCP socket; no host link carries them",
    "udp": "socket backend: QEMU tunnels frames over UDP; no host link carries them",
    "null": "null interface: no backend, frames go nowhere",
    "vds": "VMware distributed switch port: not a Linux bridge",
}


@dataclass(frozen=True, slots=True)
class LibvirtNetwork:
    """What a libvirt network's XML says about where its guests' frames go."""

    name: str
    bridge: str | None = None
    forward_mode: str | None = None
    """None (isolated), nat, route, open, bridge, private, vepa, passthrough, hostdev."""
    forward_devs: tuple[str, ...] = ()
    """`<forward dev=...>` and `<forward><interface dev=...>`: macvtap lowers for direct modes."""
    virtualport: str | None = None


# ---------------------------------------------------------------- pure parsing
def parse_network_xml(text: str, *, origin: str = "network XML") -> LibvirtNetwork:
    """A `<network>` (virsh net-dumpxml, /etc) or `<networkstatus>` (/run/libvirt/network) document."""
    root = parse_xml(text, origin=origin)
    if local_name(root.tag) == "networkstatus":
        inner = _child(root, "network")
        if inner is None:
            raise TargetError(f"{origin}: <networkstatus> without a <network>")
        root = inner
    if local_name(root.tag) != "network":
        raise TargetError(f"{origin}: expected <network>, found <{local_name(root.tag) or '?'}>")
    name = _text(_child(root, "name"))
    if not name:
        raise TargetError(f"{origin}: network without a <name>")
    bridge_el = _child(root, "bridge")
    forward = _child(root, "forward")
    devs: list[str] = []
    mode = None
    if forward is not None:
        mode = forward.get("mode") or "nat"
        if forward.get("dev"):
            devs.append(forward.get("dev", ""))
        for iface in _children(forward, "interface"):
            if iface.get("dev"):
                devs.append(iface.get("dev", ""))
    vport = _child(root, "virtualport")
    return LibvirtNetwork(
        name=name,
        bridge=(bridge_el.get("name") or None) if bridge_el is not None else None,
        forward_mode=mode,
        forward_devs=tuple(dict.fromkeys(devs)),
        virtualport=vport.get("type") if vport is not None else None,
    )


def parse_domain_xml(
    text: str,
    *,
    origin: str = "domain XML",
    running: bool | None = None,
    networks: Callable[[str], LibvirtNetwork | None] | None = None,
    source: str | None = None,
) -> Target:
    """A target from `virsh dumpxml` / XMLDesc output (`<domain>`) or a status file (`<domstatus>`).

    `running` overrides what the XML implies (a live `<domain id=N>` or a `<domstatus
    state='running'>` is running; a bare inactive definition is not). `networks` resolves a libvirt
    network name to its bridge when the XML does not say (stopped domains, older libvirt).
    """
    root = parse_xml(text, origin=origin)
    details: dict[str, Any] = {}
    state = None
    init_pid = None
    if local_name(root.tag) == "domstatus":
        state = root.get("state")
        if root.get("pid"):
            details["pid"] = parse_int(root.get("pid"), what="domstatus pid", origin=origin, low=0)
        init = _child(root, "init")
        if init is not None and init.get("pid"):
            init_pid = parse_int(init.get("pid"), what="init pid", origin=origin, low=0) or None
        dom = _child(root, "domain")
        if dom is None:
            raise TargetError(f"{origin}: <domstatus> without a <domain>")
        root = dom
    if local_name(root.tag) != "domain":
        raise TargetError(f"{origin}: expected <domain>, found <{local_name(root.tag) or '?'}>")
    name = _text(_child(root, "name"))
    if not name:
        raise TargetError(f"{origin}: domain without a <name>")
    virt = root.get("type") or "unknown"
    details["virt_type"] = virt
    uuid = _text(_child(root, "uuid"))
    if uuid:
        details["uuid"] = uuid.lower()
    dom_id = root.get("id")
    if dom_id is not None and dom_id.lstrip("-").isdigit() and int(dom_id) >= 0:
        details["id"] = int(dom_id)
    if state is not None:
        details["state"] = state
    if init_pid:
        details["init_pid"] = init_pid
    if source:
        details["source"] = source
    if running is None:
        running = (state in ("running", "paused", "blocked", "pmsuspended")) if state is not None \
            else "id" in details
    nova = _nova_metadata(root)
    if nova:
        details["nova"] = nova
        if uuid:
            # nova's libvirt driver sets the domain UUID to the instance UUID.
            details["nova_uuid"] = uuid.lower()
    guest_ns = f"pid:{init_pid}" if virt == "lxc" and init_pid and running else None
    nics = []
    devices = _child(root, "devices")
    ports = list(nova.get("ports", ())) if nova else []
    for index, iface in enumerate(_children(devices, "interface") if devices is not None else ()):
        nics.append(_interface_nic(iface, index=index, origin=origin, networks=networks,
                                   guest_ns=guest_ns, virt=virt, running=running, ports=ports))
    notes = []
    if not running:
        notes.append("the domain is not running: libvirt creates its taps and macvtaps when it starts")
    if virt == "lxc" and running and not init_pid:
        notes.append("libvirt LXC domain: the container's init PID is only in the status file "
                     "(/run/libvirt/lxc/NAME.xml); without it the guest side cannot be entered")
    return Target(name=name, kind="libvirt", nics=tuple(nics), running=bool(running), details=details,
                  notes=tuple(notes))


def _interface_nic(
    iface: ET.Element,
    *,
    index: int,
    origin: str,
    networks: Callable[[str], LibvirtNetwork | None] | None,
    guest_ns: str | None,
    virt: str,
    running: bool,
    ports: list[dict[str, Any]],
) -> Nic:
    declared = iface.get("type")
    if not declared:
        raise TargetError(f"{origin}: <interface> #{index} has no type")
    mac_el = _child(iface, "mac")
    mac = None
    if mac_el is not None and mac_el.get("address") is not None:
        mac = normalize_mac(mac_el.get("address"))
        if mac is None:
            raise TargetError(f"{origin}: <interface> #{index} has an invalid MAC {mac_el.get('address')!r}")
    source = _child(iface, "source")
    src = dict(source.attrib) if source is not None else {}
    actual = _child(iface, "actual")
    effective = declared
    if actual is not None and actual.get("type"):
        effective = actual.get("type", declared)
        actual_src = _child(actual, "source")
        if actual_src is not None:
            src = {**src, **actual_src.attrib}
    target_el = _child(iface, "target")
    target_dev = (target_el.get("dev") or None) if target_el is not None else None
    guest_el = _child(iface, "guest")
    guest_dev = (guest_el.get("dev") or None) if guest_el is not None else None
    details: dict[str, Any] = {"index": index, "declared_type": declared}
    for key, child, attr in (("alias", "alias", "name"), ("model", "model", "type"),
                             ("link_state", "link", "state"), ("mtu", "mtu", "size")):
        el = _child(iface, child)
        if el is not None and el.get(attr):
            details[key] = el.get(attr)
    if src.get("network"):
        details["network"] = src["network"]
    if src.get("portgroup"):
        details["portgroup"] = src["portgroup"]
    if src.get("portid"):
        details["portid"] = src["portid"]
    vport = _child(iface, "virtualport")
    if vport is not None and vport.get("type"):
        details["virtualport"] = vport.get("type")
        params = _child(vport, "parameters")
        if params is not None and params.get("interfaceid"):
            details["interfaceid"] = params.get("interfaceid")
    vlan_id = None
    vlan = _child(iface, "vlan")
    if vlan is not None:
        tags = [t.get("id") for t in _children(vlan, "tag") if t.get("id") is not None]
        ids = [parse_int(t, what="VLAN tag", origin=origin, low=0, high=4095) for t in tags]
        if vlan.get("trunk") == "yes" or len(ids) > 1:
            details["vlan_trunk"] = ids
        elif ids:
            vlan_id = ids[0]
    port = _matching_port(target_dev, ports)
    if port:
        details["neutron_port"] = port.get("uuid")
        if port.get("ips"):
            details["ips"] = port["ips"]

    link = None
    mode = None
    host_dev = target_dev
    note = None
    kind = effective
    if effective == "network":
        net_name = src.get("network")
        link = src.get("bridge")
        net = networks(net_name) if (networks and net_name and not link) else None
        if net is not None:
            if net.bridge and net.forward_mode not in ("private", "vepa", "passthrough", "hostdev"):
                link = net.bridge
            elif net.forward_mode in ("bridge", "private", "vepa", "passthrough") and net.forward_devs:
                kind = "direct"
                link = net.forward_devs[0] if len(net.forward_devs) == 1 else None
                mode = "bridge" if net.forward_mode == "bridge" else net.forward_mode
                details["forward_devs"] = list(net.forward_devs)
                if link is None:
                    note = (f"libvirt network {net_name!r} is a macvtap pool over "
                            f"{', '.join(net.forward_devs)}: the lower device is chosen at start")
            elif net.forward_mode == "hostdev":
                kind = "hostdev"
                note = _UNSNIFFABLE_NOTES["hostdev"]
            if net.virtualport:
                details["virtualport"] = net.virtualport
        if link is None and kind == "network" and note is None:
            note = (f"libvirt network {net_name!r}: its bridge is unknown (network not active or its "
                    "XML not readable)")
    elif effective == "bridge":
        link = src.get("bridge")
        if not link:
            note = "type bridge without <source bridge=...>"
    elif effective == "direct":
        link = src.get("dev")
        mode = src.get("mode") or "vepa"
        if not link:
            note = "type direct without <source dev=...>"
    elif effective == "ethernet":
        note = ("type ethernet: libvirt creates the tap but plugs it nowhere; whatever the "
                "interface script or the operator attaches it to is the next hop")
    elif effective == "vhostuser":
        host_dev = None
        for key in ("type", "path", "mode"):
            if src.get(key):
                details[f"socket_{key}"] = src[key]
        note = VHOSTUSER_NOTE
    elif effective in _UNSNIFFABLE_NOTES:
        if effective != "hostdev":
            host_dev = None
        note = _UNSNIFFABLE_NOTES[effective]
        if effective == "hostdev":
            addr = _child(source, "address") if source is not None else None
            if addr is not None:
                details["pci"] = dict(addr.attrib)
    if details.get("virtualport") == "openvswitch" and note is None:
        note = (f"{link or 'the bridge'} is an Open vSwitch bridge: the tap is an OVS port, and OVS "
                "forwards by its own flow tables rather than a Linux bridge FDB")
    if virt != "lxc" and running and host_dev is None and effective in ("bridge", "network", "direct",
                                                                         "ethernet"):
        extra = "the running domain's XML names no <target dev>: read it from `virsh domiflist`"
        note = f"{note}; {extra}" if note else extra
    if details.get("link_state") == "down":
        extra = "the guest's link is set down in the domain XML (<link state='down'/>)"
        note = f"{note}; {extra}" if note else extra
    return Nic(
        mac=mac,
        host_dev=host_dev,
        link=link,
        type=kind,
        mode=mode,
        vlan_id=vlan_id,
        guest_dev=guest_dev,
        netns=guest_ns if kind not in ("vhostuser", "user", "hostdev") else None,
        details=details,
        note=note,
    )


def _matching_port(target_dev: str | None, ports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The neutron port whose id names this tap (`tap` + the first 11 characters of the port UUID)."""
    if not target_dev:
        return None
    for port in ports:
        uuid = str(port.get("uuid") or "")
        if uuid and target_dev[3:] == uuid[:11] and target_dev[:3] in ("tap", "qvo", "qvb", "vhu"):
            return port
    return None


def _nova_metadata(domain: ET.Element) -> dict[str, Any]:
    meta = _child(domain, "metadata")
    if meta is None:
        return {}
    inst = next((c for c in meta if local_name(c.tag) == "instance"
                 and namespace(c.tag).startswith(NOVA_NS_PREFIX)), None)
    if inst is None:
        return {}
    nova: dict[str, Any] = {"namespace": namespace(inst.tag)}
    for child in inst:
        tag = local_name(child.tag)
        if tag == "package" and child.get("version"):
            nova["package"] = child.get("version")
        elif tag in ("name", "creationTime") and _text(child):
            nova["name" if tag == "name" else "creation_time"] = _text(child)
        elif tag == "flavor":
            flavor: dict[str, Any] = {"name": child.get("name")}
            for item in child:
                if local_name(item.tag) and _text(item):
                    flavor[local_name(item.tag)] = _text(item)
            nova["flavor"] = flavor
        elif tag == "owner":
            for item in child:
                who = local_name(item.tag)
                if who in ("user", "project"):
                    nova[who] = {"name": _text(item), "uuid": item.get("uuid")}
        elif tag == "root":
            nova["root"] = {"type": child.get("type"), "uuid": child.get("uuid")}
        elif tag == "ports":
            ports = []
            for port in child:
                if local_name(port.tag) != "port":
                    continue
                ips = [ip.get("address") for ip in port if local_name(ip.tag) == "ip" and ip.get("address")]
                ports.append({"uuid": port.get("uuid"), "ips": ips})
            nova["ports"] = ports
    return nova


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    return next((c for c in el if local_name(c.tag) == name), None)


def _children(el: ET.Element | None, name: str) -> list[ET.Element]:
    if el is None:
        return []
    return [c for c in el if local_name(c.tag) == name]


def _text(el: ET.Element | None) -> str:
    if el is None or el.text is None:
        return ""
    return el.text.strip()


def parse_virsh_names(text: str) -> list[str]:
    """`virsh list --all --name`: one name per line, a blank line at the end."""
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- reading the host
class LibvirtSource(Source):
    """Domains from libvirt-python, else virsh, else libvirt's state files."""

    kind = "libvirt"

    def __init__(
        self,
        *,
        uris: tuple[str, ...] | None = None,
        run_dir: str = "/run/libvirt",
        etc_dir: str = "/etc/libvirt",
        use_python: bool = True,
        use_virsh: bool = True,
        runner: Callable[..., _host.ToolResult] = _host.run_tool,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.etc_dir = Path(etc_dir)
        self.uris = uris or ((QEMU_URI, LXC_URI) if (self.run_dir / "lxc").is_dir() else (QEMU_URI,))
        self.runner = runner
        self.use_virsh = (use_virsh and _host.have("virsh")) if runner is _host.run_tool else use_virsh
        self._py = _libvirt_module() if use_python else None
        self._where: dict[str, tuple[str, str]] = {}
        """name -> (how, uri-or-path) as found by names()."""
        self._networks: dict[str, LibvirtNetwork | None] = {}

    # -- listing
    def names(self) -> list[str]:
        self._where.clear()
        denied: list[str] = []
        for uri in self.uris:
            how = "api"
            found = self._names_python(uri) if self._py is not None else None
            if found is None and self.use_virsh:
                how = "virsh"
                found = self._names_virsh(uri, denied)
            for name in found or ():
                self._where.setdefault(name, (how, uri))
        for driver in ("qemu", "lxc"):
            for path in self._state_files(driver, denied):
                self._where.setdefault(path.stem, ("file", str(path)))
        if not self._where and denied:
            raise PrivilegeError(denied[0])
        return list(self._where)

    def _names_python(self, uri: str) -> list[str] | None:
        try:
            conn = self._py.openReadOnly(uri)
        except Exception:  # noqa: BLE001 - libvirt.libvirtError or a broken binding: try virsh next
            return None
        if conn is None:
            return None
        try:
            return [d.name() for d in conn.listAllDomains(0)]
        except Exception:  # noqa: BLE001
            return None
        finally:
            _close(conn)

    def _names_virsh(self, uri: str, denied: list[str]) -> list[str] | None:
        res = self.runner(["virsh", "-c", uri, "list", "--all", "--name"], timeout=20)
        if not res.ok:
            if res.denied:
                denied.append(f"virsh -c {uri} was refused: {res.error} (run as root or join the libvirt group)")
            return None
        return parse_virsh_names(res.stdout)

    def _state_files(self, driver: str, denied: list[str]) -> list[Path]:
        files: dict[str, Path] = {}
        dirs = [self.run_dir / driver, self.etc_dir / driver]
        for directory in dirs:
            try:
                entries = _host.list_dir(directory)
            except PrivilegeError as exc:
                denied.append(str(exc))
                continue
            for entry in entries:
                if entry.endswith(".xml") and entry[:-4] not in files:
                    files[entry[:-4]] = directory / entry
        return list(files.values())

    # -- loading
    def load(self, name: str) -> Target:
        if name not in self._where:
            self.names()
        how, where = self._where.get(name, ("", ""))
        if how == "api":
            text, running = self._xml_python(where, name)
            return parse_domain_xml(text, origin=f"libvirt domain {name}", running=running,
                                    networks=self.network, source=f"libvirt-python {where}")
        if how == "virsh":
            res = self.runner(["virsh", "-c", where, "dumpxml", name], timeout=20)
            if res.ok:
                target = parse_domain_xml(res.stdout, origin=f"virsh dumpxml {name}", networks=self.network,
                                          source=f"virsh -c {where}")
                return self._with_status(target, where)
            if res.denied:
                raise PrivilegeError(f"virsh dumpxml {name} was refused: {res.error}")
            raise TargetError(f"cannot read libvirt domain {name}: {res.error}")
        if how == "file":
            return self._from_files(name)
        raise TargetError(f"no libvirt domain named {name!r}")

    def _xml_python(self, uri: str, name: str) -> tuple[str, bool]:
        try:
            conn = self._py.openReadOnly(uri)
            try:
                dom = conn.lookupByName(name)
                return dom.XMLDesc(0), bool(dom.isActive())
            finally:
                _close(conn)
        except Exception as exc:  # noqa: BLE001 - libvirtError carries the reason in its message
            raise TargetError(f"cannot read libvirt domain {name}: {exc}") from None

    def _with_status(self, target: Target, uri: str) -> Target:
        """Add the init PID of a running libvirt-LXC domain (only its status file has it)."""
        if not (uri.startswith("lxc:") and target.running and "init_pid" not in target.details):
            return target
        path = self.run_dir / "lxc" / f"{target.name}.xml"
        try:
            return parse_domain_xml(_host.read_file(path), origin=str(path), networks=self.network,
                                    source=str(path))
        except (OSError, TargetError, PrivilegeError):
            return target

    def _from_files(self, name: str) -> Target:
        for driver in ("qemu", "lxc"):
            live = self.run_dir / driver / f"{name}.xml"
            if live.is_file():
                return parse_domain_xml(_host.read_file(live), origin=str(live), networks=self.network,
                                        source=str(live))
        for driver in ("qemu", "lxc"):
            conf = self.etc_dir / driver / f"{name}.xml"
            if conf.is_file():
                return parse_domain_xml(_host.read_file(conf), origin=str(conf), running=False,
                                        networks=self.network, source=str(conf))
        raise TargetError(f"no libvirt domain named {name!r}")

    # -- networks
    def network(self, name: str) -> LibvirtNetwork | None:
        """A libvirt network's bridge and forward mode, from the first place that knows it."""
        if name not in self._networks:
            self._networks[name] = self._read_network(name)
        return self._networks[name]

    def _read_network(self, name: str) -> LibvirtNetwork | None:
        texts: list[tuple[str, Callable[[], str | None]]] = []
        if self._py is not None:
            texts.append(("libvirt-python", lambda: self._net_python(name)))
        elif self.use_virsh:
            texts.append(("virsh", lambda: self._net_virsh(name)))
        for path in (self.run_dir / "network" / f"{name}.xml", self.etc_dir / "qemu" / "networks" / f"{name}.xml"):
            texts.append((str(path), lambda path=path: _read_quiet(path)))
        for origin, get in texts:
            text = get()
            if text:
                try:
                    return parse_network_xml(text, origin=f"{origin} network {name}")
                except TargetError:
                    continue
        return None

    def _net_python(self, name: str) -> str | None:
        for uri in self.uris:
            try:
                conn = self._py.openReadOnly(uri)
                try:
                    return conn.networkLookupByName(name).XMLDesc(0)
                finally:
                    _close(conn)
            except Exception:  # noqa: BLE001
                continue
        return None

    def _net_virsh(self, name: str) -> str | None:
        res = self.runner(["virsh", "-c", QEMU_URI, "net-dumpxml", name], timeout=20)
        return res.stdout if res.ok else None


def _read_quiet(path: Path) -> str | None:
    try:
        return _host.read_file(path)
    except (OSError, PrivilegeError):
        return None


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


def _libvirt_module() -> Any | None:
    """libvirt-python when importable, with its default stderr error printer silenced."""
    if os.environ.get("TRACEPATH_L2_NO_LIBVIRT_PYTHON") == "1":
        return None
    try:
        mod = importlib.import_module("libvirt")
    except Exception:  # noqa: BLE001 - ImportError, or a binding built against another libvirt
        return None
    try:
        mod.registerErrorHandler(lambda _ctx, _err: None, None)
    except Exception:  # noqa: BLE001
        pass
    return mod
