"""Transcript tiers on a SQLite-era agent, written by OpenClaw's own code.

fleet never writes `transcript_events` itself (their triggers revalidate rows; one direct UPDATE
once locked users out of OpenClaw 2026.8.2). OpenClaw ships the write: the trim behind
`openclaw sessions compact KEY --max-lines N` (function `trimSessionTranscriptForManualCompact`
in its `dist/session-accessor-*.js|mjs`, in every SQLite-era release from 2026.8.1 to 9.6). It
keeps the header and the last N - 1 lines, points parents and compaction anchors at kept lines,
all in one OpenClaw transaction. The CLI needs a running gateway; fleet loads the same function
with the host's Node, from the very package whose `--version` was checked against the database's
schema (sqlite_schema.usable_openclaw), and hands it the database path.

What fleet decides is only N, the same way as in the JSON era: the tier a session's transcript
text is over gives `keep_records`; the cut moves forward to the first user message so the kept
tail starts a turn (so fewer may remain); a session with no user message in that tail is not
trimmed. `plan_trims` reads that from the database (read-only); `apply_trims` calls OpenClaw and
checks that exactly header + the planned records remain and that the first kept record is a user
message. Like every SQLite step it runs first on a copy (sqlite_run.py), with OpenClaw's own state
folder replaced by a scratch one, so the rehearsal writes nothing of the user's (OpenClaw records
every database it opens in its state database).
"""
import json
import os
import re
import shutil
import subprocess

from .fsutil import FileError
from .sqlite_era import connect_path
from .terms import pick_tier

# Loads OpenClaw's own session functions from its dist folder and runs a list of jobs, one after
# the other, in one process (loading OpenClaw's modules costs ~1.5 s): argv = dist folder, JSON
# [{op: "trim" | "strip", agentId, sessionKey, sessionId, storePath, ...}]; prints {"results": [...]}.
# A function is found by the name its module exports it under (bundles rename exports per release).
OPENCLAW_JS = r"""
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
const [dist, jobs] = process.argv.slice(2);
const found = {};
async function find(fn) {
  if (found[fn]) return found[fn];
  for (const f of readdirSync(dist).sort()) {
    if (!/^session-accessor-[A-Za-z0-9_-]+\.m?js$/.test(f)) continue;
    const text = readFileSync(join(dist, f), "utf8");
    const at = text.lastIndexOf("export {");
    if (at < 0) continue;
    const m = new RegExp("[{,]\\s*" + fn + "(?:\\s+as\\s+([A-Za-z0-9_$]+))?\\s*[,}]").exec(text.slice(at));
    if (!m) continue;
    const mod = await import(pathToFileURL(join(dist, f)).href);
    if (typeof mod[m[1] || fn] === "function") return (found[fn] = mod[m[1] || fn]);
  }
  console.log(JSON.stringify({ error: "OpenClaw exports no " + fn + " in " + dist }));
  process.exit(3);
}
const results = [];
for (const a of JSON.parse(jobs)) {
  const scope = { sessionId: a.sessionId, storePath: a.storePath, sessionKey: a.sessionKey, agentId: a.agentId };
  if (a.op === "trim") {
    results.push(await (await find("trimSessionTranscriptForManualCompact"))(scope, { maxLines: a.maxLines }));
  } else {
    const entry = await (await find("updateSessionEntry"))(scope, (current) => {
      const patch = {};
      for (const k of a.fields) if (k in current) patch[k] = undefined;
      return patch;
    }, { preserveActivity: true });
    results.push({ updated: !!entry });
  }
}
console.log(JSON.stringify({ results }));
"""
_MJS = re.compile(r"""["']?([^"'\s]*openclaw\.mjs)["']?""")
_NODE = re.compile(r"""exec\s+["']?([^"'\s]+)["']?\s+["']?[^"'\s]*openclaw\.mjs""")


def openclaw_runtime(cmd):
    """((node argv, dist folder), None) of the OpenClaw package `cmd` runs, or (None, why not).

    `cmd` is what sqlite_schema.find_openclaw returned: `node …/openclaw.mjs`, npm's `openclaw`
    symlink to `openclaw.mjs`, or a small shell wrapper that execs node on it (read, never run).
    """
    script, node = None, None
    for part in cmd:
        if part.endswith("openclaw.mjs"):
            script = part
    if script is None:
        prog = shutil.which(cmd[-1]) or cmd[-1]
        real = os.path.realpath(prog)
        if real.endswith("openclaw.mjs"):
            script = real
        else:
            try:
                with open(real, "rb") as f:
                    head = f.read(4096).decode("utf-8", "replace")
            except (IOError, OSError):
                head = ""
            if head.startswith("#!"):
                m, n = _MJS.search(head), _NODE.search(head)
                script = m.group(1) if m else None
                node = n.group(1) if n else None
    if script is None:
        return None, ("cannot tell which OpenClaw package `%s` runs (no openclaw.mjs in it, its target or its "
                      "wrapper): set openclaw_cmd = [\"/path/to/node\", \"/path/to/openclaw/openclaw.mjs\"] "
                      "for this host in the inventory" % " ".join(cmd))
    pkg = os.path.dirname(os.path.realpath(script))
    dist = os.path.join(pkg, "dist")
    try:
        with open(os.path.join(pkg, "package.json")) as f:
            name = json.load(f).get("name")
    except (IOError, OSError, ValueError):
        name = None
    if name != "openclaw" or not os.path.isdir(dist):
        return None, ("%s (where `%s` leads) is not an OpenClaw package with a dist folder: set openclaw_cmd "
                      "to the node and openclaw.mjs of the OpenClaw install that serves this agent"
                      % (pkg, " ".join(cmd)))
    if node is None and len(cmd) > 1 and os.path.basename(cmd[0]).startswith("node"):
        node = cmd[0]
    node = node or shutil.which("node")
    if not node:
        return None, ("no `node` on PATH to load OpenClaw's own code with: set openclaw_cmd = "
                      "[\"/path/to/node\", \"%s\"] for this host in the inventory" % script)
    return ([node], dist), None


