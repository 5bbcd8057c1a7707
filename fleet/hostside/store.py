"""The session store (`agents/<id>/sessions/sessions.json`): key classes, loading, prune, rotate.

`classify_key` names what kind of session a key is (docs/openclaw-format.md, "Session keys").
`prune_store` removes disposable entries by kind and age, caps the entry count, strips bulky
fields, and rewrites the store under OpenClaw's store lock; `rotate_store` keeps OpenClaw
2026.4's `sessions.json.bak.<epochMs>` size rotation.

Rules that keep users' sessions safe:
- PROTECTED kinds (main, global, group, channel, topic, thread, cron job templates) are never
  removed by any rule, whatever their age and whatever the cap. Entries with a `pinnedAt` are
  kept too.
- Age = run clock (`now_ms`) - `updatedAt`. An entry without a numeric `updatedAt` counts as
  the oldest possible: any age rule that applies to its kind removes it, and the cap removes
  it first.
- `prune` ages apply to their kind only; `prune_direct_after_s` is the only age rule for
  direct-message sessions ("by policy only"); `stale_after_s` applies to every other kind that
  is not protected (explicit, other, and the disposable kinds). `max_entries` removes the oldest
  non-protected entries, direct ones included, until at most M entries remain.
- A store that does not parse, is empty, or holds an entry with a missing or unsafe sessionId
  is never written: the record carries the error and the file stays byte-identical.
- OpenClaw 2026.5-2026.7 take no file lock: a gateway replacing the store while fleet rewrites
  it is caught by safe_rewrite's re-checks and its final atomic exchange (the rewrite is redone
  once on the fresh content, then reported). What stays open: systems without renameat2's
  RENAME_EXCHANGE (there a replace in the microseconds before fleet's rename goes unseen), and a
  gateway that reads the store in the microseconds fleet's version is in place before an
  exchange is undone. Stopping the gateway closes both.
"""
import hashlib
import json
import os
import re

from .context import file_record, stats
from .archive import copy_verified, delete_file
from .discover import BULKY_FIELDS, json_type, loads_store_text
from .fsutil import FileChanged, FileError, describe_oserror, is_safe_id, open_nofollow, safe_rewrite
from .locks import LOCK_WAIT_S, StoreLock
from .terms import PROTECTED_KINDS

STORE_NAME = "sessions.json"
PROTECTED = frozenset(PROTECTED_KINDS)
KINDS = ("main", "direct", "group", "channel", "topic", "thread", "cron", "cron_run", "subagent",
         "acp", "dashboard", "probe", "explicit", "hook", "heartbeat", "dreaming", "global", "other")

_DREAMING_RE = re.compile(r"^dreaming-narrative-[a-z0-9][a-z0-9._-]*$")
_LEGACY_DISCORD_CHANNEL_RE = re.compile(r"^discord:(?:[^:]+:)?guild-[^:]+:channel-[^:]+$")
_DIRECT_TOKENS = frozenset(["direct", "dm", "dm-named"])
_BAK_RE = re.compile(r"^sessions\.json\.bak\.([0-9]{10,16})$")


def classify_key(key):
    """The kind of session a store key names (one of KINDS). Case-insensitive, like OpenClaw.

    Rule order (first match wins), on the segments after `agent:<id>:` (or all segments of an
    unscoped legacy key such as `hook:<uuid>` or `telegram:group:1`):
    - `global` → global; `agent:<id>` alone → other.
    - one segment: `dreaming-narrative-…` → dreaming, anything else → main. The main key is
      `agent:<id>:<mainKey>` where mainKey is the configurable `session.mainKey` (default
      "main"): any single segment is taken as a main key, so an unusual mainKey is protected.
      `agent:<id>:heartbeat` therefore is main too (a heartbeat needs a base session).
    - last segment `heartbeat` → heartbeat (`<base>:heartbeat`, whatever the base).
    - a `thread` marker followed by an id → thread; a `topic` marker → topic. These come before
      the disposable kinds: where a key could be read both ways it is kept.
    - `cron:<job>:run:<id>…` → cron_run; other `cron:…` → cron (the job's template, kept).
    - first segment subagent / acp / dashboard / hook → that kind; `explicit:model-run-…` →
      probe, other `explicit:…` → explicit.
    - a `group` / `channel` segment → group / channel (so a subagent spawned under a group
      key is kept, as OpenClaw's own chat-type rule keeps it); then a `subagent` segment under
      any other base → subagent; `direct`, legacy `dm`, `dm-named` → direct; legacy
      `discord:<acct>:guild-…:channel-…` → channel; anything else → other.
    """
    if not isinstance(key, str):
        return "other"
    raw = key.strip().lower()
    if raw == "global":
        return "global"
    parts = [p for p in raw.split(":") if p]
    if not parts:
        return "other"
    if parts[0] == "agent" and len(parts) >= 2:
        rest = parts[2:]
        if not rest:
            return "other"
    else:
        rest = parts
    return _classify_rest(rest)


