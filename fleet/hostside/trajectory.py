"""Trajectory cap: keep the last K whole runs of a `<sid>.trajectory.jsonl`, expire old runs.

`cap_trajectory(ctx, agent, info, policy)` returns one file record; policy is the plan's
operations.trajectories `{"keep_runs": K, "max_age_s": S}` (either may be null: no cap / no
expiry). Trajectories are diagnostics, never read back into a model's context, but a trace cut
in the middle of a run is worse than none, so runs are kept or dropped whole:

- events group by `runId`, runs ordered by first appearance. An event without a runId belongs
  to the run being recorded (the last one seen); a `session.started` without one, or any
  such event before the first run, belongs to the next run;
- the first run is *partial* when the file does not start with its beginning (OpenClaw bounds
  a trajectory by dropping its oldest events): the first event is neither `session.started` nor
  `trace.metadata` (`seq` says nothing: it may count from 1 again after a cut). A partial
  run is never kept (unless it is the only thing left, below);
- a run is expired when its last event's `ts` is older than `max_age_s` before the run's clock
  (ctx.now_ms); events without a readable `ts` never expire a run;
- of the remaining runs the last `keep_runs` are kept; if none remains, the last run is kept
  so that a session's trace is never emptied by a cap (archiving it with its session is the
  store prune's job);
- kept lines are copied byte for byte in file order; a crash-truncated last line (no newline,
  not JSON) is kept verbatim at the end; a bad line elsewhere is a FileError (untouched).

Records of a trajectory are its lines (it has no header). `*.trajectory-path.json` pointer files
are reported with action none.
"""
import hashlib
import json
from array import array

from .bigline import BIG_LINE, skim_line
from .context import file_record, stats
from .fsutil import FileError, describe_oserror, hash_file, open_nofollow
from .locks import iso_to_ms
from .transcript import BackupWitness, copy_range, error_record, rewrite_planned

_NO_RUN = -1
# Events that open a run (a session's first run opens with session.started; every run's first
# event is its trace.metadata): a file starting with anything else starts mid-run.
RUN_START_TYPES = ("session.started", "trace.metadata")


def parse_ts(value):
    """Epoch ms of an event's `ts` (ISO-8601 string or epoch s/ms number), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not -1e15 < value < 1e15:
            return None  # NaN, Infinity, or a time no trace can have
        return int(value if value > 1e11 else value * 1000)
    return iso_to_ms(value)


class TrajectoryScan(object):
    """Per line: offset and run index; per run: id, first event's facts and last ts."""

    def __init__(self):
        self.size = 0
        self.sha256 = None
        self.offsets = array("q", [0])
        self.run_of = array("l")
        self.run_ids = []
        self.run_last_ts = []
        self.first_is_start = True
        self.fragment = None

    @property
    def records(self):
        return len(self.run_of) + (1 if self.fragment else 0)


def scan_trajectory(f):
    """First pass: validate every line, group lines into runs, hash the file."""
    scan = TrajectoryScan()
    digest = hashlib.sha256()
    index = {}
    pending = []
    current = _NO_RUN
    pos = 0
    lineno = 0
    for raw in _lines(f, digest.update):
        lineno += 1
        if isinstance(raw, tuple):        # too long to read whole: (skimmed event, length, ended)
            event, length, ended = raw
            raw = None
        else:
            length, ended = len(raw), raw.endswith(b"\n")
            try:
                event = json.loads(raw)
            except (ValueError, RecursionError):
                event = None
        if not isinstance(event, dict):
            if raw is not None and not raw.strip():
                event = {}
            elif not ended:
                scan.fragment = (pos, length)
                pos += length
                continue
            else:
                raise FileError("line %d is not a JSON object; left untouched" % lineno)
        line = len(scan.run_of)
        if line == 0 and event:
            scan.first_is_start = event.get("type") in RUN_START_TYPES
        run_id = event.get("runId")
        if isinstance(run_id, str) and run_id:
            run = index.get(run_id)
            if run is None:
                run = index[run_id] = len(scan.run_ids)
                scan.run_ids.append(run_id)
                scan.run_last_ts.append(None)
            for waiting in pending:
                scan.run_of[waiting] = run
            pending = []
            current = run
        elif event and event.get("type") != "session.started" and current != _NO_RUN:
            run = current
        else:
            run = _NO_RUN
            if event:
                pending.append(line)
        ts = parse_ts(event.get("ts"))
        if ts is not None and run != _NO_RUN:
            last = scan.run_last_ts[run]
            scan.run_last_ts[run] = ts if last is None else max(last, ts)
        scan.run_of.append(run)
        pos += length
        scan.offsets.append(pos)
    if pending:
        if current == _NO_RUN:
            current = len(scan.run_ids)
            scan.run_ids.append(None)
            scan.run_last_ts.append(None)
        for waiting in pending:
            scan.run_of[waiting] = current
    scan.size = pos
    scan.sha256 = digest.hexdigest()
    return scan


