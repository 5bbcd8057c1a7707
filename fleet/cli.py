"""The `fleet` command: parse, call the core, render. Nothing else lives here.

One error boundary (`main`): a FleetError becomes one readable line and its exit status; an
unexpected exception becomes a traceback plus a hint to report it.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from fleet.errors import ExitStatus, FleetError

# The contract's exit codes, shown under `fleet --help` (blank lines keep rich from joining them).
EXIT_CODES = "\n\n".join([
    "Exit status:",
    "0 = every selected host succeeded and every file was handled",
    "1 = a host failed or a file could not be handled (the others still ran); scan --fail-on matched; "
    "a restore refused a changed file",
    "2 = bad usage, inventory or playbook, an unknown host, group, agent or run id: nothing was run",
    "3 = a host was skipped because another run holds it: nothing was run there",
    "130 = interrupted",
])
# suggest_commands=False: click already prints "Did you mean …?"; typer's own would repeat it.
app = typer.Typer(no_args_is_help=True, suggest_commands=False, epilog=EXIT_CODES,
                  help="Keep a fleet of OpenClaw agent hosts healthy: back up, trim, prune, report.")
inventory_app = typer.Typer(no_args_is_help=True, suggest_commands=False, help="Write or inspect the inventory.")
agent_app = typer.Typer(no_args_is_help=True, suggest_commands=False, help="The cleanup agent that runs on each host.")
schedule_app = typer.Typer(no_args_is_help=True, suggest_commands=False,
                           help="Install, list, remove and run recurring runs.")
playbook_app = typer.Typer(no_args_is_help=True, suggest_commands=False, help="Inspect playbooks.")
app.add_typer(inventory_app, name="inventory")
app.add_typer(playbook_app, name="playbook")
app.add_typer(agent_app, name="agent")
app.add_typer(schedule_app, name="schedule")

InventoryOpt = typer.Option(Path("inventory.toml"), "-i", "--inventory",
                            help="Inventory file: inventory.toml, or an Ansible inventory (INI or YAML).")
LimitOpt = typer.Option(None, "-l", "--limit", help="Hosts, groups or globs separated by , or : as in Ansible; all; "
                                                    "&x intersects; !x excludes; @FILE reads a retry list.")
ForksOpt = typer.Option(None, "-f", "--forks", help="Hosts worked on at once (default: min(50, hosts)).")
DryRunOpt = typer.Option(False, "--dry-run", "--check", help="Show exactly what a real run would do; write nothing.")
AllFleetsOpt = typer.Option(False, "--all-fleets", help="Every fleet's runs, not only those of the -i inventory.")
# Options of the whole command line; main() lets them stand after the command too (`fleet scan -v`).
GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "-q", "--quiet")
GLOBAL_WITH_VALUE = ("--log-file",)
JsonOpt = typer.Option(False, "--json", help="Print the contract's JSON document instead of tables.")
AcceptNewOpt = typer.Option(False, "--accept-new-host-keys", help="Accept and record keys of hosts not yet in known_hosts.")


def _exit(code: int) -> None:
    raise typer.Exit(int(code))


def _version(value: bool) -> None:
    if value:
        from fleet import __version__

        typer.echo(f"fleet {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print fleet's version."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True,
                                help="Each host's SSH and agent steps; -vv also the SSH conversation and the agent's own lines."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress lines: only the result and errors."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Append every step, with times, to FILE (mode 0600)."),
) -> None:
    """Keep a fleet of OpenClaw agent hosts healthy: back up, trim, prune, report."""
    from fleet.logs import configure

    configure(verbose, quiet, log_file)


def _fleet_scope(inventory: Path, all_fleets: bool):
    """The history scope for `history` and `report`: the -i inventory's fleet, or every fleet."""
    from fleet.report.history import ALL_FLEETS, fleet_key, scoped

    return scoped(ALL_FLEETS if all_fleets else fleet_key(inventory))


