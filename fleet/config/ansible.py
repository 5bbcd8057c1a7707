"""Ansible inventories (INI or YAML) read as fleet inventories.

`read_ansible(path, text)` turns an Ansible inventory into the same table shape `inventory.toml`
has ({"hosts": {...}, "groups": {...}}), so one validator checks both and every problem still
names file and key. What is mapped, per host, after Ansible's precedence (group `all`, then
groups from parent to child, then the host's own variables):

    ansible_host (ansible_ssh_host)  -> address
    ansible_port (ansible_ssh_port)  -> port        (also INI's `name:port`)
    ansible_user (ansible_ssh_user)  -> user
    ansible_ssh_private_key_file     -> identity_file
    ansible_connection=local         -> connection = "local"
    ansible_python_interpreter       -> python
    fleet_KEY                        -> KEY, for any inventory.toml host key (fleet_state_dir=…)

Every other variable is ignored and named once in `AnsibleInventory.ignored` (no secrets are
ever copied). Groups are kept: a host in a child group is in its parents too, as in Ansible;
`all` and `ungrouped` are implicit and not written out. Host ranges (`web[01:03]`, `db-[a:c]`)
are expanded.

YAML is read with PyYAML's safe loader (a dependency since Ansible inventories are YAML: its
full grammar — anchors, flow mappings, quoting, block scalars — is not a subset worth re-parsing
by hand, and a partial parser would misread some files silently).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Ansible variable -> inventory.toml host key.
MAPPED = {
    "ansible_host": "address", "ansible_ssh_host": "address",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file", "ansible_private_key_file": "identity_file",
    "ansible_python_interpreter": "python",
}
IMPLICIT_GROUPS = ("all", "ungrouped")
_RANGE_RE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
_INI_SECTION_RE = re.compile(r"^\[([^\]:]+)(?::(vars|children))?\]\s*$")


class AnsibleFormatError(ValueError):
    """The file cannot be read as an Ansible inventory; the message says where."""


@dataclass
class AnsibleInventory:
    """The parsed inventory: hosts in file order with their own vars, groups and group vars."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)        # host -> own vars
    group_hosts: dict[str, list[str]] = field(default_factory=dict)       # group -> direct hosts
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)          # group -> child groups
    ignored: dict[str, int] = field(default_factory=dict)                 # variable -> hosts

    def add_host(self, name: str, group: str, variables: dict[str, Any] | None) -> None:
        self.hosts.setdefault(name, {}).update(variables or {})
        if group not in IMPLICIT_GROUPS:
            members = self.group_hosts.setdefault(group, [])
            if name not in members:
                members.append(name)

    def add_child(self, parent: str, child: str) -> None:
        self.group_hosts.setdefault(parent, [])
        self.group_hosts.setdefault(child, [])
        kids = self.children.setdefault(parent, [])
        if child not in kids:
            kids.append(child)

    def members(self, group: str, seen: frozenset = frozenset()) -> list[str]:
        """Every host of `group`, its children's included (cycles are cut)."""
        out = list(self.group_hosts.get(group, ()))
        for child in self.children.get(group, ()):
            if child not in seen:
                out += [h for h in self.members(child, seen | {group}) if h not in out]
        return out

    def _depth(self, group: str, seen: frozenset = frozenset()) -> int:
        parents = [p for p, kids in self.children.items() if group in kids and p not in seen]
        return 1 + max((self._depth(p, seen | {group}) for p in parents), default=0)

    def host_vars(self, host: str) -> dict[str, Any]:
        """Ansible's precedence: all's vars, groups parent before child, then the host's own."""
        merged = dict(self.group_vars.get("all", {}))
        groups = [g for g in self.group_vars if g != "all" and host in self.members(g)]
        for group in sorted(groups, key=lambda g: (self._depth(g), g)):
            merged.update(self.group_vars[group])
        merged.update(self.hosts[host])
        return merged

    def to_tables(self) -> dict[str, Any]:
        """The inventory.toml shape: {"hosts": {name: {...}}, "groups": {name: {"hosts": [...]}}}."""
        hosts: dict[str, dict[str, Any]] = {}
        ignored: dict[str, int] = {}
        for name in self.hosts:
            table: dict[str, Any] = {}
            for key, value in self.host_vars(name).items():
                if key in MAPPED:
                    table[MAPPED[key]] = _converted(MAPPED[key], value)
                elif key == "ansible_connection" and str(value) in ("local", "ssh", "smart", "paramiko"):
                    if str(value) == "local":
                        table["connection"] = "local"
                elif key.startswith("fleet_"):
                    table[key[len("fleet_"):]] = _fleet_value(key[len("fleet_"):], value)
                else:
                    ignored[key] = ignored.get(key, 0) + 1
            hosts[name] = table
        self.ignored = ignored
        groups = {g: {"hosts": self.members(g)} for g in self.group_hosts if g not in IMPLICIT_GROUPS}
        return {"hosts": hosts, "groups": groups} if groups else {"hosts": hosts}

    def ignored_line(self) -> str | None:
        """One sentence naming the Ansible variables fleet did not use, or None."""
        if not self.ignored:
            return None
        names = ", ".join(f"{k} ({n} host{'s' if n != 1 else ''})" for k, n in sorted(self.ignored.items()))
        return (f"Ansible variables fleet does not use were ignored: {names}; fleet maps ansible_host, "
                f"ansible_port, ansible_user, ansible_ssh_private_key_file, ansible_connection=local, "
                f"ansible_python_interpreter and fleet_* (e.g. fleet_state_dir)")


