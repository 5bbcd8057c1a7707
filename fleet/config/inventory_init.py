"""`fleet inventory init`: a commented inventory.toml from what a user already has.

Two sources:
- `~/.ssh/config` (or another ssh_config file): one host per `Host` alias that is not a pattern
  (`*`, `?`, `!`). Nothing that ssh_config already says is copied: fleet reads ssh_config for
  every key the inventory leaves out, so the file stays the single place to change a HostName.
  What ssh would use is shown as a comment on each host.
- an Ansible inventory (INI or YAML, see fleet.config.ansible): the mapped connection variables
  become host keys, every group (parents included) is kept in each host's `groups`.

`probe` results (fleet.control.probe, read-only) may be passed in: a state dir found on a host
becomes its `state_dir` (unless it is the default ~/.openclaw), its agents become a comment. A
host the probe could not reach, or where it found no OpenClaw state dir (`Host github.com`), is
written commented out with the reason: the first dry run then covers the OpenClaw hosts only, and
uncommenting one line block brings a host back. `write_inventory_file` never loses a file: an existing inventory is only
replaced with `force`, after a verified copy was kept beside it.
"""
from __future__ import annotations

import filecmp
import glob
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.files import write_atomic
from fleet.errors import UsageError

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_PATTERN_CHARS = set("*?!")
DEFAULT_SSH_CONFIG = "~/.ssh/config"
_KEY_ORDER = ("address", "port", "user", "identity_file", "known_hosts", "proxy_jump", "connection", "python",
              "state_dir", "agents", "groups")


@dataclass
class DraftHost:
    """One host to write: its keys (already inventory.toml keys), and comment lines about it."""

    name: str
    keys: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    left_out: str = ""       # why the probe left it out: written commented out, for the user to decide


@dataclass
class Draft:
    """What `render` writes: where it came from, [defaults] keys, the hosts, skipped entries."""

    source: str
    hosts: list[DraftHost]
    defaults: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found; give an ssh_config with --from-ssh-config FILE "
                         f"or an Ansible inventory with --from-ansible FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None


def read_ssh_config(path: Path, depth: int = 0) -> tuple[list[str], list[tuple[str, str]], bool]:
    """(lines with every `Include` replaced by the files it names, (alias, where) of each concrete
    `Host` alias in order, whether an Include was followed).

    Includes are read as ssh does: relative to ~/.ssh, globs in lexical order, in place (so an
    Include inside a Host block stays inside it). Aliases with `*`, `?` or `!` are patterns, not
    machines, and are left out.
    """
    lines: list[str] = []
    aliases: list[tuple[str, str]] = []
    included = False
    for number, raw in enumerate(_read(path).splitlines(), 1):
        keyword, _, rest = raw.strip().replace("=", " ", 1).partition(" ")
        keyword = keyword.lower()
        if keyword == "include" and depth < 16:
            included = True
            for pattern in shlex.split(rest):
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                for name in sorted(glob.glob(pattern)):
                    sub_lines, sub_aliases, _ = read_ssh_config(Path(name), depth + 1)
                    lines += sub_lines
                    aliases += sub_aliases
            continue
        lines.append(raw)
        if keyword == "host":
            for alias in rest.split():
                alias = alias.strip('"')
                if alias and not _PATTERN_CHARS & set(alias):
                    aliases.append((alias, f"{path.name if depth else 'ssh_config'} line {number}"))
    return lines, aliases, included


