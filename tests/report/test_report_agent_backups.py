"""`fleet report --host X --agent Y`: the backups figure is that agent's, not the whole host's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import make_local_fleet

REPO = Path(__file__).resolve().parents[2]


def fleet(args: list[str], state: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_STATE_DIR=str(state), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "fleet", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=240)


def test_an_agents_report_shows_its_own_backups(tmp_path):
    inventory = make_local_fleet(tmp_path)                 # agent main: one ~1.3 MB transcript
    agents = tmp_path / "openclaw" / "agents"
    (agents / "work").mkdir()
    subprocess.run(["cp", "-a", str(agents / "main" / "sessions"), str(agents / "work" / "sessions")], check=True)
    big = next((agents / "work" / "sessions").glob("*.jsonl"))
    big.write_bytes(big.read_bytes() + big.read_bytes().split(b"\n", 1)[1])    # ~2.6 MB: more to back up
    state = tmp_path / "state"
    run = fleet(["run", "emergency", "-i", str(inventory), "--json"], state)
    assert run.returncode == 0, run.stderr
    host = json.loads(run.stdout)["hosts"][0]
    backup_dir = Path(host["backup_dir"])
    on_disk = {agent: sum(p.stat().st_size for p in (backup_dir / "agents" / agent).rglob("*") if p.is_file())
               for agent in ("main", "work")}
    assert on_disk["main"] > 0 and on_disk["work"] > on_disk["main"]
    assert host["backup_bytes"] == on_disk["main"] + on_disk["work"]

    for agent in ("main", "work"):
        doc = json.loads(fleet(["report", "--host", "control", "--agent", agent, "--format", "json", "-i", str(inventory)], state).stdout)
        assert doc["hosts"][0]["backup_bytes"] == on_disk[agent]
        assert doc["totals"]["backup_bytes"] == on_disk[agent]
    table = fleet(["report", "--host", "control", "--agent", "main", "-i", str(inventory)], state).stdout
    from fleet.units import human_bytes

    assert f"backups {human_bytes(on_disk['main'])}" in table
