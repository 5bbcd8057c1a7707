"""Re-record the agent outputs next to this file: `python tests/report/data/agent_outputs/record.py`.

Each case runs the real bundled agent (`fleet agent export`) on a small generated state dir and
stores what came back — {"stdout", "stderr", "exit_code"} — as CASE.json. A few cases are what
a host's shell says when the agent cannot run at all; those are written by hand below.
Re-record after changing the agent's result document, then check tests/report/test_results.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from fleet.control.bundle import export_agent  # noqa: E402
from fleet.config.playbook import load_playbook  # noqa: E402

NOW_MS = 1763700000000


def write_agent(state: Path, agent: str, turns: int, pad: int) -> None:
    sessions = state / "agents" / agent / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.UUID(int=turns * 7919 + len(agent)))
    lines = [{"type": "session", "version": 3, "id": sid, "timestamp": "2025-11-14T08:00:00.000Z", "cwd": "/"}]
    parent = None
    for i in range(turns):
        for role in ("user", "assistant"):
            line_id = f"{len(lines):08x}"
            lines.append({"type": "message", "id": line_id, "parentId": parent,
                          "timestamp": "2025-11-14T08:00:01.000Z",
                          "message": {"role": role, "content": [{"type": "text", "text": f"{i} " + "x" * pad}]}})
            parent = line_id
    (sessions / f"{sid}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = {f"agent:{agent}:main": {"sessionId": sid, "updatedAt": NOW_MS - 3_600_000},
             f"agent:{agent}:cron:nightly:run:{uuid.UUID(int=1)}": {"sessionId": str(uuid.UUID(int=1)),
                                                                    "updatedAt": NOW_MS - 3 * 86_400_000}}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))


def plan(mode: str, state: Path, dry_run: bool = False, **extra) -> dict:
    book = load_playbook("weekly")
    doc = {"protocol": 1, "mode": mode, "run_id": "20251121T101500Z-3fa2c1", "now_ms": NOW_MS,
           "dry_run": dry_run, "state_dir": str(state), "agents": None, "backup": book.backup,
           "operations": book.operations if mode == "run" else {}, "restore": None}
    doc.update(extra)
    return doc


def run(agent: Path, plan_doc: dict | str) -> dict:
    text = plan_doc if isinstance(plan_doc, str) else json.dumps(plan_doc)
    done = subprocess.run([sys.executable, str(agent), "run", "--plan", "-"], input=text,
                          capture_output=True, text=True)
    return {"stdout": done.stdout, "stderr": done.stderr, "exit_code": done.returncode}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        agent = tmp / "agent.pyz"
        export_agent(agent)
        state = tmp / "state"
        write_agent(state, "main", turns=300, pad=4000)
        write_agent(state, "work", turns=5, pad=50)
        cases = {
            "scan_ok": run(agent, plan("scan", state)),
            "run_weekly": run(agent, plan("run", state)),
            "state_dir_missing": run(agent, plan("scan", tmp / "nowhere")),
            "plan_other_protocol": run(agent, dict(plan("scan", state), protocol=99)),
            "plan_not_json": run(agent, "{not json"),
            "unknown_agent": run(agent, plan("scan", state, agents=["ghost"])),
        }
        (state / "agents" / "main" / "sessions" / "sessions.json").write_text("{ truncated")
        cases["store_corrupt"] = run(agent, plan("run", state))
    cases["noise_before_result"] = dict(cases["scan_ok"], stdout="Welcome to t440!\n" + cases["scan_ok"]["stdout"])
    cases["python_missing"] = {"stdout": "", "stderr": "bash: line 1: python3: command not found\n", "exit_code": 127}
    cases["cut_off"] = dict(cases["scan_ok"], stdout=cases["scan_ok"]["stdout"][:200], exit_code=None)
    cases["killed_no_output"] = {"stdout": "", "stderr": "", "exit_code": None}
    for name, case in cases.items():
        (HERE / f"{name}.json").write_text(json.dumps(case, indent=1) + "\n")
        print(name, case["exit_code"], len(case["stdout"]), file=sys.stderr)


if __name__ == "__main__":
    main()