def from_ssh_config(path: Path) -> Draft:
    """A draft with one host per concrete `Host` alias of the ssh_config at `path`.

    fleet's SSH library (paramiko) does not follow `Include`: when the file includes others, what
    ssh would use for each host (HostName, Port, User, IdentityFile, ProxyJump, UserKnownHostsFile)
    is written into the inventory instead of left to ssh_config.
    """
    import paramiko

    from fleet.config.inventory import _NAME_RE   # one rule for names, the validator's

    path = Path(os.path.expanduser(str(path)))
    lines, aliases, included = read_ssh_config(path)
    config = paramiko.SSHConfig.from_text("\n".join(lines))
    hosts, skipped, named = [], [], set()
    for alias, where in aliases:
        if alias in named:
            continue
        named.add(alias)
        if not _NAME_RE.fullmatch(alias):
            skipped.append(f"{alias} ({where}): not a valid fleet host name")
            continue
        seen = config.lookup(alias)
        shown = [f"{k} {seen[k.lower()]}" for k in ("HostName", "User", "Port", "ProxyJump")
                 if k.lower() in seen and not (k == "HostName" and seen["hostname"] == alias)]
        if seen.get("identityfile"):
            shown.append("IdentityFile " + ", ".join(seen["identityfile"]))
        host = DraftHost(alias, notes=[f"{where}: " + (", ".join(shown) or "no settings")])
        if included:
            host.keys = _resolved_keys(alias, seen)
        hosts.append(host)
    draft = Draft(source=str(path), hosts=hosts, skipped=skipped)
    if path != Path(os.path.expanduser(DEFAULT_SSH_CONFIG)):
        draft.defaults["ssh_config"] = str(path.resolve())
    if included:
        draft.notes.append("the ssh_config includes other files, which fleet's SSH library does not read: "
                           "each host's settings are copied here")
    return draft


def _resolved_keys(alias: str, seen: dict) -> dict[str, Any]:
    """What ssh would use for `alias`, as inventory.toml keys (for an ssh_config with Include)."""
    keys: dict[str, Any] = {}
    if seen.get("hostname", alias) != alias:
        keys["address"] = seen["hostname"]
    if str(seen.get("port", "")).isdigit():
        keys["port"] = int(seen["port"])
    if seen.get("user"):
        keys["user"] = seen["user"]
    if seen.get("identityfile"):
        files = list(seen["identityfile"])
        keys["identity_file"] = files[0] if len(files) == 1 else files
    if seen.get("proxyjump") and seen["proxyjump"].lower() != "none":
        keys["proxy_jump"] = seen["proxyjump"]
    if seen.get("userknownhostsfile"):
        keys["known_hosts"] = seen["userknownhostsfile"].split()[0]
    return keys


