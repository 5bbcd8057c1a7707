"""`fleet run` and `fleet scan` end to end: the real CLI, the real agent, real sshd hosts.

Asserts on what a person sees (the table, stderr, exit status) and on the `--json` contract.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

import fleet.control.runner
import fleet.demo.sshd
from fleet.cli import main
import pythons

NOW_MS = int(time.time() * 1000)
AGENTS = [["main"], ["main", "work"], ["ops"], ["main", "cron"], ["assistant"]]


def write_agent(state_dir: Path, agent: str, turns: int = 10, pad: int = 100) -> None:
    """One OpenClaw agent: a store with the main session and its transcript of `turns` exchanges."""
    sessions = state_dir / "agents" / agent / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.uuid4())
    lines = [{"type": "session", "version": 3, "id": sid, "timestamp": "2026-11-14T08:00:00.000Z", "cwd": "/"}]
    parent = None
    for i in range(turns):
        for role in ("user", "assistant"):
            line_id = f"{len(lines):08x}"
            lines.append({"type": "message", "id": line_id, "parentId": parent,
                          "timestamp": "2026-11-14T08:00:01.000Z",
                          "message": {"role": role, "content": [{"type": "text", "text": f"{i} " + "x" * pad}]}})
            parent = line_id
    (sessions / f"{sid}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = {f"agent:{agent}:main": {"sessionId": sid, "updatedAt": NOW_MS - 3_600_000,
                                     "sessionFile": str(sessions / f"{sid}.jsonl")}}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))


def populate(state_dir: Path, index: int) -> None:
    for agent in AGENTS[index % len(AGENTS)]:
        big = index == 0 and agent == "main"      # 2.5 MB: over weekly's first tier (keep 200 records)
        write_agent(state_dir, agent, turns=300 if big else 10, pad=4000 if big else 100)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `fleet ARGS` in-process; return (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


GOOD = ["pc-a", "pc-b", "t440", "nuc", "vps"]
BAD = ["down", "rekeyed", "badstate"]


def test_weekly_on_five_hosts_with_three_broken_ones(ssh_fleet, cli, tmp_path):
    fleet_ = ssh_fleet(8, populate=populate, names=GOOD + BAD)
    fleet_.stop("down")
    fleet_.host("badstate").state_dir = Path("/nonexistent/fleet-test/state")
    fleet_.write_inventory()
    stranger = fleet.demo.sshd.make_keypair(tmp_path / "stranger_host_key")
    entries = [h.server if h.name != "rekeyed" else
               ("127.0.0.1", h.port, fleet.demo.sshd.public_key_line(stranger.with_name("stranger_host_key.pub")))
               for h in fleet_.hosts]
    fleet.demo.sshd.write_known_hosts(fleet_.known_hosts, entries)

    code, out, err = cli("run", "weekly", "-i", str(fleet_.inventory), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["schema"] == "fleet.run/1" and doc["playbook"] == "weekly" and doc["dry_run"] is False
    assert doc["run_id"] and doc["started_at"].endswith("Z") and doc["finished_at"].endswith("Z")
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert [h["host"] for h in doc["hosts"]] == GOOD + BAD
    for name in GOOD:
        assert hosts[name]["ok"] and hosts[name]["error"] is None
        agents = {f["agent"] for f in hosts[name]["files"]}
        assert agents == set(AGENTS[GOOD.index(name)])
        for f in hosts[name]["files"]:
            assert {"before", "after", "backup", "kind", "action", "actions", "path", "error"} <= set(f)
            assert f["before"]["bytes"] > 0 and f["kind"] in ("store", "transcript")
    trimmed = [f for f in hosts["pc-a"]["files"] if f["action"] == "trim"]
    assert len(trimmed) == 1 and trimmed[0]["after"]["records"] == 200
    assert trimmed[0]["before"]["bytes"] > 2 * 1024 * 1024 > trimmed[0]["after"]["bytes"]
    assert Path(trimmed[0]["backup"]).is_file()
    assert "connection refused" in hosts["down"]["error"]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in hosts["rekeyed"]["error"]
    assert f"{fleet_.known_hosts} line 7" in hosts["rekeyed"]["error"]
    assert "state dir does not exist: /nonexistent/fleet-test/state" in hosts["badstate"]["error"]
    totals = doc["totals"]
    assert (totals["hosts"], totals["hosts_ok"], totals["hosts_failed"]) == (8, 5, 3)
    assert totals["before_bytes"] > totals["after_bytes"] > 0
    retry = Path(err.split("retry with --limit @")[1].split()[0])
    assert [line for line in retry.read_text().splitlines() if not line.startswith("#")] == BAD
    for name in GOOD:
        assert f"{name}: ok" in err
    assert "down: FAILED: down (root@127.0.0.1:" in err

    # The same fleet as a person sees it: the table, with the failed hosts last and why.
    code, out, err = cli("run", "weekly", "-i", str(fleet_.inventory))
    assert code == 1
    for name in GOOD:
        assert any(line.startswith(name) for line in out.splitlines()), name
    failed_part = out[out.index("Failed hosts"):]
    assert out.index("Per host") < out.index("Failed hosts")
    for name, reason in (("down", "connection refused"), ("rekeyed", "REMOTE HOST IDENTIFICATION HAS CHANGED"),
                         ("badstate", "state dir does not exist")):
        assert name in failed_part and reason in failed_part

    # The retry list works as a --limit.
    code, out, err = cli("run", "weekly", "-i", str(fleet_.inventory), "--limit", f"@{retry}", "--json")
    assert [h["host"] for h in json.loads(out)["hosts"]] == BAD


def log_counts(log: Path) -> tuple[int, int]:
    text = log.read_text(errors="replace")
    return text.count("server_input_channel_open: ctype session"), text.count("req exec")


def test_each_scan_opens_one_exec_channel_per_host_cached_or_not(ssh_fleet, cli):
    fleet_ = ssh_fleet(2, populate=populate, log_level="DEBUG")
    caches = [h.server.cache_dir / "fleet" for h in fleet_.hosts]
    assert not any(c.exists() for c in caches)
    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--json")
    assert code == 0, err
    assert all(len(list(c.glob("agent-*.pyz"))) == 1 for c in caches)
    assert [log_counts(h.log) for h in fleet_.hosts] == [(1, 1), (1, 1)]
    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--json")
    assert code == 0
    assert [log_counts(h.log) for h in fleet_.hosts] == [(2, 2), (2, 2)]
    assert json.loads(out)["schema"] == "fleet.scan/1"


def test_unknown_host_key_refused_until_accepted_then_recorded(ssh_fleet, cli):
    fleet_ = ssh_fleet(2, populate=populate)
    fleet.demo.sshd.write_known_hosts(fleet_.known_hosts, [fleet_.hosts[0].server])
    code, out, err = cli("scan", "-i", str(fleet_.inventory))
    assert code == 1
    assert "is not in" in out and "--accept-new-host-keys" in out
    assert fleet_.known_hosts.read_text().count("\n") == 1

    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--accept-new-host-keys")
    assert code == 0, out
    assert f"fleet: recorded the new host key of [127.0.0.1]:{fleet_.hosts[1].port} (ssh-ed25519 SHA256:" in err
    import subprocess

    openssh_sees = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{fleet_.hosts[1].port}", "-f",
                                   str(fleet_.known_hosts)], capture_output=True, text=True).stdout
    assert fleet_.hosts[1].server.host_public_key_line().split()[1] in openssh_sees
    code, out, err = cli("scan", "-i", str(fleet_.inventory))
    assert code == 0


def test_scan_fail_on_and_dry_run(ssh_fleet, cli):
    fleet_ = ssh_fleet(2, populate=populate)
    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--fail-on", "critical")
    findings = [(h["host"], f["severity"]) for h in json.loads(cli("scan", "-i", str(fleet_.inventory), "--json")[1])["hosts"]
                for f in h["health"]]
    assert code == (1 if any(s == "critical" for _, s in findings) else 0)
    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--fail-on", "warning")
    assert code == (1 if findings else 0)
    assert findings, "the 2.5 MB transcript on host1 should produce a health finding"
    code, out, err = cli("scan", "-i", str(fleet_.inventory), "--fail-on", "sometimes")
    assert code == 2 and "--fail-on must be critical or warning" in err

    before = {p: p.read_bytes() for p in fleet_.hosts[0].state_dir.rglob("*") if p.is_file()}
    code, out, err = cli("run", "weekly", "-i", str(fleet_.inventory), "--dry-run", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] is True
    assert {p: p.read_bytes() for p in fleet_.hosts[0].state_dir.rglob("*") if p.is_file()} == before
    code, out, err = cli("run", "weekly", "-i", str(fleet_.inventory), "--json")
    real = json.loads(out)
    pick = lambda doc: sorted((h["host"], f["path"], f["action"], f["after"]["bytes"], f["after"]["records"])
                              for h in doc["hosts"] for f in h["files"])
    assert pick(dry) == pick(real)


def test_shell_syntax_in_the_inventory_is_never_executed(ssh_fleet, cli):
    fleet_ = ssh_fleet(1, populate=populate)
    marker = Path(f"/tmp/pwned-{secrets.token_hex(6)}")
    fleet_.hosts[0].state_dir = Path(f"/tmp/x$(touch {marker})`touch {marker}`")
    fleet_.write_inventory(extra_defaults=f'python = "python3$(touch${{IFS}}{marker})"')
    code, out, err = cli("scan", "-i", str(fleet_.inventory))
    assert code == 1 and "no python found" in out
    fleet_.write_inventory()
    inventory = fleet_.inventory.read_text().replace(str(fleet_.hosts[0].state_dir),
                                                     f"/tmp/x$(touch {marker})'\\\"`touch {marker}`")
    fleet_.inventory.write_text(inventory)
    code, out, err = cli("scan", "-i", str(fleet_.inventory))
    assert code == 1 and "state dir does not exist: /tmp/x$(touch" in out
    assert not marker.exists()


def test_local_connection_and_a_too_old_python(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    state = tmp_path / "openclaw"
    populate(state, 1)
    assert pythons.too_old(), pythons.MISSING_OLD
    oldest = pythons.too_old()[0]
    old = oldest.path
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.control]\nconnection = "local"\nstate_dir = "{state}"\n\n'
                         f'[hosts.oldbox]\nconnection = "local"\nstate_dir = "{state}"\npython = "{old}"\n')
    code, out, err = cli("run", "weekly", "-i", str(inventory), "--json")
    assert code == 1
    control, oldbox = json.loads(out)["hosts"]
    assert control["ok"] and {f["agent"] for f in control["files"]} == {"main", "work"}
    assert oldbox["error"].startswith(f"oldbox: {old} is Python {oldest.says}; the fleet agent needs Python >= 3.8")


def test_bad_inventory_or_playbook_exits_2_before_any_connection(cli, tmp_path):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.a]\naddress = "127.0.0.1"\nport = "22a"\n')
    code, out, err = cli("scan", "-i", str(inventory))
    assert code == 2 and "hosts.a.port" in err
    inventory.write_text('[hosts.a]\naddress = "127.0.0.1"\nport = 1\n')
    code, out, err = cli("run", "no-such-playbook", "-i", str(inventory))
    assert code == 2 and "no-such-playbook" in err


SLOW_AGENT = """\
import json, sys, time
plan = json.load(sys.stdin)
open(plan["run_id"] and sys.argv[0].rstrip("/") + ".started", "w").close()   # argv[0]: the unpacked agent
for _ in range(600):
    sys.stderr.write(".")
    sys.stderr.flush()
    time.sleep(0.1)
