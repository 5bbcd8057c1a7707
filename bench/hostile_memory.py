"""Benchmark: the host-side program's peak RSS on hostile sizes (issue 15; docs/security.md).

Each case runs the exported agent (`fleet agent export`) as its own process on generated files,
with the `emergency` playbook's operations (transcripts over 1 MB keep 100 records, tool outputs
slimmed; trajectories keep 2 runs; archives over 7 days deleted), and reads its peak RSS from
wait4()'s rusage. The bound it is held to: 64 MB plus 3 x the longest line it must parse.

- `one-line-header`: a 200 MB transcript that is one line, a valid session header (nothing to trim);
- `one-line-garbage`: 200 MB without a newline that is not JSON (refused, left alone);
- `huge-tool-result`: a header, 120 short lines and one 200 MB toolResult line, the last one (in
  the untouched turns: kept as it is, only skimmed);
- `huge-tool-result-slimmed`: the same followed by 20 turns: it is slimmed, so parsed whole;
- `store`: a state dir of `--store-mb` MB (default 1024) of transcripts with 4 KB lines;
- `sessions-json`: one agent's `sessions.json` of `--line-mb` MB (100 KB entries), which the
  emergency operations do not rewrite but discovery and health read (in pieces).

    .venv/bin/python bench/hostile_memory.py                          # every case, full size
    .venv/bin/python bench/hostile_memory.py --line-mb 20 --store-mb 100   # quick
Not part of the test suite; prints a markdown table (and writes it with --markdown FILE).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import emit, machine, markdown_table  # noqa: E402

MB = 1 << 20
NOW_MS = 1795000000000
BASE_MB = 64
LINE_FACTOR = 3


def export_agent(where: Path) -> Path:
    path = where / "agent.pyz"
    subprocess.run([sys.executable, "-m", "fleet", "agent", "export", str(path)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return path


def plan(state: Path) -> dict:
    return {"protocol": 1, "mode": "run", "run_id": "20261204T220000Z-mem001", "now_ms": NOW_MS,
            "dry_run": False, "state_dir": str(state), "agents": None,
            "backup": {"dir": str(state.parent / "backups"), "gzip": False, "keep_runs": None, "max_age_s": None},
            "operations": {"transcripts": {"tiers": [{"over_bytes": MB, "keep_records": 100,
                                                      "slim": "tool-output"}]},
                           "trajectories": {"keep_runs": 2}, "archives": {"delete_after_s": 7 * 86400}}}


def sessions_of(state: Path) -> Path:
    folder = state / "agents" / "main" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    # s1 is a live session of the store (else it would be an orphan, which emergency leaves alone).
    (folder / "sessions.json").write_text(json.dumps(
        {"agent:main:telegram:direct:s1": {"sessionId": "s1", "updatedAt": NOW_MS - 1000}}))
    return folder


def write_filler(f, n: int, byte: bytes = b"x") -> None:
    block = byte * MB
    while n > 0:
        f.write(block[:min(n, MB)])
        n -= min(n, MB)


def one_line_header(state: Path, size: int) -> int:
    with open(sessions_of(state) / "s1.jsonl", "wb") as f:
        f.write(b'{"type":"session","version":3,"id":"s1","timestamp":"2026-11-14T08:00:00.000Z","cwd":"')
        write_filler(f, size)
        f.write(b'"}\n')
    return 0                      # skimmed: its type is all a header check needs


def one_line_garbage(state: Path, size: int) -> int:
    with open(sessions_of(state) / "s1.jsonl", "wb") as f:
        write_filler(f, size)
    return 0                      # nothing in it needs parsing: the first bytes already say "not JSON"


def huge_tool_result(state: Path, size: int, turns_after: int = 0) -> int:
    with open(sessions_of(state) / "s1.jsonl", "wb") as f:
        f.write(b'{"type":"session","version":3,"id":"s1","timestamp":"2026-11-14T08:00:00.000Z","cwd":"/"}\n')
        lines = []
        parent = None
        for i in range(120):
            line_id = "%08x" % (i + 1)
            role = ("user", "assistant")[i % 2]
            lines.append(json.dumps({"type": "message", "id": line_id, "parentId": parent, "message": {
                "role": role, "content": [{"type": "text", "text": "%s %d" % (role, i)}]}}).encode() + b"\n")
            parent = line_id
        lines.append(json.dumps({"type": "message", "id": "fffffffe", "parentId": parent, "message": {
            "role": "assistant", "content": [{"type": "toolCall", "id": "c1", "name": "exec",
                                              "arguments": {"command": "cat big.log"}}]}}).encode() + b"\n")
        parent = "fffffffe"
        f.writelines(lines)
        f.write(b'{"type":"message","id":"ffffffff","parentId":"%s","message":{"role":"toolResult",'
                b'"toolCallId":"c1","toolName":"exec","content":[{"type":"text","text":"' % parent.encode())
        write_filler(f, size)
        f.write(b'"}]}}\n')
        parent = "ffffffff"
        for i in range(turns_after * 2):
            line_id = "%08x" % (0x1000 + i)
            role = ("user", "assistant")[i % 2]
            f.write(json.dumps({"type": "message", "id": line_id, "parentId": parent, "message": {
                "role": role, "content": [{"type": "text", "text": "%s %d" % (role, i)}]}}).encode() + b"\n")
            parent = line_id
    # Among the last (untouched) turns it is only skimmed; before them it is slimmed, so parsed whole.
    return size if turns_after else 0


def huge_tool_result_slimmed(state: Path, size: int) -> int:
    return huge_tool_result(state, size, turns_after=20)


def store(state: Path, size: int) -> int:
    folder = sessions_of(state)
    per_file = 64 * MB
    line = 4096
    n_files = max(1, size // per_file)
    store_doc = {}
    for k in range(n_files):
        sid = "s%04d" % k
        store_doc["agent:main:telegram:direct:%s" % sid] = {"sessionId": sid, "updatedAt": NOW_MS - 1000}
        with open(folder / ("%s.jsonl" % sid), "wb") as f:
            f.write(b'{"type":"session","version":3,"id":"%s","timestamp":"2026-11-14T08:00:00.000Z","cwd":"/"}\n'
                    % sid.encode())
            parent = None
            written = 0
            i = 0
            while written < per_file:
                i += 1
                line_id = "%08x" % i
                role = ("user", "assistant", "toolResult")[i % 3]
                msg = {"role": role, "content": [{"type": "text", "text": "y" * (line - 200)}]}
                if role == "toolResult":
                    msg.update(toolCallId="c%d" % i, toolName="exec")
                data = json.dumps({"type": "message", "id": line_id, "parentId": parent, "message": msg}).encode() + b"\n"
                f.write(data)
                written += len(data)
                parent = line_id
    (folder / "sessions.json").write_text(json.dumps(store_doc))
    return line


def sessions_json(state: Path, size: int) -> int:
    """A sessions.json of `size` bytes: 100 KB entries (skillsSnapshot bulk), pretty-printed."""
    folder = sessions_of(state)
    entry_bulk = 100 * 1024
    with open(folder / "sessions.json", "w") as f:
        f.write("{\n")
        n = max(1, size // (entry_bulk + 300))
        for k in range(n):
            entry = {"sessionId": "s%06d" % k, "updatedAt": NOW_MS - k * 1000,
                     "skillsSnapshot": {"prompt": "p" * entry_bulk}}
            f.write('  "agent:main:cron:job:run:%06d": %s%s\n' % (k, json.dumps(entry, indent=2).replace("\n", "\n  "),
                                                                ",\n" if k < n - 1 else ""))
        f.write("}\n")
    return entry_bulk


CASES = {"one-line-header": one_line_header, "one-line-garbage": one_line_garbage,
         "huge-tool-result": huge_tool_result, "huge-tool-result-slimmed": huge_tool_result_slimmed,
         "store": store, "sessions-json": sessions_json}


def run_case(agent: Path, work: Path, name: str, size: int) -> list:
    state = work / name / "openclaw"
    state.mkdir(parents=True)
    longest = CASES[name](state, size)
    total = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    plan_file = work / name / "plan.json"
    plan_file.write_text(json.dumps(plan(state)))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-E", "-s", str(agent), "run", "--plan", str(plan_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    doc = json.loads(out)
    rss_mb = usage.ru_maxrss / 1024.0
    bound = BASE_MB + LINE_FACTOR * longest / MB
    errors = sorted({(f["error"] or "")[:60] for f in doc["files"] if f["error"]})
    shutil.rmtree(work / name)
    return [name, "%.0f" % (total / MB), "%.1f" % (longest / MB), "%.0f" % rss_mb, "%.0f" % bound,
            "yes" if rss_mb <= bound else "NO", "%.1f" % elapsed, str(proc.returncode), "; ".join(errors) or "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--line-mb", type=int, default=200, help="size of the one-line cases (MB)")
    parser.add_argument("--store-mb", type=int, default=1024, help="size of the store case (MB)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of %s" % ", ".join(CASES))
    parser.add_argument("--dir", default=None, help="where to generate (default: a temp dir; needs ~2.5 x the data)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-hostile-mem-", dir=args.dir))
    try:
        agent = export_agent(work)
        rows = []
        for name in args.cases.split(","):
            size = (args.store_mb if name == "store" else args.line_mb) * MB
            rows.append(run_case(agent, work, name, size))
            print("  done: %s" % name, file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    headers = ["case", "data MB", "longest parsed line MB", "peak RSS MB", "bound MB", "within", "s", "exit",
               "file errors"]
    emit("%s\n\nbound = %d MB + %d x the longest line the agent must parse\n\n%s"
         % (machine(), BASE_MB, LINE_FACTOR, markdown_table(headers, rows)), args.markdown)


if __name__ == "__main__":
    main()