def _lines(f, update):
    """The lines of `f` (hashed through `update`); a line over bigline.BIG_LINE comes as the tuple
    (skimmed value, length, ended with a newline) instead of its bytes, never read whole."""
    while True:
        raw = f.readline(BIG_LINE)
        if not raw:
            return
        if len(raw) == BIG_LINE and not raw.endswith(b"\n"):
            yield skim_line(f, raw, update)
            continue
        update(raw)
        yield raw


def plan_runs(scan, keep_runs, max_age_s, now_ms):
    """Return (kept run indexes as a set, notes). Pure."""
    runs = list(range(len(scan.run_ids)))
    notes = []
    candidates = runs
    if runs and not scan.first_is_start:
        candidates = runs[1:]
        notes.append("dropped the partial first run (its start was already cut off)")
    if max_age_s is not None:
        cutoff = now_ms - int(max_age_s) * 1000
        young = [r for r in candidates if scan.run_last_ts[r] is None or scan.run_last_ts[r] >= cutoff]
        if len(young) < len(candidates):
            notes.append("dropped %d runs older than %ss" % (len(candidates) - len(young), int(max_age_s)))
        candidates = young
    if keep_runs is not None and len(candidates) > int(keep_runs):
        notes.append("kept the last %d of %d runs" % (int(keep_runs), len(candidates)))
        candidates = candidates[len(candidates) - int(keep_runs):] if int(keep_runs) > 0 else []
    if not candidates and runs:
        candidates = [runs[-1]]
        notes.append("no run left by the policy: kept the last run so the trace is not emptied")
    return set(candidates), notes


def cap_trajectory(ctx, agent, info, policy):
    """Cap one trajectory per `policy`; returns its file record. Never raises FileError."""
    if info.path.endswith(".trajectory-path.json"):
        try:
            size, digest, newlines = hash_file(info.path)
        except OSError as exc:
            return error_record(agent, info, describe_oserror(exc, "reading " + info.rel), header_lines=0)
        return file_record(agent, info.rel, info.kind, before=stats(size, newlines, digest),
                           notes=["trajectory pointer; left as it is"])
    policy = policy or {}
    keep_runs = policy.get("keep_runs")
    max_age_s = policy.get("max_age_s")

    def analyse(f):
        scan = scan_trajectory(f)
        kept, notes = plan_runs(scan, keep_runs, max_age_s, ctx.now_ms)
        lines = [i for i, run in enumerate(scan.run_of) if run in kept]
        if scan.fragment:
            notes.append("last line is truncated (crash or a write in progress): kept verbatim at the end")
        return scan, lines, notes

    try:
        with open(open_nofollow(info.path), "rb") as f:
            scan, lines, notes = analyse(f)
    except OSError as exc:
        return error_record(agent, info, describe_oserror(exc, "reading " + info.rel), header_lines=0)
    except FileError as exc:
        return error_record(agent, info, str(exc), header_lines=0)
    if len(lines) == len(scan.run_of):
        return file_record(agent, info.rel, info.kind, before=stats(scan.size, scan.records, scan.sha256),
                           notes=[n for n in notes if "truncated" in n])
    used = {}
    witness = BackupWitness(ctx.backups, scan)

    def produce(src, sink):
        use = (scan, lines, notes)
        if witness.changed_since_scan(src):
            src.seek(0)
            use = analyse(src)
            use[2].append("the file changed before its backup; the cap was planned again")
        use_scan, use_lines = use[0], use[1]
        for i in use_lines:
            copy_range(src, sink, use_scan.offsets[i], use_scan.offsets[i + 1])
        if use_scan.fragment:
            start, length = use_scan.fragment
            copy_range(src, sink, start, start + length)
        used.update(scan=use_scan, lines=use_lines, notes=use[2], sink=sink)

    result, failed = rewrite_planned(ctx, agent, info, scan, produce, witness)
    if failed:
        return failed
    use_scan = used["scan"]
    kept_runs = len(set(use_scan.run_of[i] for i in used["lines"]))
    notes = list(used["notes"]) + ["kept %d of %d runs" % (kept_runs, len(use_scan.run_ids))]
    notes.extend(result["notes"])
    return file_record(agent, info.rel, info.kind,
                       before=stats(result["before"]["bytes"], use_scan.records, result["before"]["sha256"]),
                       after=stats(result["after"]["bytes"], used["sink"].lines, result["after"]["sha256"]),
                       action="trim", backup=result["backup"], notes=notes)
