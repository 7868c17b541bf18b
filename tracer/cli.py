"""The command line: parse, call, render, exit. Nothing else lives here.

`tracepath-l2 [--dhcp|--arp] TARGET` is the main job; the sub-commands (resolve, check, replay,
lab) sit beside it. Heavy imports (scapy, pyroute2, the labs) happen inside the commands that need
them, so `--help` costs no more than typer itself. One guard turns every TracerError into one line
on stderr and its exit code (see tracer.errors.ExitCode); `--debug` or TRACEPATH_L2_DEBUG=1 shows
the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from tracer import __version__
from tracer.errors import ExitCode, TracerError, UsageError

EXIT_CODES_HELP = (
    "Exit codes: 0 healthy / done, 1 frames stop (see findings), 2 bad usage or input, "
    "3 inconclusive, 4 missing privileges, 5 host lacks a package or kernel feature, 70 internal error, "
    "130 interrupted."
)

app = typer.Typer(
    name="tracepath-l2",
    help="Find which virtual cable between a VM/container and the wire eats its DHCP or ARP frames.\n\n"
    + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help renderer imports rich.markdown/pygments (~65 ms here),
    # and `--help` must cost no more than typer itself.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
lab_app = typer.Typer(
    help="Rebuild real outages in network namespaces, for teaching and testing.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(lab_app, name="lab")


def _version(value: bool) -> None:
    if value:
        print(f"tracepath-l2 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    if debug:
        os.environ["TRACEPATH_L2_DEBUG"] = "1"


# ---------------------------------------------------------------- trace
def _exit_for(status: str, interrupted: bool = False) -> ExitCode:
    if interrupted:
        return ExitCode.INTERRUPTED
    return {"ok": ExitCode.OK, "stopped": ExitCode.STOPPED}.get(status, ExitCode.INCONCLUSIVE)


@app.command("trace")
def trace_cmd(
    target: Annotated[str, typer.Argument(help="VM, container, namespace, or guest MAC.")],
    dhcp: Annotated[bool, typer.Option("--dhcp", help="Follow DHCP exchanges (the default).")] = False,
    arp: Annotated[bool, typer.Option("--arp", help="Follow ARP exchanges instead.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Give up after this many seconds.")] = 30.0,
    probe: Annotated[
        bool, typer.Option("--probe", help="SEND one DISCOVER/ARP request from the guest's interface (opt-in).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    record: Annotated[str | None, typer.Option("--record", help="Write a replayable bundle to this directory.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Walk through each hop, for learners.")] = False,
    nic: Annotated[str | None, typer.Option("--nic", help="Which NIC (MAC or name) of a multi-NIC guest.")] = None,
) -> None:
    """Sniff every hop of TARGET's path at once and say where its DHCP/ARP frames stop, and why."""
    if dhcp and arp:
        raise UsageError("choose one of --dhcp and --arp")
    from tracer.errors import require_root
    from tracer.resolve import resolve_one
    from tracer.trace import run_trace

    require_root("tracing")
    protocol = "arp" if arp else "dhcp"
    path = resolve_one(target, nic)
    with _countdown(protocol, path.guest.name, as_json) as tick:
        result = run_trace(path, target=target, protocol=protocol, timeout=timeout, probe=probe, tick=tick)
    if record:
        from tracer.recording import record_bundle

        record_bundle(record, result, target=target, protocol=protocol)
    _render(result.report, as_json=as_json, explain=explain,
            extra={"probe": result.probe, "interrupted": result.interrupted, "vanished": result.gone,
                   "capture": [c.to_dict() for c in result.evidence.capture], "notes": list(result.evidence.notes),
                   "timings": {k: round(v, 4) for k, v in result.timings.items()}})
    raise typer.Exit(_exit_for(result.report.verdict.status, result.interrupted and not result.report.certain))


def _render(report, *, as_json: bool, explain: bool, extra: dict | None = None) -> None:
    from tracer.render import report as render

    if as_json:
        print(render.as_json(report, extra))
    else:
        render.text(report, explain=explain)
        for key in ("interrupted", "vanished", "probe", "problems", "notes"):
            value = (extra or {}).get(key)
            if value:
                print(f"{key}: {value}")


