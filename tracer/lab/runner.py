"""Bring a lab up and down: the only place that knows the order of things.

`up` writes the state file first and tears everything down on any failure, including Ctrl-C and
SIGTERM, so a half-built lab never survives the command that started it. `down` works from the
state file and, for what it may have missed, from the names derived from the lab name.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tracer.errors import UsageError, require_root
from tracer.lab import faults, network
from tracer.lab.names import LabNames
from tracer.lab.scenarios import SCENARIOS, Context, Scenario, default_guest
from tracer.lab.shell import quiet
from tracer.lab.state import LabState, all_labs, check_name


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A `kill` of `lab up` must clean up like Ctrl-C does."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. inside a test worker): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def scenario_or_error(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


def in_use(name: str) -> bool:
    names = LabNames(name)
    return LabState.load(name) is not None or Path(f"/sys/class/net/{names.bridge}").exists()


def abandoned(name: str) -> bool:
    """A lab whose every daemon is gone is debris from a killed session or CI worker, not a lab in use.

    Its links and namespaces may still stand, but nothing in it works any more; `up` may clear it
    instead of making the operator run `lab down` first.
    """
    state = LabState.load(name)
    return (
        state is not None
        and bool(state.processes)
        and not any(network.is_ours(int(p["pid"]), str(p["match"])) for p in state.processes)
    )


def up(scenario_name: str, name: str = "lab", guest: str | None = None) -> LabState:
    """Build `scenario` as lab `name`; returns its state, whose `info` says what was built."""
    scenario = scenario_or_error(scenario_name)
    check_name(name)
    guest = guest or default_guest(scenario)
    if guest not in scenario.guests:
        raise UsageError(
            f"scenario {scenario.name} works with --guest {' or '.join(scenario.guests)}, not {guest}"
        )
    require_root("lab up")
    if abandoned(name):
        down(name)
    if in_use(name):
        raise UsageError(f"a lab named {name!r} is already up; `tracepath-l2 lab down --name {name}` first")
    state = LabState(name=name, scenario=scenario.name, guest_kind=guest)
    state.save()
    names = LabNames(name)
    try:
        with _sigterm_as_interrupt():
            network.build_base(state, names, pin_bridge_mac=scenario.pin_bridge_mac)
            server = network.start_dhcp_server(state, names) if scenario.dhcp_server else {}
            guest_info = _attach_guest(state, names, guest, start=scenario.start_guest)
            fault = scenario.apply(Context(state, names, guest_info)) if scenario.apply else {}
            state.info = _describe(scenario, names, guest_info, server, fault)
            state.save()
    except BaseException:
        teardown(state)
        raise
    return state


def _attach_guest(state: LabState, names: LabNames, guest: str, *, start: bool) -> dict[str, Any]:
    if guest == "ns":
        return network.add_ns_guest(state, names, client=start)
    if guest == "vm":
        from tracer.lab import vm

        info = vm.start_vm(state, bridge=names.bridge, lab_name=names.lab)
        return {"kind": "vm", "target": info["domain"], "mac": info["mac"], "port": info["tap"],
                "log": info["console_log"], **info}
    from tracer.lab import container

    info = container.create_container(state, lab_name=names.lab, bridge=names.bridge, start=start)
    return {"kind": "lxc", "target": info["name"], "mac": info["mac"], "port": info["veth"], **info}


def _describe(
    scenario: Scenario, names: LabNames, guest: dict[str, Any], server: dict[str, Any], fault: dict[str, Any]
) -> dict[str, Any]:
    namespaces = [names.upstream_ns] + ([names.guest_ns] if guest["kind"] == "ns" else [])
    hops = [
        f"{guest['target']}:eth0 (guest)",
        f"{guest['port']} (guest-port)",
        f"{names.bridge} (bridge)",
        f"{names.uplink} (uplink)",
        f"{names.upstream_ns}:eth0 (upstream, dnsmasq)" if server else f"{names.upstream_ns}:eth0 (upstream)",
    ]
    fmt = {"target": guest["target"], "bridge": names.bridge, "mac": guest["mac"], **fault}
    return {
        "name": names.lab,
        "scenario": scenario.name,
        "summary": scenario.summary,
        "seed": scenario.seed,
        "target": guest["target"],
        "guest": guest,
        "namespaces": namespaces,
        "bridge": names.bridge,
        "uplink": names.uplink,
        "server": server,
        "hops": hops,
        "fault": fault,
        "try_next": [t.format(**fmt) for t in scenario.try_next],
    }


def apply_fault(state: LabState, scenario_name: str) -> dict[str, Any]:
    """Move a running lab to another fault (tests share one booted VM this way)."""
    scenario = scenario_or_error(scenario_name)
    names = LabNames(state.name)
    ctx = Context(state, names, state.info["guest"])
    return scenario.apply(ctx) if scenario.apply else {}


def revert_fault(state: LabState, scenario_name: str) -> None:
    scenario = scenario_or_error(scenario_name)
    if scenario.revert:
        scenario.revert(Context(state, LabNames(state.name), state.info["guest"]))


def down(name: str = "lab") -> bool:
    """Tear lab `name` down; False when there was nothing to remove."""
    check_name(name)
    require_root("lab down")
    state = LabState.load(name)
    if state is None and not in_use(name):
        return False
    teardown(state or LabState(name=name))
    return True


def teardown(state: LabState) -> None:
    """Remove everything the state records plus every name the lab could have used. Never raises."""
    names = LabNames(state.name)
    if state.domains:
        from tracer.lab import vm

        for dom in reversed(state.domains):
            vm.destroy_domain(dom)
    for nwfilter in reversed(state.nwfilters):
        quiet(["virsh", "-c", "qemu:///system", "nwfilter-undefine", nwfilter])
    from tracer.lab import container

    for ct in dict.fromkeys([*reversed(state.containers), container.container_name(names.lab)]):
        if state.containers or Path(f"/var/lib/lxc/{ct}").exists():
            container.destroy_container(ct)
    for proc in reversed(state.processes):
        network.stop_process(int(proc["pid"]), str(proc["match"]))
    namespaces = dict.fromkeys([*state.namespaces, names.guest_ns, names.upstream_ns])
    for ns in namespaces:
        if Path(f"/run/netns/{ns}").exists():
            network.kill_namespace_processes(ns)
    for mac, dev in reversed(state.fdb):
        quiet(["bridge", "fdb", "del", mac, "dev", dev, "master"])
    faults.revert_xt_rules(state)
    for family, table in reversed(state.nft_tables):
        quiet(["nft", "delete", "table", family, table])
    for link in reversed([*state.links, names.bridge, names.uplink, names.guest_port]):
        if Path(f"/sys/class/net/{link}").exists():
            quiet(["ip", "link", "del", link])
    for ns in namespaces:
        if Path(f"/run/netns/{ns}").exists():
            quiet(["ip", "netns", "del", ns])
    for key, value in state.sysctls.items():
        quiet(["sysctl", "-qw", f"{key}={value}"])
    for path in reversed(state.paths):
        quiet(["rm", "-rf", "--one-file-system", path])
    state.forget()


def running() -> list[str]:
    return all_labs()
