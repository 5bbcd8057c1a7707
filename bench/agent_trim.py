"""Benchmark: the agent's transcript trim against `cp` + `sync` of the same bytes.

`cp` + `sync` is the floor for a verified, durable backup of a file; the trim does more (backup,
verify, parse every line, write the kept part, fsync, rename), so the ratio says what the
trim costs over the cheapest safe copy. Two cases:

- field report: a 9.2 MB / 4,040-record transcript (fleet.demo.gen) → keep 100 + slim tool-output;
- big: a transcript of `--big-mb` MB made of `--line-kb` KB tool results (default 444 MB of
  600 KB lines, the size that hangs OpenClaw's gateway) → keep 100 + slim tool-output.

Each trim runs in a fresh subprocess under /usr/bin/time -v (else resource.getrusage of the
child), so the peak RSS printed is the trim's own, next to a child that only imports the agent.
Not part of the test suite; no timing is asserted.

    .venv/bin/python bench/agent_trim.py                    # both cases, full size
    .venv/bin/python bench/agent_trim.py --big-mb 60        # small scale
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW_MS = 1763700000000
SID = "0f5d59ee-034e-47d9-ac97-d383e6c022b8"

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from fleet.hostside import fsutil
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.transcript import trim_transcript
path, state, keep, slim, dry = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6] == "dry"
if keep < 0:
    print(json.dumps({"elapsed": 0.0})); sys.exit(0)
backups = fsutil.BackupStore(os.path.join(state, "fleet-backups", "bench"), dry_run=dry)
ctx = RunContext(state, "bench", %d, dry, backups, {})
st = os.stat(path)
info = FileInfo("main", path, os.path.relpath(path, state), "transcript", st.st_size, st.st_mtime_ns)
t0 = time.perf_counter()
record = trim_transcript(ctx, "main", info, {"over_bytes": 0, "keep_records": keep, "slim": slim or None},
                         {"tool_output_limit_bytes": 2048, "assistant_text_limit_bytes": 4096, "untouched_turns": 5})
print(json.dumps({"elapsed": time.perf_counter() - t0, "record": record}))
""" % NOW_MS


def field_report_transcript(path, mb, records, seed):
    sys.path.insert(0, REPO)
    from pathlib import Path

    from fleet.demo.gen.transcript import TranscriptFeatures, write_transcript
    write_transcript(Path(path), session_id=SID, rng=random.Random(seed), n_records=records,
                     n_bytes=int(mb * 1024 * 1024), start_ms=NOW_MS - 30 * 86400000, end_ms=NOW_MS,
                     cwd="/home/linou/.openclaw/workspace",
                     features=TranscriptFeatures(image=True, branch=True, compactions=2, aborted=20))


def big_transcript(path, mb, line_kb, session_id=SID, now_ms=NOW_MS):
    """Turns of user → assistant toolCall → toolResult of ~line_kb KB → assistant text, every line
    stamped an hour before `now_ms` (the file's mtime too). Returns the bytes written.
    bench/agent_throughput.py uses it as well."""
    target = int(mb * 1024 * 1024)
    rng = random.Random(7)
    words = ["drwxr-xr-x", "root", "4096", "Nov", "21", "05:40", "node_modules", "error:", "warning",
             "GET /api/v1/items 200", "\u4f1a\u8b70", "\"quoted\"", "path\\to\\file", "\t", "ok"]
    base = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.08 else "") for _ in range(line_kb * 200))
    base = base[: line_kb * 1024]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now_ms / 1000 - 3600))
    written = 0
    n = 0
    parent = None
    with open(path, "wb") as f:
        def put(obj):
            nonlocal written, parent, n
            n += 1
            obj.update(id="%08x" % n, parentId=parent, timestamp=stamp)
            parent = obj["id"]
            data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            f.write(data)
            written += len(data)
        f.write(json.dumps({"type": "session", "version": 3, "id": session_id, "timestamp": stamp,
                            "cwd": "/home/linou"}).encode() + b"\n")
        turn = 0
        while written < target:
            turn += 1
            put({"type": "message", "message": {"role": "user", "content": [{"type": "text", "text": "turn %d" % turn}]}})
            call = "toolu_%06d" % turn
            put({"type": "message", "message": {"role": "assistant", "content": [
                {"type": "toolCall", "id": call, "name": "exec", "arguments": {"command": "ls -laR /"}}],
                "usage": {"input": 1000, "output": 20, "totalTokens": 1020}, "stopReason": "toolUse"}})
            cut = rng.randint(0, 1024)
            put({"type": "message", "message": {"role": "toolResult", "toolCallId": call, "toolName": "exec",
                                                "content": [{"type": "text", "text": base[cut:] + base[:cut]}],
                                                "details": {"exitCode": 0}, "isError": False}})
            put({"type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "done %d" % turn}],
                                                "usage": {"input": 1000, "output": 5, "totalTokens": 1005}, "stopReason": "stop"}})
    os.utime(path, ns=((now_ms - 3600_000) * 1_000_000,) * 2)
    return written


