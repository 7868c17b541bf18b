"""Every target parser takes arbitrary or mutated input and fails only with TargetError."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.errors import TargetError
from tracer.targets import find_target
from tracer.targets._yaml import parse_yaml
from tracer.targets.base import StaticSource, Target
from tracer.targets.libvirt import parse_domain_xml, parse_network_xml
from tracer.targets.lxc import DictFileSystem, parse_lxc_config, parse_lxc_info, read_config, split_config
from tracer.targets.lxd import parse_lxd_list, parse_lxd_yaml
from tracer.targets.netns import netns_target, parse_ip_link_json
from tracer.targets.xen import parse_xl_list, parse_xl_list_long, parse_xl_network_list, renamed_physicals, vif_names

DATA = Path(__file__).parent / "data" / "targets"
XML_SAMPLES = [p.read_text() for p in sorted(DATA.glob("*.xml"))]
LXC_SAMPLES = [(DATA / "lxc5-busybox-config").read_text()] + [
    p.read_text() for p in sorted((DATA / "lxc-aio1").iterdir())]
YAML_SAMPLES = [p.read_text() for p in sorted(DATA.glob("*.yaml"))]
OTHER_SAMPLES = [p.read_text() for p in sorted(DATA.glob("*.txt")) + sorted(DATA.glob("*.json"))]

XML_TOKENS = st.sampled_from([
    "<domain>", "</domain>", "<domain type='kvm' id='3'>", "<domstatus state='running' pid='9'>", "</domstatus>",
    "<name>", "</name>", "x", "<uuid>", "</uuid>", "<devices>", "</devices>", "<interface type='bridge'>",
    "<interface type='network'>", "<interface type='direct'>", "<interface type='vhostuser'>", "<interface>",
    "</interface>", "<mac address='fa:16:3e:56:ea:fa'/>", "<mac address='zz'/>", "<source bridge='br0'/>",
    "<source network='default' bridge='virbr0'/>", "<source dev='eth0' mode='vepa'/>", "<target dev='tap0'/>",
    "<actual type='bridge'>", "</actual>", "<vlan>", "<tag id='42'/>", "<tag id='x'/>", "</vlan>", "<init pid='5'/>",
    "<metadata>", "</metadata>", "<nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'>",
    "</nova:instance>", "<nova:ports>", "<nova:port uuid='0b5f208b-76'>", "</nova:port>", "</nova:ports>",
    "<network>", "</network>", "<networkstatus>", "</networkstatus>", "<forward mode='bridge'>", "</forward>",
    "<bridge name='b'/>", "<virtualport type='openvswitch'/>", "&amp;", "&lt;", "<!--c-->", "<?xml version='1.0'?>",
    "<!DOCTYPE x>", "<!ENTITY e 'v'>", "&e;", "\n", " ", "'", '"', "=", "<", ">", "/",
])
CONF_TOKENS = st.sampled_from([
    "lxc.net.0.type = veth", "lxc.net.1.type = macvlan", "lxc.net.0.link = br0", "lxc.net.0.veth.pair = p0",
    "lxc.net.0.hwaddr = 00:16:3e:00:00:01", "lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx", "lxc.net.0.vlan.id = 10",
    "lxc.net.0.type = vlan", "lxc.net.0.type = phys", "lxc.net.0.type = bogus", "lxc.net =", "lxc.network =",
    "lxc.network.type = veth", "lxc.network.link = br", "lxc.network.veth.pair = x", "lxc.network.0.type = veth",
    "lxc.net.99999999999999999999.type = veth", "lxc.net.x.type = veth", "lxc.include = /c/a.conf",
    "lxc.include = /c/config", "lxc.include = rel.conf", "lxc.include = /c/dir", "lxc.net.0.veth.vlan.id = none",
    "lxc.net.0.veth.mode = router", "# comment", "", "=", "lxc.", " ", "\n", "\t", "\0",
])
YAML_TOKENS = st.sampled_from([
    "config:", "devices:", "  ", "    ", "eth0:", "type: nic", "nictype: bridged", "nictype: macvlan",
    "parent: br0", "network: lxdbr0", "hwaddr: 00:16:3e:00:00:01", "vlan: 10", "vlan: x", "name: eth0",
    "volatile.eth0.host_name: veth1", "volatile.uuid: 4f0b7c3e-9a1d-4e6b-8c2f-1a3b5c7d9e0f", "- ", "-", ": ",
    "|", "|-", ">", "'", '"', "\\u00e9", "\\x", "[", "]", "{", "}", ",", "#", "---", "...", "&a", "*a", "!t",
    "\n", "\t", "container:", "expanded_devices:", "status: Running", "~", "null", "true",
])


def text_from(tokens):
    return st.lists(st.one_of(tokens, st.text(max_size=6)), max_size=50).map("".join)


def lines_from(tokens):
    return st.lists(st.one_of(tokens, st.text(max_size=10)), max_size=30).map("\n".join)


@st.composite
def mutated(draw, samples):
    """A recorded sample with a few random cuts, insertions and character swaps."""
    text = draw(st.sampled_from(samples))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not text:
            break
        i = draw(st.integers(min_value=0, max_value=len(text) - 1))
        j = draw(st.integers(min_value=i, max_value=min(len(text), i + 40)))
        op = draw(st.sampled_from(["cut", "insert", "swap", "dup"]))
        if op == "cut":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=8)) + text[i:]
        elif op == "swap":
            text = text[:i] + draw(st.characters()) + text[i + 1:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


def only_target_errors(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except TargetError:
        return None


FUZZ = settings(max_examples=int(os.environ.get("TRACEPATH_L2_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
"""300 examples per parser by default; TRACEPATH_L2_FUZZ_EXAMPLES=5000 for a longer hunt."""


@FUZZ
@given(st.one_of(st.text(), text_from(XML_TOKENS), mutated(XML_SAMPLES)))
def test_xml_parsers(text) -> None:
    only_target_errors(parse_domain_xml, text, origin="fuzz.xml", networks=lambda name: None)
    only_target_errors(parse_network_xml, text, origin="fuzz.xml")


@FUZZ
@given(st.one_of(st.text(), lines_from(CONF_TOKENS), mutated(LXC_SAMPLES)), st.booleans(),
       st.lists(st.text(max_size=12), max_size=3))
def test_lxc_config(text, running, links) -> None:
    lines = only_target_errors(split_config, text, origin="config")
    if lines is not None:
        only_target_errors(parse_lxc_config, lines, name="c", running=running, init_pid=7 if running else None,
                           runtime_links=links)
    parse_lxc_info(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(["/c/config", "/c/a.conf", "/c/rel.conf", "/c/dir/x.conf", "/c/dir/y.conf"]),
                       lines_from(CONF_TOKENS), min_size=1))
def test_lxc_includes(files) -> None:
    files.setdefault("/c/config", "lxc.include = /c/a.conf")
    config = only_target_errors(read_config, "/c/config", fs=DictFileSystem(files))
    if config is not None:
        only_target_errors(parse_lxc_config, config.lines, name="c")


@FUZZ
@given(st.one_of(st.text(), lines_from(YAML_TOKENS), mutated(YAML_SAMPLES)))
def test_yaml_and_lxd(text) -> None:
    only_target_errors(parse_yaml, text, origin="fuzz.yaml")
    only_target_errors(parse_lxd_yaml, text, origin="fuzz.yaml")
    only_target_errors(parse_lxd_yaml, text, name="x", origin="fuzz.yaml", running=True, init_pid=3)
    parse_lxd_list(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["ifname", "ifindex", "address", "link_index", "link_netnsid", "linkinfo", "info_kind",
                         "operstate", "mtu", "domid", "config", "c_info", "nics", "devid", "mac", "bridge", "type"]),
        children, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(st.one_of(st.text(), json_values.map(json.dumps), mutated(OTHER_SAMPLES)))
def test_json_and_table_parsers(text) -> None:
    links = only_target_errors(parse_ip_link_json, text)
    if links is not None:
        only_target_errors(netns_target, "ns", links, spec="ns")
    only_target_errors(parse_xl_list_long, text)
    parse_xl_list(text)
    parse_xl_network_list(text)
    vif_names(text.split())
    renamed_physicals(text.split())


SOURCES = [StaticSource([parse_domain_xml(XML_SAMPLES[i]) for i in range(len(XML_SAMPLES))
                         if "<domain" in XML_SAMPLES[i]], kind="libvirt"),
           StaticSource([Target(name="web1", kind="lxc"), Target(name="db-07", kind="lxc")], kind="lxc")]


@FUZZ
@given(st.one_of(st.text(max_size=40), st.sampled_from(["instance-0347", "347", "fa:16:3e:56:ea:fa", "lxc:",
                                                         "pid:", "libvirt:x", ":", "xen:5", "-", "0"])))
def test_find_target(query) -> None:
    only_target_errors(find_target, query, sources=SOURCES)
