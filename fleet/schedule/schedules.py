"""`fleet schedule`: recurring runs on the control host (cron or systemd timers).

A schedule is a definition kept in fleet's state folder, `<state>/schedules/NAME.json`
(state = `$FLEET_STATE_DIR`, else `~/.local/state/fleet`), plus one entry in a backend that
calls `fleet schedule run NAME` at the planned times:

- cron: one line in the user's crontab, marked `# fleet:NAME` (fleet.schedule.cron);
- systemd: `fleet-NAME.service` + `fleet-NAME.timer` in a unit folder (fleet.schedule.systemd).

The entry calls fleet by absolute path (`<python> -m fleet`) with `FLEET_STATE_DIR` set, and
appends its output to `<state>/logs/NAME.log`. The definition holds absolute paths (inventory,
and playbook when it is a file), so the run does not depend on the folder cron starts in.

`schedule run NAME` takes `<state>/locks/NAME.lock` (flock, non-blocking): while a run of the
schedule holds it, another exits at once with status 3 (`ExitStatus.OVERLAP`), says which run
holds it, and is recorded in history as a "skipped" run. Secrets for notifications come from
the environment; since cron and systemd start with an almost empty one, `schedule run` also
reads `<state>/schedule.env` (KEY=VALUE lines, only when the file is private to its owner).
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fleet.schedule import cron as schedule_cron, systemd as schedule_systemd
from fleet.schedule.cronconv import CronError, check_oncalendar, cron_for_crontab, cron_to_oncalendar, is_cron_expression
from fleet.errors import ExitStatus, FleetError, UsageError
from fleet.home import control_dir, private_dir

SCHEMA = "fleet.schedule/1"
BACKENDS = ("auto", "cron", "systemd")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ENV_FILE = "schedule.env"
CRONTAB_USER_ENV = "FLEET_CRONTAB_USER"


@dataclass(frozen=True)
class Schedule:
    """One installed schedule, as stored in `<state>/schedules/NAME.json`."""

    name: str
    action: str                   # "run" | "scan"
    playbook: str | None          # absolute path of a playbook file, or a shipped playbook's name
    inventory: str                # absolute path
    limit: str | None
    notify: bool
    backend: str                  # "cron" | "systemd"
    at: str                       # as given
    cron: str | None              # the crontab schedule (cron backend, or when --at was cron)
    on_calendar: list[str]        # systemd OnCalendar= values ([] for cron)
    command: list[str]            # argv the entry runs
    state_dir: str
    log: str
    unit_dir: str | None = None
    crontab_user: str | None = None
    installed_at: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "Schedule":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> dict:
        return {"schema": SCHEMA, **asdict(self)}

    @property
    def what(self) -> str:
        return "scan" if self.action == "scan" else f"run {self.playbook}"


# --- paths and storage ---------------------------------------------------------------------

def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(f"schedule name {name!r}: use lower-case letters, digits, '.', '_' or '-' "
                         "(starting with a letter or digit, at most 64)")
    return name


def definition_path(name: str) -> Path:
    return control_dir() / "schedules" / f"{name}.json"


def write_json(path: Path, doc: dict) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load_schedule(name: str) -> Schedule:
    """The stored definition of `name`; UsageError (exit 2) when there is none."""
    path = definition_path(check_name(name))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(s.name for s in all_schedules()) or "none"
        raise UsageError(f"no schedule named {name!r} in {path.parent} (installed: {known}); "
                         "see `fleet schedule list`") from None
    except (OSError, ValueError) as exc:
        raise FleetError(f"{path}: cannot read the schedule: {exc}") from None
    return Schedule.from_json(doc)


def all_schedules() -> list[Schedule]:
    folder = control_dir() / "schedules"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            found.append(Schedule.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return found


def fleet_argv(*args: str) -> list[str]:
    """How an entry calls fleet: this Python (absolute, not resolved: a venv's python must stay
    the venv's) with `-m fleet`, so it works with the PATH cron gives (/usr/bin:/bin)."""
    return [os.path.abspath(sys.executable), "-m", "fleet", *args]


# --- install -------------------------------------------------------------------------------

def _pick_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "systemd" if schedule_systemd.systemd_is_running() else "cron"
    return backend


def _timing(at: str, backend: str) -> tuple[str | None, list[str]]:
    """(crontab schedule, OnCalendar values) for --at on `backend`; UsageError when unusable."""
    try:
        if is_cron_expression(at):
            cron = cron_for_crontab(at)
            return cron, cron_to_oncalendar(at) if backend == "systemd" else []
        if backend == "cron":
            raise UsageError(f"--at {at!r}: the cron backend needs a cron expression "
                             "(minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\")")
        return None, [check_oncalendar(at)]
    except CronError as exc:
        raise UsageError(f"--at {at!r}: {exc}") from None


def _resolve_playbook(playbook: str) -> tuple[str, str | None]:
    """("scan", None) or ("run", absolute path of the playbook file), validated now.

    Always a path: cron starts in $HOME and systemd in /, where `./playbooks/NAME.toml` would
    name something else than it did here.
    """
    if playbook == "scan":
        return "scan", None
    from fleet.config.playbook import load_playbook

    return "run", str(load_playbook(playbook).path)


def _absolute_limit(limit: str) -> str:
    """--limit with every @FILE made absolute: the entry does not run in this folder."""
    terms = []
    for term in limit.split(","):
        bang = "!" if term.startswith("!") else ""
        body = term[len(bang):]
        if body.startswith("@"):
            body = "@" + os.path.abspath(os.path.expanduser(body[1:]))
        terms.append(bang + body)
    return ",".join(terms)


def _env_file_defines(key: str) -> bool:
    path = control_dir() / ENV_FILE
    try:
        return any(line.strip().removeprefix("export ").startswith(key + "=")
                   for line in path.read_text(encoding="utf-8").splitlines())
    except OSError:
        return False


def _notify_hints(inventory: Path) -> list[str]:
    """Validate fleet.toml now (exit 2 on problems) and say what a scheduled notice will miss."""
    from fleet.config.fleetconf import config_path, load_fleet_config

    config = load_fleet_config(inventory).notify
    if not config.configured:
        return [f"note: notify is on but {config_path(inventory)} has no [notify.telegram] or [notify.webhook]; "
                "the runs will say so in the log"]
    hints = []
    names = [c.token_env for c in (config.telegram,) if c] + [c.url_env for c in (config.webhook,) if c and c.url_env]
    for name in names:
        if not _env_file_defines(name):
            hints.append(f"note: cron and systemd do not see your shell's {name}; put `{name}=…` in "
                         f"{control_dir() / ENV_FILE} (mode 0600) so scheduled notices can be sent")
    return hints


def install_command(name: str, playbook: str, at: str, inventory: Path, limit: str | None,
                    backend: str, unit_dir: Path | None, notify: bool) -> int:
    """Validate everything, store the definition, then install the cron line or systemd units.

    Installing a name again replaces its definition and entry. Exit 0, or 2 on bad input.
    """
    from fleet.config.inventory import load_inventory

    check_name(name)
    chosen = _pick_backend(backend)
    cron, on_calendar = _timing(at, chosen)
    inventory_path = Path(os.path.abspath(Path(inventory).expanduser()))
    inv = load_inventory(inventory_path)
    if limit:
        from fleet.config.selection import select_hosts

        limit = _absolute_limit(limit)
        select_hosts(inv, limit)            # a term that matches nothing fails the install, not the run
    action, playbook_ref = _resolve_playbook(playbook)
    hints = _notify_hints(inventory_path) if notify else []

    state = control_dir()
    logs = private_dir(state / "logs")
    log = logs / f"{name}.log"
    command = fleet_argv("schedule", "run", name)
    env = {"FLEET_STATE_DIR": str(state)}
    crontab_user = (os.environ.get(CRONTAB_USER_ENV) or None) if chosen == "cron" else None
    units = Path(os.path.abspath(unit_dir or schedule_systemd.default_unit_dir())) if chosen == "systemd" else None
    schedule = Schedule(
        name=name, action=action, playbook=playbook_ref, inventory=str(inventory_path), limit=limit,
        notify=notify, backend=chosen, at=at, cron=cron, on_calendar=on_calendar, command=command,
        state_dir=str(state), log=str(log), unit_dir=str(units) if units else None, crontab_user=crontab_user,
        installed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    # Everything that can refuse the input (quoting, paths) runs before anything is changed.
    if chosen == "cron":
        line = schedule_cron.entry_line(name, cron, schedule_cron.entry_command(command, env, log))
    else:
        description = f"fleet schedule {name}: {schedule.what} on {inventory_path}"
        service = schedule_systemd.service_text(name, description, command, env, log)
        timer = schedule_systemd.timer_text(name, on_calendar)

    previous = definition_path(name)
    old = load_schedule(name) if previous.exists() else None
    notes = []
    if old and (old.backend, old.unit_dir, old.crontab_user) != (chosen, schedule.unit_dir, crontab_user):
        notes += _uninstall_entry(old, None)     # moved: the old entry must not keep firing

    if chosen == "cron":
        replaced = schedule_cron.Crontab(crontab_user).install(name, line)
        who = f"the crontab of {crontab_user}" if crontab_user else "your crontab"
        notes.append(f"{'replaced' if replaced else 'added'} the line marked {schedule_cron.marker(name)} in {who}")
    else:
        notes += schedule_systemd.install_units(units, name, service, timer)
    write_json(previous, schedule.to_json())

    when = at if chosen == "cron" else "; ".join(on_calendar)
    print(f"installed schedule {name}: {schedule.what} -i {inventory_path}"
          f"{f' --limit {limit}' if limit else ''} at {when} ({chosen}{', notify' if notify else ''})")
    for note in notes + hints:
        print(f"  {note}")
    print(f"  log: {log}")
    return int(ExitStatus.OK)


# --- list / remove -------------------------------------------------------------------------

def _last_status(name: str) -> dict | None:
    try:
        return json.loads((control_dir() / "schedules" / f"{name}.last.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _installed(schedule: Schedule, unit_dir: Path | None, crontabs: dict) -> bool:
    if schedule.backend == "cron":
        user = schedule.crontab_user
        if user not in crontabs:
            try:
                crontabs[user] = schedule_cron.fleet_entries(schedule_cron.Crontab(user).read())
            except FleetError:
                crontabs[user] = {}
        return schedule.name in crontabs[user]
    folder = Path(unit_dir or schedule.unit_dir or schedule_systemd.default_unit_dir())
    return all((folder / unit).exists() for unit in schedule_systemd.unit_names(schedule.name))


def list_command(json_out: bool, unit_dir: Path | None) -> int:
    """Print every stored schedule, whether its entry is in place, and how its last run ended."""
    crontabs: dict = {}
    rows = []
    for s in all_schedules():
        rows.append({**s.to_json(), "installed": _installed(s, unit_dir, crontabs), "last": _last_status(s.name)})
    if json_out:
        print(json.dumps({"schema": "fleet.schedules/1", "state_dir": str(control_dir()), "schedules": rows}, indent=2))
        return int(ExitStatus.OK)
    if not rows:
        print(f"no schedules in {control_dir() / 'schedules'}; add one with `fleet schedule install NAME "
              "--playbook weekly --at \"0 3 * * 0\"`")
        return int(ExitStatus.OK)
    from tabulate import tabulate

    table = []
    for r in rows:
        last = r["last"] or {}
        outcome = "running" if last.get("exit_code") is None else f"exit {last['exit_code']}"
        when = r["at"] if r["backend"] == "cron" else "; ".join(r["on_calendar"])
        table.append([r["name"], "scan" if r["action"] == "scan" else Path(r["playbook"]).stem, when, r["backend"],
                      "yes" if r["installed"] else "MISSING", "yes" if r["notify"] else "no",
                      f"{last.get('started_at', '-')} {outcome}" if last else "-", r["inventory"]])
    print(tabulate(table, headers=["name", "playbook", "when", "backend", "installed", "notify", "last run",
                                   "inventory"], tablefmt="simple"))
    return int(ExitStatus.OK)


def _uninstall_entry(schedule: Schedule, unit_dir: Path | None) -> list[str]:
    if schedule.backend == "cron":
        removed = schedule_cron.Crontab(schedule.crontab_user).remove(schedule.name)
        return [f"removed the line marked {schedule_cron.marker(schedule.name)}" if removed
                else f"no line marked {schedule_cron.marker(schedule.name)} was in the crontab"]
    folder = Path(unit_dir or schedule.unit_dir or schedule_systemd.default_unit_dir())
    return schedule_systemd.remove_units(folder, schedule.name) or [f"no fleet-{schedule.name} units in {folder}"]


def remove_command(name: str, unit_dir: Path | None) -> int:
    """Remove the entry (only fleet's own line or units) and the stored definition; keep the log."""
    check_name(name)
    path = definition_path(name)
    if path.exists():
        notes = _uninstall_entry(load_schedule(name), unit_dir)
    else:
        # No definition (e.g. another state folder installed it): still clean up a marked entry.
        crontab = schedule_cron.Crontab(os.environ.get(CRONTAB_USER_ENV) or None)
        removed = crontab.remove(name) if crontab.program else 0
        folder = Path(unit_dir or schedule_systemd.default_unit_dir())
        notes = ([f"removed the line marked {schedule_cron.marker(name)}"] if removed else [])
        notes += schedule_systemd.remove_units(folder, name)
        if not notes:
            raise UsageError(f"no schedule named {name!r}: nothing in {path.parent}, no line marked "
                             f"{schedule_cron.marker(name)} in the crontab, no units in {folder}")
    for leftover in (path, path.with_name(f"{name}.last.json")):
        leftover.unlink(missing_ok=True)
    print(f"removed schedule {name}")
    for note in notes:
        print(f"  {note}")
    return int(ExitStatus.OK)