def _has_marker(rest, word):
    return any(seg == word for seg in rest[1:-1])


def _classify_rest(rest):
    if len(rest) == 1:
        return "dreaming" if _DREAMING_RE.match(rest[0]) else "main"
    if rest[-1] == "heartbeat":
        return "heartbeat"
    if _has_marker(rest, "thread"):
        return "thread"
    if _has_marker(rest, "topic"):
        return "topic"
    head = rest[0]
    if head == "cron":
        return "cron_run" if len(rest) >= 4 and rest[2] == "run" else "cron"
    if head in ("subagent", "acp", "dashboard", "hook"):
        return head
    if head == "explicit":
        return "probe" if rest[1].startswith("model-run-") else "explicit"
    if _DREAMING_RE.match(head):
        return "dreaming"
    tokens = set(rest)
    if "group" in tokens:
        return "group"
    if "channel" in tokens:
        return "channel"
    if "subagent" in rest[:-1]:
        return "subagent"
    if tokens & _DIRECT_TOKENS:
        return "direct"
    if _LEGACY_DISCORD_CHANNEL_RE.match(":".join(rest)):
        return "channel"
    return "other"


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def parse_store_bytes(data, name=STORE_NAME, drop=()):
    """Parse a store's bytes into {key: entry}; raise FileError with one clear line when bad.

    Bad: 0 bytes or only whitespace, a byte-order mark, invalid UTF-8 (with the byte offset),
    invalid JSON (with line and column), a top level that is not an object, an entry that is not
    an object, or an entry whose sessionId is missing or not a safe id (OpenClaw would
    misbehave on it, and fleet never uses such a value as a path).

    Entries' fields named in `drop` keep their key but their value becomes None as the entry is
    parsed (loads_store_text): for fields a prune strips anyway, so they never all sit in memory.
    """
    if not data.strip():
        raise FileError("%s is empty (%d bytes): OpenClaw would load it as {} and its next save would "
                        "drop every session; restore it from a backup" % (name, len(data)))
    if data.startswith(b"\xef\xbb\xbf"):
        raise FileError("%s starts with a byte-order mark, which OpenClaw's loader rejects; left as it was"
                        % name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError("%s is not valid UTF-8 (byte %d); left as it was" % (name, exc.start))
    try:
        store = loads_store_text(text, drop, keep_keys=True, reject_constant=_reject_constant)
        del text
    except RecursionError:
        raise FileError("%s is not valid JSON (nested too deeply); left as it was" % name)
    except ValueError as exc:
        where = ("line %d column %d: %s" % (exc.lineno, exc.colno, exc.msg)
                 if hasattr(exc, "lineno") else str(exc))
        raise FileError("%s is not valid JSON (%s); left as it was" % (name, where))
    if not isinstance(store, dict):
        raise FileError("%s holds a JSON %s at the top level, not an object of session entries; "
                        "left as it was" % (name, json_type(store)))
    problems = []
    for key, entry in store.items():
        if not isinstance(entry, dict):
            problems.append("entry %r is a JSON %s, not an object" % (key, json_type(entry)))
            continue
        sid = entry.get("sessionId")
        if sid is None:
            problems.append("entry %r has no sessionId" % key)
        elif not is_safe_id(sid):
            problems.append("entry %r has an unsafe sessionId %r (never used as a path)" % (key, sid))
    if problems:
        more = "" if len(problems) <= 3 else " (and %d more)" % (len(problems) - 3)
        raise FileError("%s: %s%s; left as it was" % (name, "; ".join(problems[:3]), more))
    return store


def read_store_bytes(path, name=STORE_NAME):
    """The store's bytes, read without following a symlink; FileError when unreadable."""
    try:
        fd = open_nofollow(path)
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError as exc:
        raise FileError(describe_oserror(exc, "reading " + name))


def load_store(path):
    """Parse the store at `path`; raises FileError (see parse_store_bytes) when it is bad."""
    return parse_store_bytes(read_store_bytes(path), os.path.basename(path))


def render_store(store, trailing_newline):
    """The store as OpenClaw writes it: JSON.stringify(store, null, 2), UTF-8, key order kept."""
    try:
        data = json.dumps(store, indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from \\ud800 escapes) cannot be UTF-8: keep them escaped, as JS does.
        data = json.dumps(store, indent=2, ensure_ascii=True).encode("utf-8")
    return data + (b"\n" if trailing_newline else b"")


def updated_at(entry):
    """An entry's `updatedAt` as a number, or None when missing or not a finite number."""
    value = entry.get("updatedAt") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


class RemovedEntries(dict):
    """key -> entry of the entries a prune removed (a plain dict to callers).

    `kept_session_ids` and `kept_files` (basenames of kept entries' sessionFile) tell
    archive_session_files which files a kept entry still uses, so a transcript two keys share
    is never archived with the one removed.
    """

    def __init__(self, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self.kept_session_ids = set()
        self.kept_files = set()


class PrunePlan(object):
    """What prune decides for one parsed store (pure: no I/O)."""

    def __init__(self, store, now_ms, policy):
        policy = policy or {}
        self.kept = {}
        self.removed = RemovedEntries()
        self.removed_by_kind = {}
        self.notes = []
        self.stripped = {}
        self.entries_before = len(store)
        ages = dict((k, v) for k, v in (policy.get("prune") or {}).items() if v is not None)
        direct_after = policy.get("prune_direct_after_s")
        stale_after = policy.get("stale_after_s")
        max_entries = policy.get("max_entries")
        strip_fields = list(policy.get("strip_fields") or [])
        kinds = {}
        kept_keys = []
        pinned = 0
        for key, entry in store.items():
            kind = classify_key(key)
            kinds[key] = kind
            if kind in PROTECTED:
                kept_keys.append(key)
                continue
            if entry.get("pinnedAt"):
                pinned += 1
                kept_keys.append(key)
                continue
            limit_s = _age_limit(kind, ages, direct_after, stale_after)
            ts = updated_at(entry)
            if limit_s is not None and (ts is None or now_ms - ts > float(limit_s) * 1000.0):
                self._remove(key, entry, kind)
            else:
                kept_keys.append(key)
        if max_entries is not None and len(kept_keys) > int(max_entries):
            self._cap(store, kinds, kept_keys, int(max_entries))
            kept_keys = [k for k in kept_keys if k not in self.removed]
        if pinned:
            self.notes.append("%d pinned entr%s kept" % (pinned, "y" if pinned == 1 else "ies"))
        for key in kept_keys:
            entry = store[key]
            present = [f for f in strip_fields if f in entry]
            if present:
                entry = dict((k, v) for k, v in entry.items() if k not in present)
                for f in present:
                    self.stripped[f] = self.stripped.get(f, 0) + 1
            self.kept[key] = entry
            sid = entry.get("sessionId")
            if isinstance(sid, str):
                self.removed.kept_session_ids.add(sid)
            sfile = entry.get("sessionFile")
            if isinstance(sfile, str) and sfile:
                self.removed.kept_files.add(os.path.basename(sfile))
        for kind in KINDS:
            n = self.removed_by_kind.get(kind)
            if n:
                self.notes.append("removed %d %s entr%s" % (n, kind, "y" if n == 1 else "ies"))
        for field in strip_fields:
            n = self.stripped.get(field)
            if n:
                self.notes.append("stripped %s from %d entr%s" % (field, n, "y" if n == 1 else "ies"))

    def _remove(self, key, entry, kind):
        self.removed[key] = entry
        self.removed_by_kind[kind] = self.removed_by_kind.get(kind, 0) + 1

    def _cap(self, store, kinds, kept_keys, max_entries):
        order = dict((k, i) for i, k in enumerate(kept_keys))
        candidates = [k for k in kept_keys
                      if kinds[k] not in PROTECTED and not store[k].get("pinnedAt")]

        def oldest_first(k):
            ts = updated_at(store[k])
            return (0, 0, order[k]) if ts is None else (1, ts, order[k])

        candidates.sort(key=oldest_first)
        excess = len(kept_keys) - max_entries
        capped = candidates[:excess]
        for key in capped:
            self._remove(key, store[key], kinds[key])
        if capped:
            self.notes.append("max_entries %d: removed the %d oldest entr%s" % (
                max_entries, len(capped), "y" if len(capped) == 1 else "ies"))
        left = len(kept_keys) - len(capped)
        if left > max_entries:
            protected = left - (len(candidates) - len(capped))
            self.notes.append("%d protected entries exceed max_entries %d (kept)" % (protected, max_entries))

    @property
    def actions(self):
        acts = []
        if self.removed:
            acts.append("prune")
        if self.stripped:
            acts.append("strip")
        return acts


def _age_limit(kind, ages, direct_after, stale_after):
    if kind == "direct":
        return direct_after
    limits = [v for v in (ages.get(kind), stale_after) if v is not None]
    return min(limits) if limits else None


def strippable_bulk(policy):
    """The bulky fields (BULKY_FIELDS) this policy strips: no prune decision reads them, so the
    parse may let their values go at once (parse_store_bytes' `drop`)."""
    strip = (policy or {}).get("strip_fields") or ()
    return tuple(f for f in BULKY_FIELDS if f in strip)


def prune_store(ctx, agent, store_info, policy, lock_wait_s=LOCK_WAIT_S):
    """Prune and strip one agent's store under its lock. Returns (record, removed entries).

    `policy` is the plan's operations.store. The record's action is "prune" (actions
    ["prune"] or ["prune", "strip"]), "strip" when only fields were stripped, or "none";
    records are entry counts. The removed entries (key -> entry, a RemovedEntries) are for
    archive_session_files. If another writer replaces the store during the rewrite, the
    rewrite is redone once on the fresh content (still under the lock); a second change is
    reported as the record's error. A bad or locked store: error record, file untouched, {}.
    """
    path, rel = store_info.path, store_info.rel
    empty = stats(getattr(store_info, "size", 0) or 0, 0)
    try:
        data = read_store_bytes(path, rel)
        store = parse_store_bytes(data, rel, strippable_bulk(policy))
    except FileError as exc:
        return file_record(agent, rel, "store", empty, error=str(exc)), RemovedEntries()
    before = stats(len(data), len(store), hashlib.sha256(data).hexdigest())
    plan = PrunePlan(store, ctx.now_ms, policy)
    if not plan.actions:
        return file_record(agent, rel, "store", before, notes=plan.notes), plan.removed
    # The rewrite reads and plans again on the bytes it backs up: let this first parse go, or a
    # 50 MB store would be held twice at the peak (its parsed form is ~8x its size).
    data = store = plan = None
    notes = []
    lock = StoreLock(path, ctx.now_ms, dry_run=ctx.dry_run, wait_s=lock_wait_s)
    try:
        with lock:
            try:
                result, plan = _rewrite(ctx, path, rel, policy)
            except FileChanged:
                notes.append("the store changed during the rewrite (a live gateway?); redone on the fresh content")
                result, plan = _rewrite(ctx, path, rel, policy)
    except FileChanged:
        return file_record(agent, rel, "store", before, notes=notes + lock.notes,
                           error="%s changed again while fleet rewrote it (a live gateway keeps writing it); "
                                 "left as it was — retry later, or stop the gateway" % rel), RemovedEntries()
    except FileError as exc:
        return file_record(agent, rel, "store", before, notes=notes + lock.notes,
                           error=str(exc)), RemovedEntries()
    notes.extend(lock.notes)
    actions = plan.actions
    action = actions[0] if actions else "none"
    rec = file_record(agent, rel, "store",
                      stats(result["before"]["bytes"], plan.entries_before, result["before"]["sha256"]),
                      stats(result["after"]["bytes"], len(plan.kept), result["after"]["sha256"]),
                      action=action, actions=actions, backup=result["backup"],
                      notes=plan.notes + notes + result["notes"])
    return rec, plan.removed


def _rewrite(ctx, path, rel, policy):
    """One safe_rewrite of the store, re-reading and re-planning on the bytes it backed up."""
    holder = {}

    def produce(src, sink):
        data = src.read()
        store = parse_store_bytes(data, rel, strippable_bulk(policy))
        plan = PrunePlan(store, ctx.now_ms, policy)
        holder["plan"] = plan
        # Fresh content with nothing left to do (another writer pruned it): keep its bytes as they are.
        sink.write(render_store(plan.kept, data.endswith(b"\n")) if plan.actions else data)

    result = safe_rewrite(path, rel, produce, ctx.backups, ctx.dry_run, carry_appends=False)
    return result, holder["plan"]


def rotate_store(ctx, agent, store_info, policy):
    """OpenClaw 2026.4's size rotation: copy a store over `rotate_over_bytes` to
    `sessions.json.bak.<now_ms>` and keep only the newest `rotate_keep` such files.

    Returns [records]: the new copy (kind "archive", action "rotate", before 0 bytes) and each
    old `.bak.` file deleted (action "delete", after 0 bytes; backed up and verified first).
    Unlike OpenClaw, which renamed the live store away and let the next save recreate it, the
    copy leaves the live store in place and unchanged: a moment without sessions.json would let
    a gateway save an empty store. Shrinking the store is prune's and strip's job; call
    rotate_store before prune_store so the copy holds the pre-prune store, as OpenClaw's did.
    The copy is hashed while written, fsynced, re-read and compared, and written via a temp
    name in the same folder (mode 0600). Nothing happens when `rotate_over_bytes` is null.
    """
    limit = (policy or {}).get("rotate_over_bytes")
    if limit is None:
        return []
    keep = max(1, int((policy or {}).get("rotate_keep", 3)))  # never the copy just made
    path, rel = store_info.path, store_info.rel
    folder = os.path.dirname(path)
    records = []
    new_name = None
    try:
        size = os.lstat(path).st_size
    except OSError as exc:
        return [file_record(agent, rel, "store", stats(0, 0), error=describe_oserror(exc, "reading " + rel))]
    if size > int(limit):
        new_name = "%s.bak.%d" % (STORE_NAME, int(ctx.now_ms))
        target = os.path.join(folder, new_name)
        records.append(copy_verified(ctx, agent, path, rel, target, note=(
            "copy of %s (%d bytes, over rotate_over_bytes); the live store is unchanged" % (rel, size))))
        if records[-1]["error"]:
            new_name = None
    existing = []
    try:
        names = os.listdir(folder)
    except OSError as exc:
        records.append(file_record(agent, os.path.relpath(folder, ctx.state_dir), "other", stats(0, 0),
                                   error=describe_oserror(exc, "listing the sessions folder")))
        return records
    for name in names:
        m = _BAK_RE.match(name)
        if m:
            existing.append((int(m.group(1)), name))
    if new_name and new_name not in names:
        existing.append((int(ctx.now_ms), new_name))
    existing.sort(reverse=True)
    for _ms, name in existing[keep:]:
        full = os.path.join(folder, name)
        records.append(delete_file(ctx, agent, full, ctx.rel(full), "archive",
                                   notes=["rotation backup beyond rotate_keep %d" % keep]))
    return records