def _converted(key: str, value: Any) -> Any:
    """INI values are strings: a port of "2222" becomes 2222 (a non-number is left for validation)."""
    if key == "port" and isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value if not isinstance(value, (int, float)) or key == "port" else str(value)


def _fleet_value(key: str, value: Any) -> Any:
    """INI has no lists: `fleet_agents=main,work` is the list ["main", "work"]."""
    if key in ("agents", "groups") and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def looks_like_ansible(path: Path, text: str) -> str | None:
    """"yaml" or "ini" when `path` is an Ansible inventory rather than inventory.toml, else None.

    The suffix decides (.yml/.yaml → yaml, .ini/.cfg → ini, .toml → toml). Without one of these,
    a file is Ansible INI when it is not TOML with fleet's tables: a bare host line, a
    `[group:vars]`/`[group:children]` header, or `name key=value` pairs are not TOML.
    """
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        return "yaml"
    if suffix in (".ini", ".cfg"):
        return "ini"
    if suffix == ".toml":
        return None
    from fleet.config.validate import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", ";"))), "")
        if first.startswith(("all:", "---")) or re.match(r"^[A-Za-z0-9_.-]+:\s*$", first):
            return "yaml"
        return "ini"
    return None if isinstance(data, dict) and ("hosts" in data or "defaults" in data) else None


def expand_range(pattern: str) -> list[str]:
    """Ansible host ranges: `web[01:03]` → web01, web02, web03; `db-[a:c]`; `[1:9:2]` steps."""
    match = _RANGE_RE.search(pattern)
    if not match:
        return [pattern]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    head, tail = pattern[: match.start()], pattern[match.end():]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, max(1, step))]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, max(1, step))]
    else:
        raise AnsibleFormatError(f"host range {match.group(0)!r}: expected [01:20] or [a:f]")
    return [name for value in values for name in expand_range(head + value + tail)]


def _ini_value(raw: str) -> Any:
    """An INI value as Ansible reads it: a quoted string stays a string, True/False booleans."""
    if raw in ("True", "true", "yes"):
        return True
    if raw in ("False", "false", "no"):
        return False
    return raw


def parse_ini(text: str) -> AnsibleInventory:
    """Ansible's INI inventory: host lines, `[group]`, `[group:vars]`, `[group:children]`."""
    inv = AnsibleInventory()
    group, section = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = _INI_SECTION_RE.match(line)
        if header:
            group, section = header.group(1).strip(), header.group(2) or "hosts"
            if section == "hosts":
                inv.group_hosts.setdefault(group, [])
            continue
        if line.startswith("["):
            raise AnsibleFormatError(f"line {number}: invalid section header {line!r}")
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise AnsibleFormatError(f"line {number}: {exc}") from None
        if not tokens:
            continue
        if section == "children":
            inv.add_child(group, tokens[0])
            continue
        if section == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise AnsibleFormatError(f"line {number}: expected key=value in [{group}:vars], got {line!r}")
            inv.group_vars.setdefault(group, {})[key.strip()] = _ini_value(
                (shlex.split(value, comments=True) or [""])[0])
            continue
        name, variables = tokens[0], {}
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise AnsibleFormatError(f"line {number}: expected key=value after the host name, got {token!r}")
            variables[key] = _ini_value(value)
        name = _split_port(name, variables)
        for host in expand_range(name):
            inv.add_host(host, group, variables)
    return inv


