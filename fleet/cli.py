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

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Keep a fleet of OpenClaw agent hosts healthy: back up, trim, prune, report.")
inventory_app = typer.Typer(no_args_is_help=True, help="Inspect the inventory.")
agent_app = typer.Typer(no_args_is_help=True, help="The cleanup agent that runs on each host.")
schedule_app = typer.Typer(no_args_is_help=True, help="Install, list, remove and run recurring runs.")
playbook_app = typer.Typer(no_args_is_help=True, help="Inspect playbooks.")
app.add_typer(inventory_app, name="inventory")
app.add_typer(playbook_app, name="playbook")
app.add_typer(agent_app, name="agent")
app.add_typer(schedule_app, name="schedule")

InventoryOpt = typer.Option(Path("inventory.toml"), "-i", "--inventory", help="Inventory file.")
LimitOpt = typer.Option(None, "--limit", help="Hosts, groups or globs, comma-separated; !x excludes; @FILE reads a retry list.")
ForksOpt = typer.Option(None, "--forks", help="Hosts worked on at once (default: min(50, hosts)).")
JsonOpt = typer.Option(False, "--json", help="Print the contract's JSON document instead of tables.")
AcceptNewOpt = typer.Option(False, "--accept-new-host-keys", help="Accept and record keys of hosts not yet in known_hosts.")


def _exit(code: int) -> None:
    raise typer.Exit(int(code))


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
    from fleet.control.controller import scan_command

    _exit(scan_command(inventory=inventory, limit=limit, forks=forks, json_out=json_out,
                       fail_on=fail_on, accept_new_host_keys=accept_new_host_keys))


@app.command()
def run(
    playbook: str = typer.Argument(..., help="Playbook name (weekly, emergency, daily-prune, maintenance) or path."),
    inventory: Path = InventoryOpt,
    limit: Optional[str] = LimitOpt,
    forks: Optional[int] = ForksOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show exactly what a real run would do; write nothing."),
    json_out: bool = JsonOpt,
    notify: bool = typer.Option(False, "--notify", help="Send the summary to the notifiers configured in fleet.toml."),
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Back up, then trim and prune per PLAYBOOK on all selected hosts in parallel; print before/after."""
    from fleet.control.controller import run_command

    _exit(run_command(playbook=playbook, inventory=inventory, limit=limit, forks=forks, dry_run=dry_run,
                      json_out=json_out, notify=notify, accept_new_host_keys=accept_new_host_keys))


@app.command()
def report(
    run_id: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | json | html"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write to FILE instead of stdout."),
    trend: bool = typer.Option(False, "--trend", help="Size over time, growth rate and threshold forecast per agent."),
    host: Optional[str] = typer.Option(None, "--host"),
    agent: Optional[str] = typer.Option(None, "--agent"),
    top: int = typer.Option(10, "--top", help="How many of the largest files to list."),
) -> None:
    """Re-render a recorded run (default: the latest)."""
    from fleet.report.render import report_command

    _exit(report_command(run_id=run_id, fmt=fmt, output=output, trend=trend, host=host, agent=agent, top=top))


@app.command()
def history(
    action: Optional[str] = typer.Argument(None, metavar="[sync]",
                                           help="sync: read the journals on the hosts and complete the history "
                                                "(runs interrupted, or started from another control host)."),
    json_out: bool = JsonOpt,
    limit: int = typer.Option(50, "--last", help="How many runs to list."),
    inventory: Path = InventoryOpt,
    host_limit: Optional[str] = typer.Option(None, "--limit", "-l", help="sync: only these hosts (as for run)."),
    forks: Optional[int] = typer.Option(None, "--forks", help="sync: hosts at once."),
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """List recorded runs; `fleet history sync` first completes them from the hosts' journals."""
    if action not in (None, "sync"):
        raise typer.BadParameter(f"unknown action {action!r}; the only one is `sync`", param_hint="ACTION")
    if action == "sync":
        from fleet.control.journal import sync_command

        _exit(sync_command(inventory=inventory, limit=host_limit, forks=forks,
                           accept_new_host_keys=accept_new_host_keys))
    from fleet.report.render import history_command

    _exit(history_command(json_out=json_out, last=limit))


@app.command()
def restore(
    run_id: str = typer.Argument(..., help="The run whose backups to put back."),
    host: Optional[str] = typer.Option(None, "--host"),
    agent: Optional[str] = typer.Option(None, "--agent"),
    inventory: Path = InventoryOpt,
    dry_run: bool = typer.Option(False, "--dry-run"),
    force: bool = typer.Option(False, "--force", help="Overwrite files that changed after the run (they are backed up first)."),
    json_out: bool = JsonOpt,
    accept_new_host_keys: bool = AcceptNewOpt,
) -> None:
    """Put a run's backups back, verifying checksums; refuse files changed since, unless --force."""
    from fleet.control.restore import restore_command

    _exit(restore_command(run_id=run_id, host=host, agent=agent, inventory=inventory, dry_run=dry_run,
                          force=force, json_out=json_out, accept_new_host_keys=accept_new_host_keys))


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
    retry_for: Optional[str] = typer.Option(None, "--retry-for",
                                            help="Retry hosts the run could not reach, with back-off, for this long (\"6h\")."),
) -> None:
    """Install a recurring run on this control host."""
    from fleet.schedule.schedules import install_command

    _exit(install_command(name=name, playbook=playbook, at=at, inventory=inventory, limit=limit,
                          backend=backend, unit_dir=unit_dir, notify=notify, retry_for=retry_for))


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
def schedule_run(name: str = typer.Argument(...),
                 catch_up: bool = typer.Option(False, "--catch-up",
                                               help="Run only if a scheduled time was missed (cron's catch-up line).")) -> None:
    """Run an installed schedule now (what the timer calls). Exit 3 if it is already running."""
    from fleet.schedule.schedules import run_scheduled_command

    _exit(run_scheduled_command(name=name, catch_up=catch_up))


def _click_exceptions():
    """Click's exceptions module: typer >= 0.20 vendors click as typer._click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: the one error boundary of fleet."""
    try:
        # Without standalone mode, click returns a typer.Exit's code instead of exiting.
        code = app(args=argv, standalone_mode=False)
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