def from_ansible(path: Path) -> Draft:
    """A draft from an Ansible inventory: mapped variables as keys, all groups kept per host."""
    from fleet.config.ansible import AnsibleFormatError, looks_like_ansible, read_ansible

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found (--from-ansible FILE: an Ansible inventory, INI or YAML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    kind = looks_like_ansible(path, text) or "ini"
    try:
        inv = read_ansible(path, text, kind)
    except AnsibleFormatError as exc:
        raise UsageError(f"{path}: not an Ansible inventory ({kind}): {exc}") from None
    tables = inv.to_tables()
    groups: dict[str, list[str]] = {}
    for group, body in tables.get("groups", {}).items():
        for host in body["hosts"]:
            groups.setdefault(host, []).append(group)
    hosts = []
    for name, keys in tables["hosts"].items():
        keys = dict(keys)
        if groups.get(name):
            keys["groups"] = groups[name]
        hosts.append(DraftHost(name, keys=keys))
    draft = Draft(source=str(path), hosts=hosts)
    ignored = inv.ignored_line()
    if ignored:
        draft.notes.append(ignored)
    return draft


def apply_probe(draft: Draft, found: dict[str, Any]) -> None:
    """Fold probe results (host name → fleet.control.probe.ProbeResult) into the draft."""
    for host in draft.hosts:
        result = found.get(host.name)
        if result is None:
            continue
        if result.error:
            host.left_out = f"probe: could not look: {result.error}"
            continue
        if not result.state_dirs:
            host.left_out = ("probe: no OpenClaw state dir found ($OPENCLAW_STATE_DIR, ~/.openclaw, "
                             "~/.openclaw-*, ~/.clawdbot); uncomment and set state_dir if it has one")
        for index, (state_dir, agents) in enumerate(result.state_dirs):
            what = f"agents {', '.join(agents)}" if agents else "no agents yet"
            if index == 0:
                host.notes.append(f"probe: OpenClaw state dir {state_dir} ({what})")
                if not result.is_default(state_dir) and "state_dir" not in host.keys:
                    host.keys["state_dir"] = state_dir
            else:
                host.notes.append(f"probe: also {state_dir} ({what}): copy this host as "
                                  f"[hosts.{host.name}-2] with that state_dir to clean it too")
        if result.python is False:
            host.notes.append("probe: no python3 on the host: the agent needs Python >= 3.8 (set python = PATH)")


def _key(name: str) -> str:
    return name if _BARE_KEY_RE.fullmatch(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render(draft: Draft, now: datetime | None = None) -> str:
    """The commented inventory.toml text of `draft`."""
    now = now or datetime.now().astimezone()
    out = [
        f"# fleet inventory, written by `fleet inventory init` on {now:%Y-%m-%d %H:%M} from {draft.source}.",
        "# Every key is described in docs/inventory.md. Keys left out here come from ~/.ssh/config",
        "# (HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile), as ssh would use them.",
        "# Next: `fleet inventory check`, then `fleet run weekly --dry-run` (nothing is changed by either).",
    ]
    out += [f"# {line}" for line in draft.notes]
    out += [f"# skipped: {line}" for line in draft.skipped]
    out += ["", "[defaults]"]
    for key, value in draft.defaults.items():
        out.append(f"{key} = {_value(value)}")
    out += [
        '# user = "me"                          # login name on every host (default: ssh_config, else yours)',
        '# identity_file = "~/.ssh/id_ed25519"  # default: ssh_config, ssh-agent, ~/.ssh/id_*',
        '# state_dir = "~/.openclaw"            # OpenClaw state dir on the hosts (this is the default)',
        '# host_key_policy = "accept-new"       # record keys of hosts not yet in known_hosts (default: strict)',
    ]
    for host in draft.hosts:
        block = [f"[hosts.{_key(host.name)}]"] + [f"# {note}" for note in host.notes]
        for key in sorted(host.keys, key=lambda k: (_KEY_ORDER.index(k) if k in _KEY_ORDER else 99, k)):
            block.append(f"{key} = {_value(host.keys[key])}")
        if host.left_out:
            block = [f"# left out: {host.left_out}"] + [line if line.startswith("#") else f"# {line}" for line in block]
        out += [""] + block
    if not draft.hosts:
        out += ["", "# No hosts were found. Add one table per host:", "# [hosts.pc-a]",
                '# address = "192.168.10.11"']
    return "\n".join(out) + "\n"


def write_inventory_file(path: Path, text: str, force: bool) -> Path | None:
    """Write `text` to `path` atomically; return where the earlier file was kept, if any.

    An existing file is refused (UsageError) unless `force`; then it is first copied to
    `<name>.<time>.bak` beside it and the copy compared byte for byte before anything is replaced.
    The new text goes to a temp file in the same folder, fsynced, then renamed over `path`; if the
    original changed meanwhile, the write is abandoned.
    """
    path = Path(path)
    kept = None
    before = None
    if path.exists():
        if not force:
            raise UsageError(f"{path} already exists; choose another file with -o FILE, or replace it with "
                             f"--force (a copy is kept as {path.name}.<time>.bak)")
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        kept = path.with_name(f"{path.name}.{stamp}.bak")
        shutil.copy2(path, kept)
        if not filecmp.cmp(path, kept, shallow=False):
            raise UsageError(f"{path}: the copy {kept} differs from the original; nothing was replaced")
        before = path.stat()
    def unchanged() -> None:
        if before is not None:
            now = path.stat()
            if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
                raise UsageError(f"{path} changed while the new inventory was written; nothing was replaced")

    write_atomic(path, text, mode=0o644, before_replace=unchanged)
    return kept
