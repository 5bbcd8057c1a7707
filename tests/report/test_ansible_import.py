"""`fleet import-ansible`: every shape of Ansible's results becomes the run `fleet run` would record,
and `fleet playbook compile` is the plan `fleet run` sends.

The module's results here are made the way the module makes them: the real host-side program runs
the compiled plan on generated OpenClaw data, and its document is wrapped in the keys the module
adds (tests/control/test_ansible_collection.py runs the module itself through ansible-playbook).
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from fleet.config.inventory import load_inventory
from fleet.control.plan import build_plan
from fleet.control.plan_compile import compile_plan
from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from fleet.hostside.main import execute
from fleet.hostside.protocol import validate_plan
from fleet.report import history
from fleet.report.results import parse_agent_output
from helpers import RecordingServer, run_cli

RUN_ID = "20261204T100000Z-a1b2c3"
KB = 1024


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    return tmp_path / "fleet-state"


def module_result(state: Path, run_id: str = RUN_ID, dry_run: bool = False) -> tuple[dict, dict]:
    """(what fleet.openclaw.cleanup returns, the agent's own document) for one host."""
    plan = dict(compile_plan("weekly", run_id, int(time.time() * 1000)), state_dir=str(state), dry_run=dry_run)
    doc, rc = execute(validate_plan(plan), stderr=io.StringIO())
    doc = json.loads(json.dumps(doc))
    files = doc["files"]
    wrapped = dict(doc, changed=any(f["action"] not in ("none", "skip") for f in files), rc=rc,
                   playbook="weekly", agent_sha256="0" * 64, stderr_tail="",
                   invocation={"module_args": {"plan": plan, "run_id": None}})
    return wrapped, doc


@pytest.fixture
def two_hosts(tmp_path) -> dict[str, tuple[dict, dict]]:
    out = {}
    for name, spec in (("pc-a", HostSpec("pc-a", (tiny_agent("main", main_bytes=2300 * KB, main_records=500),))),
                       ("t440", HostSpec("t440", (tiny_agent("main", 24 * KB, 30),)))):
        generate_host(tmp_path / name, spec, seed=7, now_ms=int(time.time() * 1000))
        out[name] = module_result(tmp_path / name)
    return out


def callback_file(results: list[dict]) -> dict:
    return {"schema": "fleet.ansible-results/1", "playbook": "weekly.yml", "started_at": "2026-12-04T10:00:00Z",
            "finished_at": "2026-12-04T10:00:09Z", "results": results}


def write(tmp_path: Path, doc) -> str:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_every_shape_records_the_run_fleet_run_would(two_hosts, tmp_path, capsys):
    expected = {name: parse_agent_output(name, json.dumps(doc), "", 0, doc["elapsed_s"]).to_json()
                for name, (_, doc) in two_hosts.items()}
    shapes = {
        "callback": callback_file([{"host": n, "task": "cleanup", "action": "fleet.openclaw.cleanup", "status": "ok",
                                    "result": r} for n, (r, _) in two_hosts.items()]),
        "ansible.posix.json": {"plays": [{"play": {"name": "weekly"}, "tasks": [
            {"task": {"name": "compile"}, "hosts": {n: {"action": "ansible.builtin.set_fact", "changed": False}
                                                    for n in two_hosts}},
            {"task": {"name": "cleanup"}, "hosts": {n: dict(r, action="fleet.openclaw.cleanup")
                                                    for n, (r, _) in two_hosts.items()}}]}], "stats": {}},
        "registered": {n: r for n, (r, _) in two_hosts.items()},
    }
    for shape, doc in shapes.items():
        code, out, err = run_cli(["import-ansible", write(tmp_path, doc), "--json"], capsys)
        assert code == 0, (shape, err)
        run = json.loads(out)
        assert run["run_id"] == RUN_ID and run["kind"] == "run" and run["playbook"] == "weekly"
        assert run["dry_run"] is False and run["source"] == "ansible"
        assert {h["host"]: h for h in run["hosts"]} == expected, shape
        assert run["totals"]["files_changed"] > 0 and run["totals"]["freed_bytes"] > 0
        assert history.load_run(RUN_ID).to_json() == run
        assert f"recorded Ansible run {RUN_ID}" in err


def test_unreachable_and_failed_hosts_are_failed_hosts_of_the_run(two_hosts, tmp_path, capsys):
    ok, _ = two_hosts["pc-a"]
    failed = {"failed": True, "msg": "this copy of fleet.openclaw has no embedded agent", "agent_sha256": None,
              "rc": None, "stderr_tail": "", "invocation": {"module_args": {"plan": {"run_id": RUN_ID}}}}
    doc = callback_file([
        {"host": "pc-a", "task": "cleanup", "action": "fleet.openclaw.cleanup", "status": "ok", "result": ok},
        {"host": "nas", "task": "cleanup", "action": "fleet.openclaw.cleanup", "status": "unreachable",
         "result": {"unreachable": True, "msg": "Failed to connect to the host via ssh: Connection refused"}},
        {"host": "t440", "task": "cleanup", "action": "fleet.openclaw.cleanup", "status": "failed", "result": failed},
    ])
    code, out, _ = run_cli(["import-ansible", write(tmp_path, doc), "--json"], capsys)
    assert code == 1
    run = json.loads(out)
    hosts = {h["host"]: h for h in run["hosts"]}
    assert hosts["pc-a"]["ok"] and hosts["pc-a"]["files"]
    assert not hosts["nas"]["ok"] and "unreachable: Failed to connect" in hosts["nas"]["error"]
    assert not hosts["t440"]["ok"] and "no embedded agent" in hosts["t440"]["error"]
    assert run["totals"]["hosts_failed"] == 2
    assert [r["ok"] for r in history.list_runs()] == [False]


def test_registered_results_keep_the_hosts_the_module_never_answered(two_hosts, tmp_path, capsys):
    ok, _ = two_hosts["pc-a"]
    stub = {"unreachable": True, "msg": "no result: unreachable, or failed before the module ran"}
    code, out, _ = run_cli(["import-ansible", write(tmp_path, {"pc-a": ok, "nas": stub}), "--json"], capsys)
    assert code == 1
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    assert hosts["pc-a"]["ok"] and hosts["nas"]["error"] == f"unreachable: {stub['msg']}"


def test_check_mode_and_real_runs_in_one_file_are_two_runs(tmp_path, capsys):
    generate_host(tmp_path / "h", HostSpec("h", (tiny_agent("main", 24 * KB, 30),)), seed=3,
                  now_ms=int(time.time() * 1000))
    dry, _ = module_result(tmp_path / "h", "20261204T100000Z-000001", dry_run=True)
    real, _ = module_result(tmp_path / "h", "20261204T100100Z-000002")
    code, out, _ = run_cli(["import-ansible", write(tmp_path, callback_file([
        {"host": "h", "task": "check", "action": "fleet.openclaw.cleanup", "status": "ok", "result": dry},
        {"host": "h", "task": "real", "action": "fleet.openclaw.cleanup", "status": "ok", "result": real}]))], capsys)
    assert code == 0
    assert {(r["run_id"], r["dry_run"]) for r in history.list_runs()} == {
        ("20261204T100000Z-000001", True), ("20261204T100100Z-000002", False)}
    assert out.count("DRY RUN") == 1


def test_notify_sends_the_imported_runs_notice(two_hosts, tmp_path, capsys):
    hook = RecordingServer()
    try:
        (tmp_path / "fleet.toml").write_text(f'[notify.webhook]\nurl = "{hook.url}/hook"\n')
        path = write(tmp_path, {n: r for n, (r, _) in two_hosts.items()})
        code, _, err = run_cli(["import-ansible", path, "--notify", "-i", str(tmp_path / "inventory.toml")], capsys)
    finally:
        hook.close()
    assert code == 0, err
    assert len(hook.received) == 1 and RUN_ID in json.dumps(hook.received[0]["json"])
    recorded = history.load_run(RUN_ID)
    assert recorded.extra["notify"] == {"sent": True, "problems": []}
    assert recorded.extra["inventory"] == str((tmp_path / "inventory.toml").resolve())


@pytest.mark.parametrize("content, says", [
    ("not json", "cannot read the Ansible results"),
    (json.dumps({"plays": [{"tasks": [{"hosts": {"a": {"action": "ansible.builtin.ping"}}}]}]}),
     "holds no result of the fleet.openclaw.cleanup module"),
    (json.dumps([1, 2]), "not an Ansible result fleet can read"),
    (json.dumps({"a": {"unreachable": True, "msg": "down", "agent_sha256": None}}), "names a run id"),
    (json.dumps({"a": {"protocol": 1, "run_id": "../../etc", "agent_sha256": "x", "files": []}}),
     "is not one the agent makes"),
])
def test_unreadable_files_exit_2_and_record_nothing(tmp_path, capsys, content, says):
    path = tmp_path / "results.json"
    path.write_text(content)
    code, out, err = run_cli(["import-ansible", str(path)], capsys)
    assert code == 2 and says in err and str(path) in err
    assert out == ""
    code, _, err = run_cli(["report", "--all-fleets"], capsys)
    assert code == 2 and "no runs recorded yet" in err


def test_compile_is_the_plan_fleet_run_sends(tmp_path, capsys):
    code, out, _ = run_cli(["playbook", "compile", "weekly", "--json", "--run-id", RUN_ID, "--now-ms", "1796400000000"],
                           capsys)
    assert code == 0
    compiled = json.loads(out)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.a]\naddress = "10.0.0.1"\n')
    from fleet.config.playbook import load_playbook

    sent = build_plan(load_inventory(inventory).hosts["a"], "run", RUN_ID, 1796400000000, playbook=load_playbook("weekly"))
    assert compiled == dict(sent, playbook="weekly")
    assert compiled["operations"]["transcripts"]["tiers"][0]["over_bytes"] == 2 * 1024 * 1024
    code, _, err = run_cli(["playbook", "compile", "weekly", "--run-id", "../x"], capsys)
    assert code == 2 and "--run-id" in err
    code, _, err = run_cli(["playbook", "compile", "no-such-playbook"], capsys)
    assert code == 2 and "no-such-playbook" in err