class _countdown:
    """A live 'waiting... Ns left' line on a terminal's stderr; silent when piped or for --json."""

    def __init__(self, protocol: str, name: str, quiet: bool) -> None:
        self.live = None if quiet or not sys.stderr.isatty() else (protocol, name)

    def __enter__(self):
        if self.live is None:
            return None
        from tracer.render.console import err

        self.status = err().status(f"sniffing every hop for {self.live[0].upper()} of {self.live[1]}...")
        self.status.__enter__()

        def tick(left: float) -> None:
            self.status.update(f"sniffing every hop for {self.live[0].upper()} of {self.live[1]}... {left:.0f}s left")

        return tick

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.status.__exit__(None, None, None)


# ---------------------------------------------------------------- resolve / check
@app.command("resolve")
def resolve_cmd(
    target: Annotated[str, typer.Argument(help="VM, container, namespace, or guest MAC.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the path(s) as JSON.")] = False,
    nic: Annotated[str | None, typer.Option("--nic", help="Only this NIC (MAC or name).")] = None,
) -> None:
    """Print the L2 path(s) of TARGET, guest to wire, with the kernel facts of every hop."""
    from tracer.render import path as render
    from tracer.resolve import resolve_all

    paths = resolve_all(target, nic)
    print(render.as_json(paths)) if as_json else render.text(paths)


