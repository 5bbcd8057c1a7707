"""The inventory (`inventory.toml`, or an Ansible inventory): which hosts fleet works on and how to reach them.

`load_inventory` validates the whole file before anything runs and raises
`fleet.errors.InventoryError` carrying every problem at once, each naming file, table and key.
The keys are documented in docs/inventory.md (the ones users may rely on are in docs/contract.md).
Quoting values for a shell is the transport's job; this layer only refuses values that cannot be
right (a port of 70000, an address with spaces, a user name starting with "-").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.hostside.fsutil import is_safe_id
from fleet.errors import InventoryError
from fleet.config.ansible import read_inventory_tables
from fleet.config.validate import Problems, Table, describe_value, join_path, suggestion

HOST_KEY_POLICIES = ("strict", "accept-new")
CONNECTIONS = ("ssh", "local")

HOST_KEYS = (
    "address", "port", "user", "identity_file", "known_hosts", "host_key_policy", "state_dir", "agents",
    "python", "become_user", "connection", "connect_timeout", "command_timeout", "proxy_jump",
    "ssh_config", "groups", "openclaw_cmd", "backup_to",
)
# Names people bring from ssh_config, Ansible or Fabric, with the fix.
_KEY_HINTS = {
    "hostname": 'use "address"', "host": 'use "address"', "ansible_host": 'use "address"',
    "identity_files": 'use "identity_file" (it takes a string or a list)',
    "key_filename": 'use "identity_file"', "identityfile": 'use "identity_file"',
    "username": 'use "user"', "sudo_user": 'use "become_user"', "become": 'use "become_user = \\"NAME\\""',
    "timeout": 'use "connect_timeout" (reaching the host) or "command_timeout" (the whole agent run)',
    "accept_new_host_keys": 'use host_key_policy = "accept-new"',
    "strict_host_key_checking": 'use host_key_policy = "strict" or "accept-new"',
    "proxyjump": 'use "proxy_jump"', "jump_host": 'use "proxy_jump"', "group": 'use "groups" (a list)',
    "agent": 'use "agents" (a list)',
}
_TOP_KEYS = ("defaults", "hosts", "groups")
_TOP_HINTS = {"host": 'use [hosts.NAME] tables', "default": 'use [defaults]', "group": 'use [groups.NAME]'}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_NAME_HINT = "expected letters, digits, '.', '_' or '-' (not starting with '.', '_' or '-')"
# An address is a host name, an IPv4 or an IPv6 address: no spaces, no '@', no leading '-'.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9_.:%\[\]-]+")
_LOGIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@\\-]{0,63}")
_UNIX_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}\$?")
_PROXY_RE = re.compile(r"[A-Za-z0-9_.@:%\[\],-]+")
_PROGRAM_RE = re.compile(r"[^\s-][^\s]*")


@dataclass(frozen=True)
class Host:
    """One host, with defaults applied. `None` means "let ssh_config / the transport decide"."""

    name: str
    address: str                 # default: the host's name (ssh_config HostName may still apply)
    port: int | None             # None → ssh_config, else 22
    user: str | None             # None → ssh_config, else the local user
    identity_files: tuple[str, ...]   # absolute, '~' expanded; () → ssh_config / ssh-agent / defaults
    known_hosts: str | None      # absolute path; None → ~/.ssh/known_hosts
    host_key_policy: str         # "strict" | "accept-new"
    state_dir: str | None        # as written; expanded on the host by the agent; None → agent default
    agents: tuple[str, ...] | None   # None → every agent under state_dir/agents
    python: str                  # interpreter on the host
    become_user: str | None      # run the agent via `sudo -n -u USER`
    connection: str              # "ssh" | "local"
    connect_timeout: float       # seconds to reach the host
    command_timeout: float       # seconds for the whole agent run
    proxy_jump: str | None
    ssh_config: str | None       # absolute path; None → ~/.ssh/config if it exists
    groups: tuple[str, ...]
    openclaw_cmd: tuple[str, ...] | None = None   # OpenClaw's CLI on the host (SQLite-era changes)
    backup_to: str = "host"      # "host" | "controller" | "auto" | a folder on the host (absolute or ~)

    @property
    def is_local(self) -> bool:
        return self.connection == "local"


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, Host]                  # file order
    groups: dict[str, tuple[str, ...]]      # group → host names, in file order
    warnings: tuple[str, ...]               # e.g. two hosts with the same address and port


_DEFAULTS: dict[str, Any] = {
    "port": None, "user": None, "identity_files": (), "known_hosts": None, "host_key_policy": "strict",
    "state_dir": None, "agents": None, "python": "python3", "become_user": None, "connection": "ssh",
    "connect_timeout": 10.0, "command_timeout": 900.0, "proxy_jump": None, "ssh_config": None, "groups": (),
    "openclaw_cmd": None, "backup_to": "host",
}



def _not_an_option(t: Table, key: str, value: Any) -> Any:
    """`value`, after noting a problem if it starts with '-' (ssh would read it as an option)."""
    if isinstance(value, str) and value.startswith("-"):
        t.add(key, f"must not start with '-', got {describe_value(value)}")
    return value

def load_inventory(path: Path) -> Inventory:
    """Read and validate `path`; return the inventory with every default applied.

    Raises InventoryError listing every problem (syntax, unknown keys, wrong types, bad values,
    unknown hosts in [groups.X], a missing file). Warnings (duplicate addresses, missing identity
    files, SSH keys on a local host) are returned in `Inventory.warnings`.
    """
    path = Path(path)
    problems = Problems(path)
    # An Ansible inventory (INI or YAML) is read into the same tables, so one validator checks both.
    data = read_inventory_tables(path, problems, missing_hint="pass the inventory with -i FILE (default: "
                                                              "./inventory.toml, or an Ansible inventory)")
    if data is None:
        problems.raise_if_any(InventoryError)
    base_dir = path.parent
    root = Table(data, "", problems)
    root.check_keys(_TOP_KEYS, _TOP_HINTS)

    defaults = _read_host_settings(root.table("defaults"), base_dir)
    hosts: dict[str, Host] = {}
    hosts_table = root.table("hosts")
    for name, table in hosts_table.subtables():
        if not _NAME_RE.fullmatch(name):
            problems.add(join_path("hosts", name), f"invalid host name: {_NAME_HINT}")
            continue
        settings = _read_host_settings(table, base_dir, host_name=name)
        if settings.get("connection") == "local" or (
                "connection" not in settings and defaults.get("connection") == "local"):
            for key in ("address", "port", "user", "proxy_jump", "identity_files"):
                if key in settings:
                    table.warn(key if key != "identity_files" else "identity_file",
                               'ignored: the host has connection = "local"')
        hosts[name] = _build_host(name, defaults, settings)
    if "hosts" not in root and not problems:
        problems.add("", 'no hosts: add a [hosts.NAME] table for each host (see docs/inventory.md)')
    elif not hosts and "hosts" in root and not problems:
        problems.add("hosts", "no hosts defined: add a [hosts.NAME] table for each host")

    groups = _collect_groups(root.table("groups"), hosts, problems)
    _warn_duplicate_addresses(hosts, problems)
    problems.raise_if_any(InventoryError)
    return Inventory(path=path, hosts=hosts, groups=groups, warnings=tuple(problems.warnings))


def _read_host_settings(t: Table, base_dir: Path, host_name: str | None = None) -> dict[str, Any]:
    """Validate one [defaults] or [hosts.X] table; return only the keys it sets, converted."""
    hints = dict(_KEY_HINTS)
    if host_name is not None:
        # [hosts.pc.lan] makes a table "lan" inside host "pc": the user meant a name with a dot.
        for key, value in t.data.items():
            if key not in HOST_KEYS and isinstance(value, dict):
                hints[key] = f'for a host name with a dot write [hosts."{host_name}.{key}"]'
    t.check_keys(HOST_KEYS, hints)
    s: dict[str, Any] = {}
    if "address" in t:
        s["address"] = _not_an_option(t, "address", t.string(
            "address", pattern=_ADDRESS_RE,
            pattern_hint="expected a host name or IP address (no spaces, no user@: use \"user\")"))
    if "port" in t:
        s["port"] = t.integer("port", minimum=1, maximum=65535)
    if "user" in t:
        s["user"] = t.string("user", pattern=_LOGIN_RE, pattern_hint="expected a user name")
    if "identity_file" in t:
        s["identity_files"] = _read_identity_files(t, base_dir)
        for identity in s["identity_files"]:
            if not os.path.exists(identity):
                t.warn("identity_file", f"{identity} does not exist on this machine")
    if "known_hosts" in t:
        s["known_hosts"] = _local_path(t.string("known_hosts"), base_dir)
    if "ssh_config" in t:
        s["ssh_config"] = _local_path(t.string("ssh_config"), base_dir)
        if s["ssh_config"] and not os.path.isfile(s["ssh_config"]):
            t.add("ssh_config", f"file not found: {s['ssh_config']}")
    if "host_key_policy" in t:
        s["host_key_policy"] = t.string(
            "host_key_policy", choices=HOST_KEY_POLICIES,
            choices_note="fleet never accepts changed keys; a blanket accept-any policy is not offered")
    if "state_dir" in t:
        s["state_dir"] = t.string("state_dir")
    if "agents" in t:
        if t.data["agents"] == []:
            t.add("agents", "must not be an empty list (leave the key out to clean every agent)")
        agents = t.string_list("agents", item_check=_check_agent_id) if t.data["agents"] != [] else None
        s["agents"] = tuple(agents) if agents else None
    if "python" in t:
        s["python"] = t.string("python", pattern=_PROGRAM_RE,
                               pattern_hint="expected an interpreter name or path without spaces, e.g. \"python3\"")
    if "become_user" in t:
        s["become_user"] = t.string("become_user", pattern=_UNIX_USER_RE,
                                    pattern_hint="expected a Unix user name (letters, digits, '.', '_', '-')")
    if "connection" in t:
        s["connection"] = t.string("connection", choices=CONNECTIONS)
    for key in ("connect_timeout", "command_timeout"):
        if key in t:
            s[key] = _read_timeout(t, key)
    if "proxy_jump" in t:
        s["proxy_jump"] = _not_an_option(t, "proxy_jump", t.string(
            "proxy_jump", pattern=_PROXY_RE, pattern_hint="expected [user@]host[:port][,…] without spaces"))
    if "groups" in t:
        groups = t.string_list("groups", item_check=_check_name)
        s["groups"] = tuple(groups) if groups is not None else ()
    if "backup_to" in t:
        s["backup_to"] = read_backup_to(t, "backup_to")
    if "openclaw_cmd" in t:
        # A string is one program ("openclaw"); a list is a program and its first arguments
        # (["/usr/bin/node", "/opt/openclaw/openclaw.mjs"]). Never run through a shell.
        raw = t.data["openclaw_cmd"]
        cmd = [raw] if isinstance(raw, str) else t.string_list("openclaw_cmd", allow_empty=False)
        if isinstance(raw, str) and not raw.strip():
            t.add("openclaw_cmd", "must not be empty (leave the key out when the host has no openclaw CLI)")
        elif cmd:
            s["openclaw_cmd"] = tuple(cmd)
    return s


BACKUP_TO = ("host", "controller", "auto")


def read_backup_to(t: Table, key: str) -> str | None:
    """backup_to / [backup] to: "host", "controller", "auto", or a folder on the host (absolute,
    or starting with '~': it is expanded there)."""
    value = t.string(key)
    if isinstance(value, str) and value not in BACKUP_TO and not value.startswith(("/", "~")):
        t.add(key, f"expected \"host\", \"controller\", \"auto\" or a folder on the host (absolute or "
                   f"starting with ~), got {describe_value(value)}")
        return None
    return value


def _check_agent_id(value: str) -> str | None:
    return None if is_safe_id(value) else "expected an agent id (letters, digits, '.', '_', '-')"


def _check_name(value: str) -> str | None:
    return None if _NAME_RE.fullmatch(value) else f"invalid group name: {_NAME_HINT}"


def _read_identity_files(t: Table, base_dir: Path) -> tuple[str, ...]:
    raw = t.data["identity_file"]
    if isinstance(raw, str):
        value = t.string("identity_file")
        return (_local_path(value, base_dir),) if value else ()
    if isinstance(raw, list):
        values = t.string_list("identity_file", allow_empty=False,
                               item_check=lambda v: "must not be empty" if not v.strip() else None)
        return tuple(_local_path(v, base_dir) for v in values or ())
    t.add("identity_file", f"expected a path or a list of paths, got {describe_value(raw)}")
    return ()


def _read_timeout(t: Table, key: str) -> float | None:
    raw = t.data[key]
    if isinstance(raw, str):
        seconds = t.duration(key)
        if seconds is not None and seconds <= 0:
            t.add(key, f"must be greater than 0, got {describe_value(raw)}")
            return None
        return None if seconds is None else float(seconds)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return t.number(key, minimum=0, exclusive_minimum=True)
    t.add(key, f"expected seconds (a number) or a duration like \"30s\" or \"15m\", got {describe_value(raw)}")
    return None


def _local_path(value: str | None, base_dir: Path) -> str | None:
    """A control-host path: '~' expanded, relative paths taken from the inventory's folder."""
    if value is None:
        return None
    expanded = os.path.expanduser(value)
    if not os.path.isabs(expanded):
        expanded = os.path.join(base_dir, expanded)
    return os.path.abspath(expanded)