"""


def test_ctrl_c_exits_130_and_reports_running_hosts_as_interrupted(cli, tmp_path, monkeypatch):
    import hashlib
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", SLOW_AGENT)
    bundle = buf.getvalue()
    digest = hashlib.sha256(bundle).hexdigest()
    monkeypatch.setattr(fleet.control.runner, "agent_bundle", lambda: bundle)
    monkeypatch.setattr(fleet.control.runner, "agent_digest", lambda: digest)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.one]\nconnection = "local"\n\n[hosts.two]\nconnection = "local"\n')
    started = tmp_path / "cache" / "fleet" / f"agent-{digest[:16]}.started"

    def press_ctrl_c():
        for _ in range(600):
            if started.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    code, out, err = cli("scan", "-i", str(inventory), "--json")
    assert code == 130
    doc = json.loads(out)
    assert [(h["host"], h["interrupted"], h["error"]) for h in doc["hosts"]] == [
        ("one", True, "interrupted"), ("two", True, "interrupted")]
    assert "interrupted" in err


def test_notify_problems_are_warnings_that_never_fail_the_run(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    state = tmp_path / "openclaw"
    populate(state, 2)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.control]\nconnection = "local"\nstate_dir = "{state}"\n')
    code, out, err = cli("run", "weekly", "-i", str(inventory), "--notify")
    assert code == 0
    assert "fleet: warning: notify:" in err
    assert "control" in out
