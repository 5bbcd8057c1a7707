"""A run's `before` describes the same files, byte for byte, as a scan of the same state."""
import json
import subprocess
import sys

from fleet.demo.gen import DEMO_FLEET, generate_host, scaled
from fleet.config.playbook import load_playbook

NOW_MS = 1763700000000


def _agent(args, plan=None):
    proc = subprocess.run([sys.executable, "-m", "fleet.hostside"] + args, input=json.dumps(plan) if plan else None,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _before(doc):
    return {f["path"]: (f["before"]["bytes"], f["before"]["records"]) for f in doc["files"]}


def test_every_file_a_weekly_dry_run_reports_has_the_size_a_scan_reports(tmp_path):
    # The demo's pc-a spec, shrunk: its cron job templates share a transcript with their latest
    # run, which once made a pruned run's record hide the template's transcript bytes.
    spec = DEMO_FLEET[0]
    spec = type(spec)(name=spec.name, agents=tuple(scaled(a, main_bytes=200 * 1024, main_records=120)
                                                   for a in spec.agents))
    state = tmp_path / "state"
    generate_host(state, spec, seed=5, now_ms=NOW_MS)
    scan = _agent(["scan", "--state-dir", str(state), "--now-ms", str(NOW_MS)])
    book = load_playbook("weekly")
    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T000000Z-0b0b0b", "now_ms": NOW_MS + 2 * 86400000,
            "dry_run": True, "state_dir": str(state), "agents": None, "backup": dict(book.backup),
            "operations": dict(book.operations)}
    run = _agent(["run", "--plan", "-"], plan)
    assert any(f["action"] == "archive" for f in run["files"]), "the prune archived nothing: test data too small"
    assert _before(run) == _before(scan)
    assert sum(f["before"]["bytes"] for f in run["files"]) == sum(
        p.stat().st_size for p in (state / "agents").rglob("*") if p.is_file() and not p.is_symlink())
