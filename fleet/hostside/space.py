"""Room for backups: before an agent is touched, is there space for the backups its run may take?

`backup_shortfall(ctx, af, operations)` returns None, or one line for a person ("no space for
backup: …") when the backups this agent's run may need exceed the free space of the file system
that holds the backup folder. The orchestrator then changes nothing for that agent (its files
keep action "none"; the line is the agent's error) and goes on with the next agent, so a full
disk never leaves an agent half-cleaned.

The need is an upper bound from sizes alone (no file is read): the store when a store operation
runs; every transcript over the lowest tier; every trajectory when they are capped; every legacy
file when legacy trims run; orphans, archives and temp files past their age thresholds. Space is
`statvfs().f_bavail` (what an unprivileged writer may use). With gzip backups the need is not
known in advance and no estimate is made; a backup that still finds the disk full fails on its
own, with the same message, and leaves its file untouched.

With backup_to = "auto" (plan backup.to) the run's backups are an `AutoBackups`: per agent,
`backup_shortfall` sends them to the host's folder when the estimate fits its free space and to
the controller otherwise, and `backup_notes` says which and why (the agent's notes, in the
report). `disk_space(path)` is what the result reports as the host's space before and after.
"""
import os

from . import ops as operations

MB = 1024.0 * 1024.0
BLOCK = 4096  # a copy takes whole blocks: small files cost more than their size


def backup_need(ctx, af, ops):
    """Bytes of backups this agent's run may take at most (see the module docstring): every file
    some planned operation may change, as that operation's `backup_need` says (ops/)."""
    planned = [(op, ops[op.SECTION]) for op in operations.OPERATIONS if op.SECTION in ops]
    sizes = [info.size for info in af.files if info.rel not in af.problems
             and any(op.backup_need(ctx, af, section, info) for op, section in planned)]
    return sum((size + BLOCK - 1) // BLOCK * BLOCK for size in sizes)


def free_bytes(path):
    """Free bytes for an unprivileged writer on the file system of `path` (or its nearest existing
    parent); None when it cannot be known."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        st = os.statvfs(probe)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def backup_shortfall(ctx, af, ops):
    """None, or "no space for backup: …" when this agent's backups may not fit (with "auto"
    backups: choose where this agent's go, and None)."""
    backups = ctx.backups
    if isinstance(backups, AutoBackups):
        need = backup_need(ctx, af, ops)
        free = free_bytes(backups.host.root)
        if need and free is not None and need > free:
            backups.use(af.agent, "controller", "auto: the host has %.1f MB free in %s, this agent's backups "
                        "may need %.1f MB" % (free / MB, backups.host.root, need / MB))
        else:
            backups.use(af.agent, "host", None)
        return None
    if backups is None or getattr(backups, "gzip", False):
        return None
    need = backup_need(ctx, af, ops)
    if need == 0:
        return None
    free = free_bytes(backups.root)
    if free is None or need <= free:
        return None
    return ("no space for backup: this agent's changes may need %.1f MB of backups, only %.1f MB free in %s; "
            "nothing was changed for this agent (free space there, or set backup.dir to a bigger disk)"
            % (need / MB, free / MB, backups.root))


def backup_notes(ctx, af):
    """The agent's notes about where its backups went (only when "auto" chose the controller)."""
    backups = ctx.backups
    if not isinstance(backups, AutoBackups):
        return []
    where, why = backups.choices.get(af.agent, ("host", None))
    return ["backups to the controller (%s)" % why] if where == "controller" else []


def disk_space(path):
    """{"free": bytes, "total": bytes} of the file system holding `path`, or None."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return {"free": st.f_bavail * st.f_frsize, "total": st.f_blocks * st.f_frsize}


class AutoBackups(object):
    """backup_to = "auto": the host's BackupStore or the controller's, chosen per agent.

    Same interface as fsutil.BackupStore; `use(agent, "host"|"controller", why)` switches, and
    `choices` remembers each agent's choice for the result.
    """

    where = "auto"

    def __init__(self, host, controller):
        self.host = host
        self.controller = controller
        self.current = host
        self.choices = {}

    def use(self, agent, where, why):
        self.current = self.controller if where == "controller" else self.host
        self.choices[agent] = (where, why)

    @property
    def root(self):
        return self.current.root

    @property
    def gzip(self):
        return self.current.gzip

    @property
    def dry_run(self):
        return self.host.dry_run

    @property
    def stored_bytes(self):
        return self.host.stored_bytes + self.controller.stored_bytes

    @stored_bytes.setter
    def stored_bytes(self, value):
        # Only host-side copies (sqlite_run's) are added from outside.
        self.host.stored_bytes = value - self.controller.stored_bytes

    def target_for(self, rel_path):
        return self.host.target_for(rel_path)

    def backup(self, abs_path, rel_path, expect=None):
        return self.current.backup(abs_path, rel_path, expect=expect)

    def discard(self, backup):
        on_controller = str(backup.get("path") or "").startswith("controller:")
        (self.controller if on_controller else self.host).discard(backup)

    def tidy(self):
        self.host.tidy()


def make_backups(plan, host_store):
    """The run's backup store for plan backup.to: `host_store` ("host"), the controller's
    (backupstream.ControllerBackups over this process's stdout/stdin), or an AutoBackups of both."""
    to = plan["backup"].get("to") or "host"
    if to == "host":
        return host_store
    from .backupstream import Channel, ControllerBackups
    remote = ControllerBackups(Channel.of_process(), "controller:" + plan["run_id"], dry_run=host_store.dry_run)
    return remote if to == "controller" else AutoBackups(host_store, remote)


def rewrite_need(ctx, af, ops):
    """Bytes the agent's rewrites could need at most at once on the state dir's disk: their temp
    files (never more than the files themselves), plus their backups when those stay on it."""
    planned = [(op, ops[op.SECTION]) for op in operations.OPERATIONS if op.SECTION in ops and op.REWRITES]
    need = sum(info.size for info in af.files
               if any(op.backup_need(ctx, af, section, info) for op, section in planned))
    backups = ctx.backups
    if getattr(backups, "where", "host") == "host" or (isinstance(backups, AutoBackups)
                                                        and backups.current is backups.host):
        need += backup_need(ctx, af, ops)
    return need


def space_first(ctx, af, ops):
    """True when the state dir's disk has less room than this agent's rewrites could need: the
    run then frees space first (deletions, then the biggest files, retrying what found no room)."""
    if ctx.dry_run:
        return False
    need = rewrite_need(ctx, af, ops)
    free = free_bytes(ctx.state_dir)
    return bool(need) and free is not None and free < need


def no_room(rec):
    """True for the record of a file left as it was because its rewrite found the disk full."""
    return bool(rec) and bool(rec.get("error")) and str(rec["error"]).startswith("no space for")