def timed_child(args):
    """Run `args`; return (elapsed wall seconds, peak RSS in MB, stdout)."""
    use_time = os.path.exists("/usr/bin/time")
    cmd = (["/usr/bin/time", "-v"] if use_time else []) + args
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    elapsed = time.perf_counter() - t0
    if use_time:
        m = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        rss_mb = int(m.group(1)) / 1024.0 if m else float("nan")
    else:
        import resource
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return elapsed, rss_mb, proc.stdout


def cp_sync(src, dst):
    elapsed, rss, _ = timed_child(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "cp-sync", src, dst])
    os.unlink(dst)
    return elapsed, rss


def trim_child(path, state, keep, slim, dry):
    _, rss, out = timed_child([sys.executable, "-c", CHILD, REPO, path, state, str(keep), slim or "",
                               "dry" if dry else "real"])
    result = json.loads(out)
    return result["elapsed"], rss, result.get("record")


def longest_line(path):
    longest = 0
    with open(path, "rb") as f:
        for line in f:
            longest = max(longest, len(line))
    return longest


def run_case(name, path, state, keep, slim):
    size = os.path.getsize(path)
    mb = size / 1e6
    longest = longest_line(path)
    cp_s, cp_rss = cp_sync(path, path + ".cp")
    _, base_rss, _ = trim_child(path, state, -1, slim, False)
    dry_s, dry_rss, dry = trim_child(path, state, keep, slim, True)
    real_s, real_rss, real = trim_child(path, state, keep, slim, False)
    assert real["error"] is None, real["error"]
    assert (dry["after"], dry["actions"]) == (real["after"], real["actions"])
    print("\n== %s: %.1f MB, %d records, longest line %.0f KB -> keep %d, slim %s" % (
        name, mb, real["before"]["records"], longest / 1024.0, keep, slim))
    print("   after: %.2f MB, %d records, actions %s" % (real["after"]["bytes"] / 1e6, real["after"]["records"],
                                                        "+".join(real["actions"])))
    print("   %-26s %8.2f s %9.1f MB/s   peak RSS %7.1f MB" % ("cp + sync", cp_s, mb / cp_s, cp_rss))
    print("   %-26s %8.2f s %9.1f MB/s   peak RSS %7.1f MB" % ("agent trim, dry run", dry_s, mb / dry_s, dry_rss))
    print("   %-26s %8.2f s %9.1f MB/s   peak RSS %7.1f MB" % ("agent trim (backup+write)", real_s, mb / real_s,
                                                                 real_rss))
    print("   ratio trim / cp+sync: %.1fx    RSS over an idle agent child (%.1f MB): %.1f MB = %.1fx the longest line"
          % (real_s / cp_s, base_rss, real_rss - base_rss, (real_rss - base_rss) * 1048576.0 / max(1, longest)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="work directory (default: a temp dir, removed afterwards)")
    parser.add_argument("--keep", type=int, default=100)
    parser.add_argument("--slim", default="tool-output")
    parser.add_argument("--field-mb", type=float, default=9.2)
    parser.add_argument("--field-records", type=int, default=4040)
    parser.add_argument("--big-mb", type=float, default=444.0)
    parser.add_argument("--line-kb", type=int, default=600)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args(argv)
    work = args.dir or tempfile.mkdtemp(prefix="fleet-bench-trim-")
    try:
        state = os.path.join(work, "state")
        sessions = os.path.join(state, "agents", "main", "sessions")
        os.makedirs(sessions, exist_ok=True)
        field = os.path.join(sessions, "field.jsonl")
        field_report_transcript(field, args.field_mb, args.field_records, seed=1)
        run_case("field report", field, state, args.keep, args.slim)
        if not args.skip_big:
            big = os.path.join(sessions, "big.jsonl")
            t0 = time.perf_counter()
            big_transcript(big, args.big_mb, args.line_kb)
            print("\n(generated %.0f MB in %.1f s)" % (os.path.getsize(big) / 1e6, time.perf_counter() - t0))
            run_case("big", big, state, args.keep, args.slim)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