@app.command("check")
def check_cmd(
    target: Annotated[str, typer.Argument(help="VM, container, namespace, or guest MAC.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    nic: Annotated[str | None, typer.Option("--nic", help="Only this NIC (MAC or name).")] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="DELETE the leftover links found for TARGET (asks first, on a terminal).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --fix: do not ask.")] = False,
) -> None:
    """Inspect TARGET's path and the host's leftover links without sending anything; exit 1 when a finding is
    an error. A stopped guest is checked from its configuration. Nothing changes without --fix."""
    import json

    from tracer.errors import require_root

    if yes and not fix:
        raise UsageError("--yes confirms --fix; give --fix too")
    if fix:
        require_root("check --fix")
        if not yes and not sys.stdin.isatty():
            raise UsageError("check --fix deletes links and asks first: run it on a terminal, or add --yes")
    from tracer.check import check
    from tracer.check import fix as fix_links

    result = check(target, nic)
    fixed: list[dict] = []
    if fix and result.removable:
        if not as_json:
            _print_check(result)
        if yes or _confirm([lo.command for lo in result.removable]):
            fixed = fix_links(result.removable)
            result = check(target, nic)
            if not as_json:
                print()
                for item in fixed:
                    print(f"fixed: {item['command']}" if item["ok"]
                          else f"not fixed: {item['command']}: {item['error']}")
                print("after the fix:")
        elif not as_json:
            print("nothing changed")
            raise typer.Exit(ExitCode.STOPPED if result.failed else ExitCode.OK)
    if as_json:
        print(json.dumps({"paths": [p.to_dict() for p in result.paths],
                          "findings": [f.to_dict() for f in result.findings], "fixed": fixed}, indent=2))
    else:
        _print_check(result)
    raise typer.Exit(ExitCode.STOPPED if result.failed else ExitCode.OK)


def _print_check(result: Any) -> None:
    from tracer.render import path as render_path
    from tracer.render.report import finding_lines

    render_path.text(result.paths)
    print("findings:" if result.findings else "findings: none")
    for f in result.findings:
        for line in finding_lines(f):
            print(line)


def _confirm(commands: list[str]) -> bool:
    """y/N on the terminal (stderr, so --json output stays one object); anything but y/yes is no."""
    sys.stderr.write("check --fix will run:\n" + "".join(f"  {c}\n" for c in commands)
                     + f"Run {'it' if len(commands) == 1 else 'them'}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


# ---------------------------------------------------------------- replay
@app.command("replay")
def replay_cmd(
    bundle: Annotated[str | None, typer.Argument(help="A bundle directory written by --record.")] = None,
    hop: Annotated[
        list[str] | None, typer.Option("--hop", help="NAME=FILE: a tcpdump capture per hop, guest side first.")
    ] = None,
    fdb: Annotated[str | None, typer.Option("--fdb", help="Saved `bridge fdb show` output.")] = None,
    dmesg: Annotated[str | None, typer.Option("--dmesg", help="Saved dmesg output.")] = None,
    mac: Annotated[str | None, typer.Option("--mac", help="The guest's MAC (guessed from DHCP if absent).")] = None,
    arp: Annotated[bool, typer.Option("--arp", help="With --hop: follow ARP instead of DHCP.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    explain: Annotated[bool, typer.Option("--explain")] = False,
) -> None:
    """Run the same analysis on a recorded bundle, or on tcpdump files taken on each hop."""
    from tracer import replay

    if bundle and hop:
        raise UsageError("give a bundle directory or --hop files, not both")
    if bundle:
        result = replay.replay_bundle(bundle)
    else:
        pairs = []
        for item in hop or []:
            name, sep, file = item.partition("=")
            if not sep or not name or not file:
                raise UsageError(f"--hop takes NAME=FILE, not {item!r}")
            pairs.append((name, file))
        result = replay.replay_files(pairs, protocol="arp" if arp else "dhcp", mac=mac,
                                     fdb_text=replay.read_text(fdb), dmesg_text=replay.read_text(dmesg))
    _render(result.report, as_json=as_json, explain=explain,
            extra={"problems": result.problems, "packets": result.packets, "matched": result.matched})
    raise typer.Exit(_exit_for(result.report.verdict.status))


# ---------------------------------------------------------------- lab
@lab_app.command("list")
def lab_list() -> None:
    """List the scenarios (and the labs that are up)."""
    from tracer.lab.runner import running
    from tracer.lab.scenarios import SCENARIOS
    from tracer.render.lab import lab_list as render

    render([(s.name, "|".join(s.guests), s.summary) for s in SCENARIOS.values()], running())


@lab_app.command("up")
def lab_up(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `lab list`).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Lab name (1-6 of a-z0-9).")] = "lab",
    guest: Annotated[
        str | None, typer.Option("--guest", "-g", help="ns (namespace), vm (libvirt/QEMU) or lxc.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was built as one JSON object.")] = False,
) -> None:
    """Build SCENARIO and print what it built and what to try next."""
    from tracer.lab.runner import up
    from tracer.render.lab import lab_up as render

    render(up(scenario, name=name, guest=guest).info, as_json=as_json)


@lab_app.command("down")
def lab_down(
    name: Annotated[str, typer.Option("--name", "-n", help="Lab name.")] = "lab",
    all_labs: Annotated[bool, typer.Option("--all", help="Tear down every lab that is up.")] = False,
) -> None:
    """Tear a lab down completely: namespaces, links, rules, daemons, containers, domains."""
    from tracer.lab.runner import down, running

    for lab in running() if all_labs else [name]:
        removed = down(lab)
        print(f"lab {lab} {'is down' if removed else 'was not up'}")


# ---------------------------------------------------------------- entry point
SUBCOMMANDS = {"lab", "resolve", "check", "replay", "trace"}


def _route(argv: list[str]) -> list[str]:
    """`tracepath-l2 [opts] TARGET` means `tracepath-l2 trace [opts] TARGET`."""
    if "trace" not in app_commands():
        return argv
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first in SUBCOMMANDS:
        return argv
    if any(a in ("--version",) for a in argv):
        return argv
    return ["trace", *argv]


def app_commands() -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: the one guard between our errors and the user."""
    import click

    args = _route(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args or os.environ.get("TRACEPATH_L2_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="tracepath-l2", standalone_mode=False)
    except TracerError as exc:
        if debug:
            raise
        print(f"tracepath-l2: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except click.exceptions.Abort:
        print("tracepath-l2: interrupted", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        print("tracepath-l2: interrupted", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    except click.exceptions.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except BrokenPipeError:
        code = ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - the one place a bug meets the user: one line, not a traceback
        if debug:
            raise
        print(f"tracepath-l2: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        code = ExitCode.INTERNAL
    return int(code or 0)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
