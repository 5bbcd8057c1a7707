"""Shell quoting: no inventory value and no file name ever runs as a command (issue 8, item 5).

Every value that reaches a remote command line or a path — state_dir, python, become_user,
agents, user, address, identity_file, known_hosts — and the names of files in the state dir
carry `$(touch MARKER)`, backticks, `;`, quotes, spaces and (where TOML allows) newlines. The real
CLI runs `fleet scan` and `fleet run` against a real sshd host and a local host. Runs may fail
cleanly (exit 2 naming the key, or a per-host error), but the marker file never appears, and
where a value is legal (a state dir, key file or known_hosts path full of metacharacters, files
named like commands) the run succeeds and reports those files under their exact names.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from corpus_builder import conversation

REPO = Path(__file__).resolve().parents[2]


def payloads(marker: Path) -> dict[str, str]:
    """Injections for values: each would create `marker` if a shell ever ran it."""
    m = str(marker)
    return {
        "subst": f"$(touch {m})",
        "backticks": f"`touch {m}`",
        "semicolon": f"; touch {m};",
        "single": f"' ; touch {m} ; '",
        "double": f'" ; touch {m} ; "',
        "and": f"&& touch {m} ||",
        "nospace": f"$(touch${{IFS}}{m})",
        "nospace-backticks": f"`touch${{IFS}}{m}`",
        "nospace-semicolon": f";touch${{IFS}}{m};",
        "nospace-single": f"'$(touch${{IFS}}{m})'",
    }


def name_payloads(marker: Path) -> dict[str, str]:
    """Injections for file and folder names (no '/'): `cd` first, so they would touch ~/<marker name>."""
    return {label: text.replace(str(marker), f"{marker.name}").replace("touch", "cd;touch")
            for label, text in payloads(marker).items()}


def markers(marker: Path, *folders: Path) -> list[Path]:
    """Where an injection would have left its file: the marker, and the marker's name in $HOME,
    the working folders and the state dirs' parents."""
    places = [marker, Path.home() / marker.name] + [f / marker.name for f in folders]
    return [p for p in places if os.path.lexists(p)]


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value)


