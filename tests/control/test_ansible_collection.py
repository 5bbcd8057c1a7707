"""The fleet.openclaw Ansible collection, end to end on real sshd hosts (issue 19).

ansible-core comes from its own virtualenv, `.venv-ansible` (scripts/setup-ansible.sh, which
`scripts/setup.sh test` runs); fleet's own venv never holds it. The collection is built from this
checkout (fleet.control.collection: the repository's ansible_collections/ plus the exported agent)
and installed with `ansible-galaxy collection install`, as a user would.

The end-to-end test runs examples/weekly.yml with `ansible-playbook` on two real sshd hosts, in check
mode and for real, imports both runs, renders the real one in every format, restores it, and
then runs `fleet run weekly` (dry and real) on a copy of the same data: every file's action, byte
counts, record counts and sha256 must be the same. The others: the built collection embeds the
exported agent and documents what the module does; bad files and unreachable hosts fail as in
`fleet run`; a plan compiled beforehand (the AWX way) gets a fresh run id; backups to the controller
are refused.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.demo.gen import HostSpec, generate_host, tiny_agent
from helpers import assert_markdown_adds_up

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_VENV = Path(os.environ.get("FLEET_ANSIBLE_VENV") or REPO / ".venv-ansible")
EXAMPLE = REPO / "examples" / "weekly.yml"
KB = 1024


def ansible_tool(name: str) -> str:
    """A tool of .venv-ansible; skip only where setup recorded that ansible-core cannot be installed."""
    tool = ANSIBLE_VENV / "bin" / name
    if tool.exists():
        return str(tool)
    reason = ANSIBLE_VENV / "UNAVAILABLE"
    if reason.exists():
        pytest.skip(f"ansible-core could not be installed here: {reason.read_text().strip()[-300:]}")
    pytest.fail(f"no {tool}: run scripts/setup.sh test (it installs ansible-core into {ANSIBLE_VENV})")


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "fleet-state"))
    return tmp_path / "fleet-state"


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> Path:
    """The collection built from this checkout and installed with ansible-galaxy: its collections path."""
    from fleet.control.collection import build_collection

    galaxy = ansible_tool("ansible-galaxy")
    base = tmp_path_factory.mktemp("ansible-collection")
    tarball = build_collection(base / "dist", galaxy)
    done = subprocess.run([galaxy, "collection", "install", str(tarball), "-p", str(base / "collections")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return base / "collections"


def cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().out


def snapshot(state: Path) -> dict[str, str]:
    """sha256 of every file of the agents (stale locks left out: a run removes them without backup)."""
    return {p.relative_to(state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((state / "agents").rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def populate(state: Path, i: int) -> None:
    now = int(time.time() * 1000)
    if i == 0:   # one transcript over the weekly playbook's 2 MB tier, so it is trimmed
        spec = HostSpec("host1", (tiny_agent("main", main_bytes=2300 * KB, main_records=500),))
    else:
        spec = HostSpec("host2", (tiny_agent("main", 24 * KB, 30), tiny_agent("ops", 16 * KB, 24)))
    generate_host(state, spec, seed=7, now_ms=now)


def put_back(pristine: Path, state: Path) -> None:
    """The state dir as it was generated (bytes and mtimes), for the next tool's run."""
    shutil.rmtree(state)
    shutil.copytree(pristine, state, symlinks=True)


def ansible_files(fleet, tmp: Path, collections_path: Path) -> dict:
    """Inventory, ansible.cfg (strict host keys, no ControlPersist masters left behind) and env."""
    lines = ["[openclaw]"] + [
        f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user={fleet.user} "
        f"ansible_ssh_private_key_file={fleet.identity_file} openclaw_state_dir={h.state_dir}"
        for h in fleet.hosts]
    (tmp / "hosts.ini").write_text("\n".join(lines) + "\n")
    (tmp / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\nforks = 10\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -F /dev/null -o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=no -o BatchMode=yes -o LogLevel=ERROR\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections_path),
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"), ANSIBLE_CALLBACKS_ENABLED="fleet.openclaw.fleet_results",
               ANSIBLE_NOCOLOR="1")
    return env