def _build_host(name: str, defaults: dict[str, Any], settings: dict[str, Any]) -> Host:
    merged = dict(_DEFAULTS)
    merged.update({k: v for k, v in defaults.items() if v is not None})
    merged.update({k: v for k, v in settings.items() if v is not None})
    # Groups add up: [defaults] groups = ["all-claws"] plus the host's own.
    merged["groups"] = tuple(dict.fromkeys((*defaults.get("groups", ()), *settings.get("groups", ()))))
    merged.setdefault("address", name)
    return Host(name=name, **merged)


def _collect_groups(table: Table, hosts: dict[str, Host], problems: Problems) -> dict[str, tuple[str, ...]]:
    members: dict[str, set[str]] = {}
    for host in hosts.values():
        for group in host.groups:
            members.setdefault(group, set()).add(host.name)
    for group, group_table in table.subtables():
        if not _NAME_RE.fullmatch(group):
            problems.add(join_path("groups", group), f"invalid group name: {_NAME_HINT}")
            continue
        group_table.check_keys(("hosts",), {"members": 'use "hosts"'})
        names = group_table.string_list("hosts", required=True) or []
        for index, host_name in enumerate(names):
            if host_name not in hosts:
                problems.add(f"{group_table.key_path('hosts')}[{index}]",
                             f'unknown host "{host_name}"{suggestion(host_name, hosts)}')
                continue
            members.setdefault(group, set()).add(host_name)
        members.setdefault(group, set())
    for group in members:
        if group in hosts:
            problems.add(join_path("groups", group),
                         f'a group cannot have the same name as host "{group}" (--limit {group} would be ambiguous)')
    # Hosts inside a group keep file order, so --limit GROUP runs them in the order written.
    return {group: tuple(h for h in hosts if h in names) for group, names in members.items()}