def fleet(tmp: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLEET_STATE_DIR=str(tmp / "fleet-state"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "fleet", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=180)


def hostile_state(parent: Path, marker: Path) -> Path:
    """A state dir whose own path and whose files' names are full of shell syntax."""
    state = parent.joinpath(*name_payloads(marker).values(), "state dir")   # one payload per folder
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    store = {"agent:main:main": {"sessionId": "s-1", "updatedAt": int(time.time() * 1000)}}
    (sessions / "sessions.json").write_text(json.dumps(store, indent=2))
    (sessions / "s-1.jsonl").write_text(conversation("s-1", turns=20))
    old = time.time() - 7 * 86400
    for name in ORPHANS(marker):
        orphan = sessions / name
        orphan.write_text(conversation("x", turns=1))
        os.utime(orphan, (old, old))
    return state


def ORPHANS(marker: Path) -> list[str]:
    return [text + ".jsonl" for text in name_payloads(marker).values()] + [
        f"line\nbreak $(cd;touch {marker.name}).jsonl", f"-rf $(cd;touch {marker.name}).jsonl"]


def test_nothing_executes(ssh_fleet, tmp_path):
    marker = Path("/tmp") / f"pwned-{secrets.token_hex(6)}"
    fleet_hosts = ssh_fleet(1, user="root")
    host = fleet_hosts.hosts[0]
    base = fleet_hosts.base
    try:
        _check(fleet_hosts, host, base, marker, tmp_path)
    finally:
        found = markers(marker, tmp_path, base, base / "ssh-side", base / "local-side")
        for path in found:
            path.unlink()
    assert found == []


def _check(fleet_hosts, host, base: Path, marker: Path, tmp: Path) -> None:
    ssh_state = hostile_state(base / "ssh-side", marker)
    local_state = hostile_state(base / "local-side", marker)
    odd = base / ("keys " + name_payloads(marker)["subst"] + " ' \"")
    odd.mkdir()
    identity = odd / "id $(touch x)"
    shutil.copy(fleet_hosts.identity_file, identity)
    identity.chmod(0o600)
    known_hosts = odd / "known `touch x`; hosts"
    shutil.copy(fleet_hosts.known_hosts, known_hosts)
    playbook = tmp / "pb.toml"
    playbook.write_text('[[transcripts.tier]]\nover = "1KB"\nkeep_records = 4\n\n[orphans]\narchive_after = "1h"\n')

    # 1. Legal but hostile values: the run works, and handles the hostile names as data.
    good = tmp / "good.toml"
    good.write_text("\n".join([
        "[hosts.sshd]", f'address = "{host.address}"', f"port = {host.port}", 'user = "root"',
        f"identity_file = {toml_str(str(identity))}", f"known_hosts = {toml_str(str(known_hosts))}",
        f"state_dir = {toml_str(str(ssh_state))}", "",
        "[hosts.local]", 'connection = "local"', f"state_dir = {toml_str(str(local_state))}", ""]))
    for argv in (["scan", "-i", str(good), "--json"], ["run", str(playbook), "-i", str(good), "--json"]):
        done = fleet(tmp, *argv)
        assert not markers(marker, tmp, base), f"{argv[0]} executed an injected command"
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        for h in result["hosts"]:
            assert h["ok"], h["error"]
            paths = {f["path"] for f in h["files"]}
            for name in ORPHANS(marker):
                assert "agents/main/sessions/" + name in paths
            if argv[0] == "run":
                archived = sorted(f["path"] for f in h["files"] if f["action"] == "archive")
                assert archived == sorted("agents/main/sessions/" + n for n in ORPHANS(marker))
                assert any(f["action"] == "trim" for f in h["files"])
    for state in (ssh_state, local_state):
        names = os.listdir(state / "agents" / "main" / "sessions")
        assert sorted(n.split(".deleted.")[0] for n in names if ".deleted." in n) == sorted(ORPHANS(marker))

    # 2. python: any string without whitespace is accepted, so it must be quoted, never run.
    py = tmp / "python.toml"
    lines = []
    for i, (label, text) in enumerate(payloads(marker).items()):
        if any(c.isspace() for c in text) or text.startswith("-"):
            continue
        for kind in ("ssh", "local"):
            lines += [f"[hosts.{kind}-{label}]", f"python = {toml_str(text)}",
                      f"state_dir = {toml_str(str(ssh_state))}"]
            lines += ([f'address = "{host.address}"', f"port = {host.port}", 'user = "root"',
                       f"identity_file = {toml_str(str(identity))}", f"known_hosts = {toml_str(str(known_hosts))}"]
                      if kind == "ssh" else ['connection = "local"'])
            lines.append("")
    py.write_text("\n".join(lines))
    for argv in (["scan", "-i", str(py), "--json"], ["run", str(playbook), "-i", str(py), "--json"]):
        done = fleet(tmp, *argv)
        assert not markers(marker, tmp, base), f"python = ... executed an injected command ({argv[0]})"
        if done.returncode == 2:
            assert "python" in done.stderr
            continue
        assert done.returncode == 1, done.stderr[-3000:]
        for h in json.loads(done.stdout)["hosts"]:
            assert not h["ok"] and "no python found" in h["error"], h

    # 3. Values the inventory refuses: every key is named, nothing is contacted or run.
    refused = {"become_user": None, "user": None, "address": None, "agents": None, "state_dir": None,
               "python": None, "identity_file": None}
    bad = tmp / "bad.toml"
    lines = []
    for i, text in enumerate(payloads(marker).values()):
        lines += [f"[hosts.h{i}]", f"address = {toml_str(text)}", f"user = {toml_str(text)}",
                  f"become_user = {toml_str(text)}", f"agents = [{toml_str(text)}]",
                  f"state_dir = {toml_str('/tmp/x' + chr(10) + text)}", f"python = {toml_str('py ' + text)}",
                  f"identity_file = {toml_str(text + chr(10))}", ""]
    bad.write_text("\n".join(lines))
    for argv in (["scan", "-i", str(bad)], ["run", str(playbook), "-i", str(bad)],
                 ["inventory", "check", "-i", str(bad)]):
        done = fleet(tmp, *argv)
        assert not markers(marker, tmp, base)
        assert done.returncode == 2, (argv, done.returncode, done.stderr[-2000:])
        for i in range(len(payloads(marker))):
            for key in refused:
                assert f"hosts.h{i}.{key}" in done.stderr, (key, done.stderr[-3000:])


def test_terminal_escapes_from_a_host_never_reach_the_terminal(tmp_path):
    """A file named with ESC sequences (set the title, colour, OSC 52 clipboard) is shown escaped."""
    sessions = tmp_path / "state" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(json.dumps({"agent:main:main": {"sessionId": "s-1", "updatedAt": 1}}))
    (sessions / "s-1.jsonl").write_text(conversation("s-1"))
    evil = "evil\x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b31m.jsonl"
    (sessions / evil).write_text(conversation("x"))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.me]\nconnection = "local"\nstate_dir = {toml_str(str(tmp_path / "state"))}\n')
    for argv in (["scan", "-i", str(inventory)], ["report", "--format", "markdown"]):
        done = fleet(tmp_path, *argv)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "evil\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J\\x9b31m.jsonl" in done.stdout
        for text in (done.stdout, done.stderr):
            assert not any(c in text for c in "\x1b\x07\x9b"), repr(text[-500:])
    done = fleet(tmp_path, "scan", "-i", str(inventory), "--json")
    paths = [f["path"] for h in json.loads(done.stdout)["hosts"] for f in h["files"]]
    assert "agents/main/sessions/" + evil in paths      # JSON carries the exact name, escaped by JSON


def test_a_file_name_that_is_not_utf8_is_recorded_and_reported(tmp_path):
    """Bytes 0xff 0xfe in a host's file name: the run is still recorded in the history (or it could
    not be restored by id), and every report shows the name escaped."""
    sessions = tmp_path / "state" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(json.dumps({"agent:main:main": {"sessionId": "s-1", "updatedAt": 1}}))
    (sessions / "s-1.jsonl").write_text(conversation("s-1", turns=30))
    with open(os.fsencode(str(sessions)) + b"/bad\xff\xfe.jsonl", "w") as f:
        f.write(conversation("x"))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[hosts.me]\nconnection = "local"\nstate_dir = {toml_str(str(tmp_path / "state"))}\n')
    playbook = tmp_path / "pb.toml"
    playbook.write_text('[[transcripts.tier]]\nover = "1KB"\nkeep_records = 4\n')
    done = fleet(tmp_path, "run", str(playbook), "-i", str(inventory))
    assert done.returncode == 0 and "could not record" not in done.stderr, done.stderr[-2000:]
    assert "bad\\xff\\xfe.jsonl" in done.stdout
    history = fleet(tmp_path, "history", "--json")
    runs = json.loads(history.stdout)["runs"]
    assert [r["kind"] for r in runs] == ["run"], history.stdout
    for fmt in ("markdown", "html", "json"):
        out = tmp_path / f"report.{fmt}"
        done = fleet(tmp_path, "report", "--format", fmt, "-o", str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        assert "bad" in out.read_text(encoding="utf-8")
