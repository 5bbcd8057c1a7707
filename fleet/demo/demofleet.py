"""`fleet demo`: a local fleet that reproduces the field report, then the weekly cleanup on it.

Two hosts, `pc-a` and `t440` (fleet.demo.gen.DEMO_FLEET), each its own real sshd on 127.0.0.1 with its
own port, host key and OpenClaw state dir; one generated client key; a generated known_hosts and
an inventory that uses them with strict host-key checking. Every build starts from scratch (the
previous demo's sshd processes are stopped by their recorded pids, the state is regenerated), so
the demo tells the same before/after story each time. The sshd processes outlive the command, so
`fleet scan -i <dir>/inventory.toml` works afterwards; `fleet demo --down` stops exactly them.
Where sshd cannot run, the inventory says `connection = "local"` instead, and the demo says why.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

from fleet.errors import UsageError
from fleet.demo.gen import DEMO_FLEET, generate_host
from fleet.demo.sshd import SshdServer, SshdUnavailable, make_keypair, pid_alive, public_key_line, stop_sshd_pid, write_known_hosts
from fleet.units import human_bytes

DEMO_SEED = 1
MARKER = ".fleet-demo"
PIDS_FILE = "pids.json"
GROUPS = {"pc-a": "workstations", "t440": "servers"}


def default_directory() -> Path:
    """$FLEET_STATE_DIR/demo, else ~/.local/state/fleet/demo."""
    base = os.environ.get("FLEET_STATE_DIR")
    if base:
        return Path(base).expanduser() / "demo"
    return Path.home() / ".local" / "state" / "fleet" / "demo"


def demo_command(down: bool, build_only: bool, playbook: str, directory: Optional[Path]) -> int:
    """Build (or with `down`, stop) the demo fleet; unless `build_only`, run `playbook` on it.

    Returns the playbook run's exit status, or 0. Raises UsageError when `directory` holds
    something that is not a fleet demo (it would be deleted otherwise).
    """
    directory = (directory or default_directory()).expanduser().absolute()
    if down:
        stopped = stop_demo(directory)
        if not stopped:
            typer.echo(f"no demo sshd running (from {directory / PIDS_FILE})")
        for line in stopped:
            typer.echo(line)
        return 0
    inventory = build_demo(directory)
    if build_only:
        return 0
    from fleet.control.controller import run
    from fleet.control.finish import finish

    typer.echo(f"\nRunning the {playbook!r} playbook on the demo fleet:\n")
    return finish(run(playbook, inventory))


def stop_demo(directory: Path) -> List[str]:
    """Stop the sshd processes recorded in `<directory>/pids.json` (only those); say what happened."""
    record = _read_pids(directory)
    lines = []
    for name, info in record.items():
        pid = int(info["pid"])
        if stop_sshd_pid(pid, info.get("config")):
            lines.append(f"stopped {name}: sshd pid {pid} (port {info.get('port')})")
        elif pid_alive(pid):
            lines.append(f"{name}: pid {pid} is no longer the demo's sshd; left alone")
        else:
            lines.append(f"{name}: sshd pid {pid} was not running")
    pids_path = directory / PIDS_FILE
    if pids_path.exists():
        pids_path.unlink()
    return lines


def _read_pids(directory: Path) -> Dict[str, dict]:
    try:
        return json.loads((directory / PIDS_FILE).read_text()).get("hosts", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _prepare_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()) and not (directory / MARKER).exists():
        raise UsageError(f"{directory} exists and is not a fleet demo directory; choose another with --dir")
    for line in stop_demo(directory):
        typer.echo(f"previous demo: {line}")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)
    (directory / MARKER).write_text("built by `fleet demo`; `fleet demo` deletes and rebuilds this folder\n")


def build_demo(directory: Path) -> Path:
    """Generate the demo state, start one sshd per host, write known_hosts + inventory; return its path."""
    began = time.monotonic()
    _prepare_directory(directory)
    now_ms = int(time.time() * 1000)
    summaries = {}
    for spec in DEMO_FLEET:
        summaries[spec.name] = generate_host(directory / "hosts" / spec.name / "state", spec, DEMO_SEED, now_ms)
    servers: Dict[str, SshdServer] = {}
    try:
        servers = _start_servers(directory)
    except SshdUnavailable as exc:
        for server in servers.values():
            server.stop()
        servers = {}
        typer.echo(f"sshd cannot run here ({exc}); the demo hosts use connection = \"local\" instead.")
    inventory = _write_inventory(directory, summaries, servers)
    _describe(directory, summaries, servers, inventory, time.monotonic() - began)
    return inventory


def _start_servers(directory: Path) -> Dict[str, SshdServer]:
    user = pwd.getpwuid(os.geteuid()).pw_name
    client_key = make_keypair(directory / "client_key", comment="fleet-demo-client")
    key_line = public_key_line(client_key.with_name("client_key.pub"))
    servers: Dict[str, SshdServer] = {}
    record = {}
    try:
        for spec in DEMO_FLEET:
            server = SshdServer(directory / "hosts" / spec.name / "sshd", authorized_keys=[key_line], users=[user],
                                detach=True)
            servers[spec.name] = server
            server.start()
            record[spec.name] = {"pid": server.pid, "port": server.port, "config": str(server.config_path)}
    except SshdUnavailable:
        for server in servers.values():
            server.stop()
        raise
    pids_path = directory / PIDS_FILE
    pids_path.write_text(json.dumps({"hosts": record}, indent=2) + "\n")
    write_known_hosts(directory / "known_hosts", servers.values())
    return servers


def _write_inventory(directory: Path, summaries, servers: Dict[str, SshdServer]) -> Path:
    user = pwd.getpwuid(os.geteuid()).pw_name
    lines = ["# Written by `fleet demo`: the local demo fleet. Rebuilt on every `fleet demo`.", ""]
    if servers:
        lines += ["[defaults]", f'user = "{user}"', f'identity_file = "{directory / "client_key"}"',
                  f'known_hosts = "{directory / "known_hosts"}"  # the demo hosts\' own keys: strict checking', ""]
    for name, summary in summaries.items():
        lines.append(f"[hosts.{name}]")
        if name in servers:
            lines += ['address = "127.0.0.1"', f"port = {servers[name].port}"]
        else:
            lines.append('connection = "local"')
        lines += [f'state_dir = "{summary.state_dir}"', f'groups = ["{GROUPS.get(name, "demo")}"]', ""]
    path = directory / "inventory.toml"
    path.write_text("\n".join(lines))
    return path


def _describe(directory: Path, summaries, servers: Dict[str, SshdServer], inventory: Path, elapsed: float) -> None:
    typer.echo(f"Demo fleet built in {elapsed:.1f}s under {directory}")
    for name, summary in summaries.items():
        where = (f"sshd on 127.0.0.1:{servers[name].port} (pid {servers[name].pid})" if name in servers
                 else "local (no sshd)")
        typer.echo(f"  {name:<6} {where}, {len(summary.agents)} agent(s), {human_bytes(summary.total_bytes)} on disk")
        for agent in sorted(summary.agents, key=lambda a: -a.main_bytes)[:4]:
            typer.echo(f"         {agent.agent_id:<14} main transcript {human_bytes(agent.main_bytes):>7}, "
                       f"{agent.main_records} records; store {human_bytes(agent.store_bytes)} "
                       f"({sum(len(v) for v in agent.keys_by_kind.values())} sessions)")
        if len(summary.agents) > 4:
            typer.echo(f"         … and {len(summary.agents) - 4} smaller agents")
    typer.echo(f"Inventory: {inventory}")
    typer.echo(f"Try:       fleet scan -i {inventory}")
    # The demo is a fleet of its own in the history: its runs never mix with a real fleet's.
    typer.echo(f"History:   fleet history -i {inventory}")
    if servers:
        typer.echo("Stop it:   fleet demo --down" + ("" if directory == default_directory() else f" --dir {directory}"))