def _split_port(name: str, variables: dict[str, Any]) -> str:
    """`host:2222` (not an IPv6 address) is a host with ansible_port 2222."""
    if name.count(":") == 1:
        host, port = name.split(":")
        if port.isdigit():
            variables.setdefault("ansible_port", port)
            return host
    return name


def parse_yaml(text: str) -> AnsibleInventory:
    """Ansible's YAML inventory: groups (usually `all:`) with `hosts`, `vars` and `children`."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise AnsibleFormatError(f"{where}invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AnsibleFormatError("expected a mapping of groups (e.g. `all:` with `hosts:`) at the top")
    inv = AnsibleInventory()
    for group, body in data.items():
        _yaml_group(inv, str(group), body, str(group))
    return inv


def _yaml_group(inv: AnsibleInventory, group: str, body: Any, where: str) -> None:
    if body is None:
        inv.group_hosts.setdefault(group, [])
        return
    if not isinstance(body, dict):
        raise AnsibleFormatError(f"{where}: expected a mapping with hosts, vars or children")
    unknown = [k for k in body if k not in ("hosts", "vars", "children")]
    if unknown:
        raise AnsibleFormatError(f"{where}: unknown key {unknown[0]!r} (a group has hosts, vars and children)")
    inv.group_hosts.setdefault(group, [])
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise AnsibleFormatError(f"{where}.hosts: expected a mapping of host names")
    for name, variables in hosts.items():
        if variables is not None and not isinstance(variables, dict):
            raise AnsibleFormatError(f"{where}.hosts.{name}: expected host variables (a mapping) or nothing")
        variables = dict(variables or {})
        name = _split_port(str(name), variables)
        for host in expand_range(name):
            inv.add_host(host, group, variables)
    group_vars = body.get("vars") or {}
    if not isinstance(group_vars, dict):
        raise AnsibleFormatError(f"{where}.vars: expected a mapping")
    inv.group_vars.setdefault(group, {}).update(group_vars)
    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise AnsibleFormatError(f"{where}.children: expected a mapping of group names")
    for child, child_body in children.items():
        if group != "all":
            inv.add_child(group, str(child))
        _yaml_group(inv, str(child), child_body, f"{where}.children.{child}")


def read_ansible(path: Path, text: str, kind: str) -> AnsibleInventory:
    """Parse `text` (the file at `path`) as an Ansible inventory of `kind` "ini" or "yaml"."""
    return parse_yaml(text) if kind == "yaml" else parse_ini(text)


def read_inventory_tables(path: Path, problems: Any, missing_hint: str) -> dict | None:
    """The inventory.toml tables of `path`: its TOML, or the Ansible inventory it holds converted.

    Problems go to `problems` (fleet.config.validate.Problems) naming the file; the line on
    ignored Ansible variables is a warning. None when the file cannot be read at all.
    """
    from fleet.config.validate import read_toml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return read_toml(path, problems, missing_hint=missing_hint)   # it names what is wrong
    kind = looks_like_ansible(path, text)
    if kind is None:
        return read_toml(path, problems, missing_hint=missing_hint)
    try:
        inv = read_ansible(path, text, kind)
    except AnsibleFormatError as exc:
        if path.suffix.lower() in (".yml", ".yaml", ".ini", ".cfg"):
            problems.add("", f"cannot read this Ansible {kind.upper()} inventory: {exc}")
        else:
            read_toml(path, problems, missing_hint=missing_hint)       # the TOML error, with its line
            problems.add("", f"not an Ansible INI inventory either: {exc} (fleet reads inventory.toml, "
                             f"or an Ansible inventory in INI or YAML: name it .ini or .yml to say which)")
        return None
    tables = inv.to_tables()
    ignored = inv.ignored_line()
    if ignored:
        problems.warn("", ignored)
    return tables