def _is_user(event_json):
    try:
        obj = json.loads(event_json)
    except (TypeError, ValueError):
        return False
    msg = obj.get("message") if isinstance(obj, dict) and obj.get("type") == "message" else None
    return isinstance(msg, dict) and msg.get("role") == "user"


def over_a_tier(sessions, tiers):
    """[(session, keep_records)] of the sessions whose transcript text is over a tier and who have
    more records than it keeps (`tiers` sorted by over_bytes, as the plan validator leaves them)."""
    out = []
    for s in sessions.values():
        tier = pick_tier(tiers, s["transcript_text_bytes"])
        if tier is not None and s["transcript_records"] > tier["keep_records"]:
            out.append((s, tier["keep_records"]))
    return out


class InUse(object):
    """Which sessions OpenClaw is using now: those whose entry it updated in the last `within_s`
    seconds before the plan's clock `now_ms` (0: none). OpenClaw's trim and entry update both rewrite
    the entry, and OpenClaw refuses a turn whose entry another process wrote meanwhile."""

    def __init__(self, now_ms, within_s):
        self.since_ms = now_ms - within_s * 1000 if within_s else None
        within_s = int(within_s)
        self.said = ("%d h" % (within_s // 3600) if within_s and within_s % 3600 == 0 else
                     "%d min" % (within_s // 60) if within_s and within_s % 60 == 0 else "%d s" % within_s)

    def __call__(self, updated_at):
        return self.since_ms is not None and updated_at is not None and int(updated_at) >= self.since_ms


def plan_trims(path, sessions, tiers, in_use):
    """([trim], [(what, why)]) for the sessions of database `path` over a tier.

    `sessions` is sqlite_era.inspect()'s {session_id: {...}}; a trim is {session_id, session_key,
    keep_records, records, max_lines} (max_lines = header + the kept records). Only the last
    keep_records events of a session are read: the records a trim drops are never loaded. A
    session `in_use` (an InUse) is skipped, with the reason."""
    trims, skipped = [], []
    over = over_a_tier(sessions, tiers)
    if not over:
        return trims, skipped
    conn = connect_path(path)
    try:
        cols = set(r[1] for r in conn.execute("PRAGMA table_info(transcript_events)"))
        packed = "event_zstd IS NOT NULL AND event_json IS NULL" if "event_zstd" in cols else "0"
        updated = dict(conn.execute("SELECT session_key, updated_at FROM session_nodes"))
        for s, keep in over:
            sid, key = s["session_id"], s.get("session_key")
            if not key:
                skipped.append(("transcript tier of session %s" % sid, "no session key names it"))
                continue
            if in_use(updated.get(key)):
                skipped.append(("transcript tier of %s" % key, "in use: OpenClaw updated it in the last %s, and a "
                                "trim now could fail its turn; a later run trims it ([sqlite] busy_within sets the window)"
                                % in_use.said))
                continue
            tail = conn.execute("SELECT event_json, %s FROM transcript_events WHERE session_id = ? AND seq > 0 "
                                "ORDER BY seq DESC LIMIT ?" % packed, (sid, keep)).fetchall()[::-1]
            if any(p for _e, p in tail):
                skipped.append(("transcript tier of %s" % key,
                                "its kept events are zstd-compressed, which fleet cannot read to align the cut"))
                continue
            cut = next((i for i, (event, _p) in enumerate(tail) if _is_user(event)), None)
            if cut is None:
                skipped.append(("transcript tier of %s" % key,
                                "no user turn among its last %d records; trimming would empty it" % keep))
                continue
            trims.append({"session_id": sid, "session_key": key, "keep_records": keep,
                          "records": s["transcript_records"], "max_lines": 1 + len(tail) - cut})
    finally:
        conn.close()
    return trims, skipped


def sandbox_env(env, work, config_path):
    """`env` with OpenClaw's state and home in scratch folders under `work` (the rehearsal)."""
    state, home = os.path.join(work, "openclaw-state"), os.path.join(work, "openclaw-home")
    for folder in (state, home):
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o700)
    out = dict(env, OPENCLAW_STATE_DIR=state, HOME=home)
    if config_path and os.path.isfile(config_path):
        copy = os.path.join(state, "openclaw.json")
        shutil.copyfile(config_path, copy)
        out["OPENCLAW_CONFIG_PATH"] = copy
    return out


def _events(path, sid):
    conn = connect_path(path)
    try:
        return [e for (e,) in conn.execute("SELECT event_json FROM transcript_events WHERE session_id = ? "
                                          "ORDER BY seq", (sid,))]
    finally:
        conn.close()


def _call(runtime, jobs, what, env, work, timeout_s):
    """OpenClaw's results, one per job of OPENCLAW_JS, all run by one node process; raises
    FileError (naming `what`) when it fails."""
    node, dist = runtime
    script = os.path.join(work, "fleet-openclaw-session.mjs")
    if not os.path.exists(script):
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(OPENCLAW_JS)
    try:
        proc = subprocess.run(node + [script, dist, json.dumps(jobs)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FileError("%s did not finish within %d s" % (what, timeout_s))
    out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(out[-1]) if out else {}
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    results = answer.get("results")
    if proc.returncode != 0 or not isinstance(results, list) or len(results) != len(jobs):
        raise FileError("%s failed (exit %d): %s" % (what, proc.returncode, answer.get("error")
                                                     or proc.stderr.decode("utf-8", "replace")[-300:]))
    return results


def apply_trims(runtime, path, agent, trims, env, work, timeout_s):
    """Run OpenClaw's trim for each planned trim on database `path`; returns notes.

    Raises FileError when OpenClaw fails or leaves anything but header + the planned tail."""
    if not trims:
        return []
    results = _call(runtime, [{"op": "trim", "agentId": agent, "sessionKey": t["session_key"],
                               "sessionId": t["session_id"], "storePath": os.path.abspath(path),
                               "maxLines": t["max_lines"]} for t in trims],
                    "OpenClaw's own transcript trim", env, work, timeout_s)
    notes = []
    for t, result in zip(trims, results):
        events = _events(path, t["session_id"])
        if not (result or {}).get("compacted") or len(events) != t["max_lines"] or \
                not _is_user(events[1] if len(events) > 1 else None):
            raise FileError("OpenClaw's transcript trim of %s (%s) left %d events, not the header and %d records "
                            "starting at a user turn" % (t["session_key"], result, len(events), t["max_lines"] - 1))
        notes.append("transcript of %s: %d -> %d records by OpenClaw's own trim (tier keep_records %d, "
                     "turn-aligned)" % (t["session_key"], t["records"], t["max_lines"] - 1, t["keep_records"]))
    return notes


def _entries(path):
    """[(session_key, updated_at, entry dict or None)] of database `path` (read-only)."""
    conn = connect_path(path)
    try:
        out = []
        for key, updated, text in conn.execute("SELECT session_key, updated_at, entry_json FROM session_nodes"):
            try:
                entry = json.loads(text) if text else None
            except (TypeError, ValueError):
                entry = None
            out.append((key, updated, entry if isinstance(entry, dict) else None))
        return out
    finally:
        conn.close()


def apply_strips(runtime, path, agent, fields, env, work, timeout_s, in_use):
    """Strip `fields` from every session entry of database `path` that has them, by OpenClaw's own
    entry update (its validation, its activity timestamps kept); returns notes. Entries `in_use`
    (an InUse) are left alone (a note says how many).
    Raises FileError when OpenClaw fails or a field is still there afterwards."""
    before = [(k, u, sorted(f for f in fields if f in e)) for k, u, e in _entries(path) if e is not None]
    busy = [k for k, u, have in before if have and in_use(u)]
    todo = [(k, u, have) for k, u, have in before if have and k not in busy]
    notes = []
    if busy:
        notes.append("%s left on %d session entr%s OpenClaw updated in the last %s (in use: a write now "
                     "could fail its turn; a later run strips %s; [sqlite] busy_within sets the window)" % (
                         "/".join(fields), len(busy), "y" if len(busy) == 1 else "ies",
                         in_use.said, "it" if len(busy) == 1 else "them"))
    if not todo:
        return notes
    _call(runtime, [{"op": "strip", "agentId": agent, "sessionKey": key, "storePath": os.path.abspath(path),
                     "fields": have} for key, _updated, have in todo],
          "OpenClaw's own entry update", env, work, timeout_s)
    after = dict((k, (u, e)) for k, u, e in _entries(path))
    left = [k for k, _u, _h in todo if after.get(k, (None, None))[1] is not None
            and any(f in after[k][1] for f in fields)]
    if left:
        raise FileError("OpenClaw's entry update left %s on %s" % ("/".join(fields), ", ".join(left[:5])))
    touched = [k for k, u, _h in todo if k in after and after[k][0] != u]
    note = "%s stripped from %d session entr%s by OpenClaw's own entry update" % (
        "/".join(fields), len(todo), "y" if len(todo) == 1 else "ies")
    if touched:
        note += "; OpenClaw moved updated_at of %d of them" % len(touched)
    return [note] + notes
