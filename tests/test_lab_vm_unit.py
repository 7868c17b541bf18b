"""The pure parts of the lab VM: names, MACs, the domain XML and the initramfs archive (no root)."""

from __future__ import annotations

import gzip
import re
from xml.etree import ElementTree as ET

import pytest

from tracer.lab import initramfs, vm

NOVA = {"nova": vm.NOVA_NS}


def test_default_lab_is_the_seed_instance() -> None:
    assert vm.vm_domain_name("lab") == "instance-00000347"


@pytest.mark.parametrize("lab", ["a", "c3", "tv", "lab2", "zzzzzz"])
def test_other_labs_get_a_stable_distinct_nova_name(lab: str) -> None:
    name = vm.vm_domain_name(lab)
    assert re.fullmatch(r"instance-[0-9a-f]{8}", name)
    assert name != "instance-00000347"
    assert name == vm.vm_domain_name(lab)


def test_names_and_macs_differ_between_labs() -> None:
    labs = ["lab", "a", "b", "c3", "c4", "tv", "x1"]
    assert len({vm.vm_domain_name(lab) for lab in labs}) == len(labs)
    assert len({vm.vm_mac(lab) for lab in labs}) == len(labs)


@pytest.mark.parametrize("lab", ["lab", "c3", "tv"])
def test_mac_is_stable_in_neutron_oui(lab: str) -> None:
    mac = vm.vm_mac(lab)
    assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", mac)
    assert mac == vm.vm_mac(lab)


def _xml(**over: str) -> ET.Element:
    args = {
        "name": vm.vm_domain_name("c3"),
        "dom_uuid": vm.vm_uuid("c3"),
        "lab_name": "c3",
        "bridge": "c3-br",
        "mac": vm.vm_mac("c3"),
        "kernel": "/boot/vmlinuz-6.1.0-56-cloud-amd64",
        "initrd": "/var/cache/tracepath-l2/initramfs-x.cpio.gz",
        "console_log": "/run/tracepath-l2/c3/vm-console.log",
    } | over
    return ET.fromstring(vm.domain_xml(**args))


def test_domain_xml_is_a_tcg_domain_on_the_bridge() -> None:
    dom = _xml()
    assert dom.tag == "domain" and dom.get("type") == "qemu"
    assert dom.findtext("name") == vm.vm_domain_name("c3")
    ifaces = dom.findall("./devices/interface")
    assert len(ifaces) == 1
    iface = ifaces[0]
    assert iface.get("type") == "bridge"
    assert iface.find("source").get("bridge") == "c3-br"
    assert iface.find("mac").get("address") == vm.vm_mac("c3")
    assert iface.find("model").get("type") == "virtio"
    assert iface.find("target") is None, "libvirt must name the tap itself (vnetN)"


def test_domain_xml_boots_the_kernel_with_a_serial_console_to_a_file() -> None:
    dom = _xml()
    assert dom.findtext("./os/kernel").startswith("/boot/vmlinuz-")
    assert dom.findtext("./os/initrd").endswith(".cpio.gz")
    assert "console=ttyS0" in dom.findtext("./os/cmdline")
    serial = dom.find("./devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == "/run/tracepath-l2/c3/vm-console.log"
    assert dom.find("./devices/console").find("target").get("type") == "serial"


def test_domain_xml_carries_nova_metadata_and_the_instance_uuid() -> None:
    dom = _xml()
    assert dom.findtext("uuid") == vm.vm_uuid("c3")
    inst = dom.find("./metadata/nova:instance", NOVA)
    assert inst is not None
    assert inst.findtext("nova:name", namespaces=NOVA) == "tl2-c3-vm"
    assert inst.find("nova:flavor/nova:memory", NOVA).text == str(vm.MEMORY_MIB)
    assert inst.find("nova:ports/nova:port", NOVA).get("uuid")
    assert dom.findtext("description").startswith(vm.MARKER)


def test_domain_xml_escapes_odd_values() -> None:
    dom = _xml(bridge="br'<&\"", console_log="/tmp/a&b.log")
    assert dom.find("./devices/interface/source").get("bridge") == "br'<&\""
    assert dom.find("./devices/serial/source").get("path") == "/tmp/a&b.log"


def test_tap_is_read_from_the_live_xml() -> None:
    live = """<domain type='qemu' id='3'><devices>
      <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><source bridge='x'/>
        <target dev='vnet7'/></interface>
      <interface type='bridge'><mac address='FA:16:3E:1E:66:02'/><source bridge='x'/>
        <target dev='vnet8'/></interface></devices></domain>"""
    assert vm.tap_from_xml(live, "fa:16:3e:1e:66:02") == "vnet8"
    assert vm.tap_from_xml(live, "fa:16:3e:99:99:99") is None


def test_cpio_writer_produces_newc_entries() -> None:
    archive = initramfs._Cpio()
    archive.add("init", 0o100755, b"#!/bin/sh\n")
    archive.add("dev/console", 0o020600, rdev=(5, 1))
    data = archive.finish()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"init\0" in data and b"dev/console\0" in data and b"TRAILER!!!\0" in data
    gzip.compress(data)  # what build_initramfs writes


def test_init_loads_modules_in_dependency_order_and_loops() -> None:
    loop = re.search(r"for m in ([^;]+); do", initramfs.INIT)
    assert loop and loop.group(1).split() == [
        "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
        "virtio_pci", "failover", "net_failover", "virtio_net",
    ]  # fmt: skip
    assert "udhcpc -i eth0 -n -q -t 3 -T 2 -s /udhcpc.script" in initramfs.INIT
    assert "arping -c 1 -w 1 -I eth0" in initramfs.INIT
    assert "tl2-guest: bound $ip from $serverid" in initramfs.UDHCPC_SCRIPT


def test_wait_console_matches_and_times_out(tmp_path) -> None:
    log = tmp_path / "console.log"
    log.write_text("tl2-guest: init\ntl2-guest: bound 198.18.0.148 from 198.18.0.1\n")
    assert vm.wait_console(log, r"bound \S+ from 198\.18\.0\.1", timeout=1)
    assert not vm.wait_console(log, r"no lease", timeout=0.3)
    assert not vm.wait_console(tmp_path / "missing.log", r"x", timeout=0.2)