def _warn_duplicate_addresses(hosts: dict[str, Host], problems: Problems) -> None:
    seen: dict[tuple[str, int | None], str] = {}
    for host in hosts.values():
        if host.is_local:
            continue
        key = (host.address.lower(), host.port)
        if key in seen:
            port = "the default port" if host.port is None else f"port {host.port}"
            problems.warn(join_path("hosts", host.name),
                          f'same address and port as hosts.{seen[key]} ({host.address}, {port}): '
                          f"both entries reach one machine")
        else:
            seen[key] = host.name


def describe_inventory(inv: Inventory, include_warnings: bool = True) -> str:
    """The text of `fleet inventory check`: hosts table, groups, warnings, 'OK: N hosts'."""
    from tabulate import tabulate

    rows = []
    for host in inv.hosts.values():
        rows.append([
            host.name,
            "-" if host.is_local else host.address,
            "-" if host.is_local else (host.port if host.port is not None else "(ssh)"),
            "-" if host.is_local else (host.user or "(ssh)"),
            host.connection + (f" sudo:{host.become_user}" if host.become_user else ""),
            host.state_dir or "(default)",
            ", ".join(host.agents) if host.agents else "(all)",
            ", ".join(host.groups) or "-",
        ])
    headers = ["host", "address", "port", "user", "connection", "state_dir", "agents", "groups"]
    lines = [f"Inventory {inv.path}", "", tabulate(rows, headers=headers, disable_numparse=True), ""]
    if inv.groups:
        lines.append("Groups:")
        width = max(len(g) for g in inv.groups)
        for group, members in inv.groups.items():
            lines.append(f"  {group.ljust(width)}  {', '.join(members) or '(empty)'}")
        lines.append("")
    if include_warnings and inv.warnings:
        lines.append("Warnings:")
        lines.extend(f"  {w}" for w in inv.warnings)
        lines.append("")
    n = len(inv.hosts)
    summary = f"OK: {n} host{'s' if n != 1 else ''}, {len(inv.groups)} group{'s' if len(inv.groups) != 1 else ''}"
    if inv.warnings:
        summary += f", {len(inv.warnings)} warning{'s' if len(inv.warnings) != 1 else ''}"
    lines.append(summary)
    return "\n".join(lines)