@inventory_app.command("init")
def inventory_init(
    from_ssh_config: Optional[Path] = typer.Option(None, "--from-ssh-config", help="ssh_config to read (default: ~/.ssh/config)."),
    from_ansible: Optional[Path] = typer.Option(None, "--from-ansible", help="Read this Ansible inventory (INI or YAML) instead."),
    output: Path = typer.Option(Path("inventory.toml"), "-o", "--output", help="Where to write."),
    probe: bool = typer.Option(False, "--probe", help="Look on each host (read-only, over SSH) for OpenClaw state dirs."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file (a copy is kept beside it)."),
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Write a commented inventory.toml from ~/.ssh/config's Host entries or an Ansible inventory."""
    from fleet.control.probe import init_command

    _exit(init_command(from_ssh_config=from_ssh_config, from_ansible=from_ansible, output=output, probe=probe,
                       force=force, accept_new_host_keys=accept_new_host_keys))


@inventory_app.command("check")
def inventory_check(inventory: Path = InventoryOpt) -> None:
    """Validate the inventory; list hosts, groups and agents. Exit 2 on any error."""
    from fleet.config.inventory import describe_inventory, load_inventory

    inv = load_inventory(inventory)
    for warning in inv.warnings:
        typer.echo(f"fleet: warning: {warning}", err=True)
    typer.echo(describe_inventory(inv, include_warnings=False))


@playbook_app.command("check")
def playbook_check(
    playbook: str = typer.Argument(..., help="Playbook name (weekly, emergency, daily-prune, maintenance) or path."),
    json_out: bool = typer.Option(False, "--json", help="Print the compiled plan sections (operations, backup)."),
) -> None:
    """Validate a playbook and show what it will do. Exit 2 on any error."""
    import json

    from fleet.config.playbook import describe_playbook, load_playbook

    pb = load_playbook(playbook)
    for warning in pb.warnings:
        typer.echo(f"fleet: warning: {warning}", err=True)
    if json_out:
        typer.echo(json.dumps({"playbook": pb.name, "path": str(pb.path), "operations": pb.operations,
                               "backup": pb.backup}, indent=2))
    else:
        typer.echo(describe_playbook(pb))


@playbook_app.command("compile")
def playbook_compile(
    playbook: str = typer.Argument(..., help="Playbook name (weekly, emergency, daily-prune, maintenance) or path."),
    json_out: bool = typer.Option(True, "--json", show_default=False, help="Print the plan as JSON (the only format)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="The run id (default: a new one, as fleet run makes)."),
    clock_ms: Optional[int] = typer.Option(None, "--now-ms", help="The run's clock in epoch ms (default: now)."),
) -> None:
    """Print the plan `fleet run PLAYBOOK` sends, for the Ansible collection's module. Exit 2 on any error."""
    from fleet.control.plan_compile import compile_command

    del json_out   # accepted as `playbook check --json` is; JSON is the only output

    _exit(compile_command(playbook, run_id, clock_ms))


@app.command()
def scan(
    inventory: Path = InventoryOpt,
    limit: Optional[str] = LimitOpt,
    forks: Optional[int] = ForksOpt,
    json_out: bool = JsonOpt,
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when a finding of this severity exists: critical|warning."),
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Read-only: sizes, record counts and health of every store and transcript on every host."""
    from fleet.control.controller import scan as scan_hosts
    from fleet.control.finish import Report, finish

    report = Report(json_out=json_out, fail_on=fail_on)
    _exit(finish(scan_hosts(inventory, limit, forks, accept_new_host_keys), report))


@app.command()
def run(
    playbook: str = typer.Argument(..., help="Playbook name (weekly, emergency, daily-prune, maintenance) or path."),
    inventory: Path = InventoryOpt,
    limit: Optional[str] = LimitOpt,
    forks: Optional[int] = ForksOpt,
    dry_run: bool = DryRunOpt,
    json_out: bool = JsonOpt,
    notify: bool = typer.Option(False, "--notify", help="Send the summary to the notifiers configured in fleet.toml."),
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Back up, then trim and prune per PLAYBOOK on all selected hosts in parallel; print before/after."""
    from fleet.control.controller import run as run_playbook
    from fleet.control.finish import Report, finish

    report = Report(json_out=json_out, notify_with=inventory if notify else None)
    _exit(finish(run_playbook(playbook, inventory, limit, forks, dry_run, accept_new_host_keys), report))


@app.command()
def report(
    run_id: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | json | html"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write to FILE instead of stdout."),
    trend: bool = typer.Option(False, "--trend", help="Size over time, growth rate and threshold forecast per agent."),
    host: Optional[str] = typer.Option(None, "--host"),
    agent: Optional[str] = typer.Option(None, "--agent"),
    top: int = typer.Option(10, "--top", help="How many of the largest files to list."),
    inventory: Path = InventoryOpt,
    all_fleets: bool = AllFleetsOpt,
) -> None:
    """Re-render a recorded run (default: the latest of this inventory's fleet)."""
    from fleet.report.render import report_command

    with _fleet_scope(inventory, all_fleets):
        _exit(report_command(run_id=run_id, fmt=fmt, output=output, trend=trend, host=host, agent=agent, top=top))


@app.command()
def history(json_out: bool = JsonOpt, limit: int = typer.Option(50, "--last", help="How many runs to list."),
            inventory: Path = InventoryOpt, all_fleets: bool = AllFleetsOpt) -> None:
    """List the recorded runs of this inventory's fleet (--all-fleets: of every fleet)."""
    from fleet.report.render import history_command

    with _fleet_scope(inventory, all_fleets):
        _exit(history_command(json_out=json_out, last=limit))


@app.command()
def restore(
    run_id: str = typer.Argument(..., help="The run whose backups to put back."),
    host: Optional[str] = typer.Option(None, "--host", help="Only this host (the same as -l HOST)."),
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's files."),
    inventory: Path = InventoryOpt,
    limit: Optional[str] = LimitOpt,
    forks: Optional[int] = ForksOpt,
    dry_run: bool = DryRunOpt,
    force: bool = typer.Option(False, "--force", help="Overwrite files that changed after the run (they are backed up first)."),
    json_out: bool = JsonOpt,
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Put a run's backups back, verifying checksums; refuse files changed since, unless --force."""
    from fleet.control.finish import Report, finish
    from fleet.control.restore import restore as restore_run

    report = Report(json_out=json_out)
    _exit(finish(restore_run(run_id, inventory, host, agent, dry_run, force, accept_new_host_keys,
                             limit, forks), report))


@app.command("import-ansible")
def import_ansible(
    file: Path = typer.Argument(..., help="The fleet.openclaw.fleet_results callback's file, ansible.posix.json "
                                          "output, or a mapping of hosts to the module's results."),
    json_out: bool = JsonOpt,
    notify: bool = typer.Option(False, "--notify", help="Send the summary to the notifiers configured in fleet.toml."),
    inventory: Path = typer.Option(Path("inventory.toml"), "-i", "--inventory",
                                   help="The fleet the run belongs to (its fleet.toml for --notify)."),
) -> None:
    """Record the results of the Ansible collection's module as a fleet run (history, report, restore)."""
    from fleet.control.finish import Report, finish
    from fleet.report.ansible_import import import_runs

    report = Report(json_out=json_out, notify_with=inventory if notify else None)   # before anything is recorded
    statuses = []
    for run in import_runs(file, inventory):
        statuses.append(finish(run, report))
        typer.echo(f"fleet: recorded Ansible run {run.run_id} ({len(run.hosts)} host(s)) from {file}", err=True)
    _exit(max(statuses, default=0))


@agent_app.command("export")
def agent_export(path: Path = typer.Argument(..., help="Where to write the self-contained agent.")) -> None:
    """Write the self-contained agent to PATH, runnable as `python3 PATH --help`."""
    from fleet.control.bundle import export_agent

    digest = export_agent(path)
    typer.echo(f"wrote {path} (sha256 {digest})")


@app.command()
def demo(
    down: bool = typer.Option(False, "--down", help="Stop the demo fleet's sshd processes (by pid)."),
    build_only: bool = typer.Option(False, "--build-only", help="Build and start the fleet; do not run the playbook."),
    playbook: str = typer.Option("weekly", "--playbook"),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where the demo fleet lives (default: ~/.local/state/fleet/demo)."),
) -> None:
    """Build a local demo fleet with realistic bloated sessions and run the cleanup on it."""
    from fleet.demo.demofleet import demo_command

    _exit(demo_command(down=down, build_only=build_only, playbook=playbook, directory=directory))


@schedule_app.command("install")
def schedule_install(
    name: str = typer.Argument(...),
    playbook: str = typer.Option(..., "--playbook", help="Playbook name or path, or 'scan'."),
    at: str = typer.Option(..., "--at", help="Cron expression (\"0 3 * * 0\") or, for systemd, an OnCalendar= value."),
    inventory: Path = InventoryOpt,
    limit: Optional[str] = LimitOpt,
    backend: str = typer.Option("auto", "--backend", help="auto | cron | systemd"),
    unit_dir: Optional[Path] = typer.Option(None, "--unit-dir", help="systemd unit directory (default: the user's)."),
    notify: bool = typer.Option(True, "--notify/--no-notify"),
) -> None:
    """Install a recurring run on this control host."""
    from fleet.schedule.schedules import install_command

    _exit(install_command(name=name, playbook=playbook, at=at, inventory=inventory, limit=limit,
                          backend=backend, unit_dir=unit_dir, notify=notify))


@schedule_app.command("list")
def schedule_list(json_out: bool = JsonOpt, unit_dir: Optional[Path] = typer.Option(None, "--unit-dir")) -> None:
    """List installed schedules."""
    from fleet.schedule.schedules import list_command

    _exit(list_command(json_out=json_out, unit_dir=unit_dir))


@schedule_app.command("remove")
def schedule_remove(name: str = typer.Argument(...), unit_dir: Optional[Path] = typer.Option(None, "--unit-dir")) -> None:
    """Remove an installed schedule (only fleet's own lines or units)."""
    from fleet.schedule.schedules import remove_command

    _exit(remove_command(name=name, unit_dir=unit_dir))


@schedule_app.command("run")
def schedule_run(name: str = typer.Argument(...)) -> None:
    """Run an installed schedule now (what the timer calls). Exit 3 if it is already running."""
    from fleet.schedule.run import run_schedule

    _exit(run_schedule(name))


def _click_exceptions():
    """Click's exceptions module: typer >= 0.20 vendors click as typer._click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def hoist_global_options(argv: List[str]) -> List[str]:
    """`fleet scan -v` as `fleet -v scan`: the whole command line's options may follow the command.

    Only GLOBAL_FLAGS and GLOBAL_WITH_VALUE (with their value) move to the front; anything after
    `--` stays where it is.
    """
    front, rest, index = [], [], 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg in GLOBAL_WITH_VALUE and index + 1 < len(argv):
            front.extend(argv[index:index + 2])
            index += 1
        elif any(arg.startswith(opt + "=") for opt in GLOBAL_WITH_VALUE):
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: the one error boundary of fleet."""
    try:
        args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
        # Without standalone mode, click returns a typer.Exit's code instead of exiting. The program
        # name is fixed so `python -m fleet` and the console script offer the same completion.
        code = app(args=args, prog_name="fleet", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FleetError as exc:
        typer.echo(f"fleet: {exc}", err=True)
        sys.exit(int(exc.exit_status))
    except KeyboardInterrupt:
        typer.echo("fleet: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary for the unexpected
        click_exceptions = _click_exceptions()
        if isinstance(exc, click_exceptions.ClickException):
            exc.show()
            sys.exit(int(ExitStatus.USAGE))
        if isinstance(exc, getattr(click_exceptions, "Abort", ())):
            typer.echo("fleet: interrupted", err=True)
            sys.exit(int(ExitStatus.INTERRUPTED))
        import traceback

        traceback.print_exc()
        typer.echo("fleet: unexpected error (a bug): please report it with the traceback above", err=True)
        sys.exit(int(ExitStatus.FAILED))