def playbook(env: dict, tmp: Path, results: Path, *extra: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    fleet_command = f"{sys.executable} -m fleet"
    done = subprocess.run([ansible_tool("ansible-playbook"), "-i", str(tmp / "hosts.ini"), str(EXAMPLE),
                           "-e", f"fleet_command={fleet_command!r}", *extra],
                          env=dict(env, FLEET_ANSIBLE_RESULTS=str(results)), capture_output=True, text=True,
                          timeout=180, cwd=tmp)
    if expect is not None:
        assert done.returncode == expect, done.stdout[-3000:] + done.stderr[-2000:]
    return done


ARCHIVE_STAMP = re.compile(r"\.deleted\.[^/]+$")


def per_file(host: dict) -> dict:
    """What must agree between two runs of the same plan on the same data, per file.

    The archive name carries the run's clock (OpenClaw's `<file>.deleted.<ts>`), which differs by
    the seconds between the two runs; everything else must be equal."""
    return {f["path"]: (f["kind"], f["action"], f["actions"], f["before"], f["after"], f["backup_sha256"],
                        f["error"], f["archived_to"] and ARCHIVE_STAMP.sub(".deleted.*", f["archived_to"]))
            for f in host["files"]}


def assert_same_runs(ansible_doc: dict, fleet_doc: dict) -> None:
    a = {h["host"]: h for h in ansible_doc["hosts"]}
    f = {h["host"]: h for h in fleet_doc["hosts"]}
    assert set(a) == set(f)
    for name in a:
        assert a[name]["ok"] and f[name]["ok"], (a[name]["error"], f[name]["error"])
        assert per_file(a[name]) == per_file(f[name]), name
        assert (a[name]["before_bytes"], a[name]["after_bytes"], a[name]["backup_bytes"]) == \
            (f[name]["before_bytes"], f[name]["after_bytes"], f[name]["backup_bytes"])
    for key in ("hosts", "hosts_ok", "before_bytes", "after_bytes", "freed_bytes", "backup_bytes", "files",
                "files_changed", "file_errors"):
        assert ansible_doc["totals"][key] == fleet_doc["totals"][key], key


def test_ansible_runs_the_weekly_plan_as_fleet_run_does(ssh_fleet, collections, tmp_path, capsys):
    fleet = ssh_fleet(2, populate=populate)
    inventory = str(fleet.inventory)
    pristine = {}
    for h in fleet.hosts:
        pristine[h.name] = tmp_path / "pristine" / h.name
        shutil.copytree(h.state_dir, pristine[h.name], symlinks=True)
    original = {h.name: snapshot(h.state_dir) for h in fleet.hosts}
    env = ansible_files(fleet, tmp_path, collections)

    # Check mode: the agent's dry run; nothing on the hosts changes.
    checked = playbook(env, tmp_path, tmp_path / "check.json", "--check")
    assert "would change" in checked.stdout
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == original
    code, out = cli(["import-ansible", str(tmp_path / "check.json"), "--json"], capsys)
    assert code == 0
    check_doc = json.loads(out)
    assert check_doc["dry_run"] is True and check_doc["playbook"] == "weekly"

    # For real, recorded by the playbook itself (fleet_import_file: no callback needed, as in AWX).
    playbook(env, tmp_path, tmp_path / "real.json", "-e", f"fleet_import_file={tmp_path / 'registered.json'}")
    registered = json.loads((tmp_path / "registered.json").read_text())
    assert sorted(registered) == ["host1", "host2"]
    code, out = cli(["report", registered["host1"]["run_id"], "--format", "json"], capsys)
    assert code == 0
    recorded_by_playbook = json.loads(out)
    # The callback's file of the same run records the same run (and replaces the record).
    code, out = cli(["import-ansible", str(tmp_path / "real.json"), "--json"], capsys)
    assert code == 0
    real_doc = json.loads(out)
    assert real_doc["dry_run"] is False and real_doc["run_id"] != check_doc["run_id"]
    assert (real_doc["hosts"], real_doc["totals"]) == (recorded_by_playbook["hosts"], recorded_by_playbook["totals"])
    changed = [f for h in real_doc["hosts"] for f in h["files"] if f["action"] not in ("none", "skip")]
    assert {"trim", "prune", "archive"} <= {f["action"] for f in changed}
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} != original

    # The recorded run in every format; the markdown tables add up to the JSON.
    code, out = cli(["report", real_doc["run_id"], "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == real_doc
    code, md = cli(["report", real_doc["run_id"], "--format", "markdown"], capsys)
    assert code == 0
    assert_markdown_adds_up(md, real_doc)
    code, table = cli(["report", real_doc["run_id"], "--format", "table"], capsys)
    assert code == 0 and real_doc["run_id"] in table
    code, _ = cli(["report", real_doc["run_id"], "--format", "html", "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0 and real_doc["run_id"] in (tmp_path / "r.html").read_text()
    code, out = cli(["history", "--json"], capsys)
    kinds = {r["run_id"]: (r["kind"], r["dry_run"]) for r in json.loads(out)["runs"]}
    assert kinds[real_doc["run_id"]] == ("run", False) and kinds[check_doc["run_id"]] == ("run", True)

    # fleet restore needs only the run id and the hosts: every file back, byte-identical.
    code, out = cli(["restore", real_doc["run_id"], "-i", inventory, "--json"], capsys)
    assert code == 0, out
    assert {h.name: snapshot(h.state_dir) for h in fleet.hosts} == original

    # fleet run, dry and real, on a copy of the same data: the same numbers, file by file.
    for h in fleet.hosts:
        put_back(pristine[h.name], h.state_dir)
    code, out = cli(["run", "weekly", "-i", inventory, "--dry-run", "--json"], capsys)
    assert code == 0
    assert_same_runs(check_doc, json.loads(out))
    code, out = cli(["run", "weekly", "-i", inventory, "--json"], capsys)
    assert code == 0
    assert_same_runs(real_doc, json.loads(out))


SPEC_VS_DOCS = """
import importlib.util, sys, yaml
spec = importlib.util.spec_from_file_location("cleanup", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
documented = yaml.safe_load(module.DOCUMENTATION)["options"]
assert set(documented) == set(module.ARGUMENT_SPEC), (set(documented) ^ set(module.ARGUMENT_SPEC))
for name, arg in module.ARGUMENT_SPEC.items():
    doc = documented[name]
    for key in ("type", "elements", "default"):
        assert doc.get(key) == arg.get(key), (name, key, doc.get(key), arg.get(key))
    assert bool(doc.get("required")) == bool(arg.get("required")), name
print(len(documented), "options agree")
"""


def test_collection_embeds_the_exported_agent_and_documents_itself(collections):
    from fleet import __version__
    from fleet.control.bundle import agent_bundle, agent_digest

    root = collections / "ansible_collections" / "fleet" / "openclaw"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == __version__
    embedded: dict = {}
    exec((root / "plugins" / "module_utils" / "fleet_agent.py").read_text(), embedded)
    assert embedded["AGENT_SHA256"] == agent_digest()
    assert base64.b64decode(embedded["AGENT_PYZ_B64"]) == agent_bundle()

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    done = subprocess.run([ansible_tool("ansible-doc"), "--json", "fleet.openclaw.cleanup"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)["fleet.openclaw.cleanup"]
    assert {"plan", "run_id", "now_ms", "state_dir", "agents", "openclaw_cmd"} <= set(doc["doc"]["options"])
    assert doc["doc"]["options"]["plan"]["required"] is True
    assert {"files", "health", "backup", "summary", "rc"} <= set(doc["return"])
    assert "fleet playbook compile" in doc["examples"]
    # The documented options are the module's argument spec (what ansible-test's validate-modules checks).
    check = subprocess.run([str(Path(ansible_tool("ansible-doc")).with_name("python")), "-c", SPEC_VS_DOCS,
                            str(root / "plugins" / "modules" / "cleanup.py")], env=env, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "8 options agree", check.stdout + check.stderr
    done = subprocess.run([ansible_tool("ansible-doc"), "-t", "callback", "--json", "fleet.openclaw.fleet_results"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "path" in json.loads(done.stdout)["fleet.openclaw.fleet_results"]["doc"]["options"]


def test_unreachable_hosts_and_bad_files_fail_as_in_fleet_run(ssh_fleet, collections, tmp_path, capsys):
    fleet = ssh_fleet(2, populate=populate)
    # host1's big transcript gets a line that is not JSON: the agent leaves that file alone and
    # reports its error; the task fails (fail_on_file_errors), the host's other files are done.
    big = max((fleet.host("host1").state_dir / "agents" / "main" / "sessions").glob("*.jsonl"),
              key=lambda p: p.stat().st_size)
    lines = big.read_bytes().splitlines(keepends=True)
    broken = b"".join(lines[:50] + [b"{not json\n"] + lines[50:])
    big.write_bytes(broken)
    fleet.stop("host2")
    env = ansible_files(fleet, tmp_path, collections)
    # A plan compiled beforehand (how AWX runs it, without fleet on the controller): the play makes
    # a fresh run id and clock of its own.
    code, plan_text = cli(["playbook", "compile", "weekly", "--json"], capsys)
    assert code == 0
    (tmp_path / "weekly.plan.json").write_text(plan_text)
    done = playbook(env, tmp_path, tmp_path / "real.json", "-e", f"fleet_plan_file={tmp_path / 'weekly.plan.json'}",
                    expect=None)
    assert done.returncode not in (0, 1), done.stdout[-2000:]
    assert "1 file(s) could not be handled" in done.stdout and big.name in done.stdout
    assert big.read_bytes() == broken
    code, out = cli(["import-ansible", str(tmp_path / "real.json"), "--json"], capsys)
    assert code == 1
    run = json.loads(out)
    assert run["run_id"] != json.loads(plan_text)["run_id"] and re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run["run_id"])
    hosts = {h["host"]: h for h in run["hosts"]}
    errors = [f for f in hosts["host1"]["files"] if f["error"]]
    assert hosts["host1"]["ok"] and [f["path"] for f in errors] == [big.relative_to(fleet.host("host1").state_dir).as_posix()]
    assert any(f["action"] != "none" for f in hosts["host1"]["files"] if not f["error"])
    assert not hosts["host2"]["ok"] and hosts["host2"]["error"].startswith("unreachable: ")
    assert (run["totals"]["hosts_failed"], run["totals"]["file_errors"]) == (1, 1)


def test_a_plan_with_backups_to_the_controller_is_refused_before_anything_runs(ssh_fleet, collections, tmp_path,
                                                                               capsys):
    fleet = ssh_fleet(1, populate=populate)
    original = snapshot(fleet.hosts[0].state_dir)
    env = ansible_files(fleet, tmp_path, collections)
    code, plan_text = cli(["playbook", "compile", "weekly", "--json"], capsys)
    plan = json.loads(plan_text)
    plan["backup"]["to"] = "controller"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    done = playbook(env, tmp_path, tmp_path / "real.json", "-e", f"fleet_plan_file={tmp_path / 'plan.json'}",
                    expect=2)
    assert "the plan sends backups to the controller" in done.stdout
    assert snapshot(fleet.hosts[0].state_dir) == original
    assert not (fleet.hosts[0].state_dir / "fleet-backups").exists()
