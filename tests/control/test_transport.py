"""Transport against real OpenSSH sshd on loopback: one exec channel, caching, quoting, host keys,
ProxyJump, timeouts, local connection, old pythons.

The agent here is a tiny stand-in zipapp that echoes its plan (the real agent is exercised in
test_controller_e2e.py): what is under test is how it travels and runs, not what it does.
Each test host gets its own agent cache (fleet.demo.sshd sets `SetEnv XDG_CACHE_HOME`), like a separate machine.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pwd
import secrets
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

import fleet.demo.sshd
from fleet.errors import ConnectionFailed
from fleet.config.inventory import load_inventory
from fleet.control.transport import CancelToken, HostKeyRefused, exec_agent
from helpers import ECHO_AGENT, make_bundle
import pythons

SLOW_AGENT = """\
import sys, time
for _ in range(600):
    sys.stderr.write(".")
    sys.stderr.flush()
    time.sleep(0.1)
"""


@pytest.fixture
def one_host(ssh_fleet, monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    fleet_ = ssh_fleet(1, log_level="DEBUG")
    host = load_inventory(fleet_.inventory).hosts["host1"]
    return fleet_, host


def exec_requests(log: Path) -> tuple[int, int, int]:
    """(connections, session channels, exec requests) in sshd's DEBUG log so far."""
    text = log.read_text(errors="replace")
    return (text.count("Accepted publickey"), text.count("server_input_channel_open: ctype session"),
            text.count("req exec"))


def test_uncached_and_cached_runs_each_open_exactly_one_exec_channel(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    log = fleet_.hosts[0].log

    first = exec_agent(host, {"n": 1}, bundle=bundle, digest=digest)
    assert first.error is None, first
    assert first.cached is False
    assert exec_requests(log) == (1, 1, 1)
    cache = fleet_.hosts[0].server.cache_dir / "fleet"
    installed = cache / f"agent-{digest[:16]}.pyz"
    assert installed.read_bytes() == bundle
    assert oct(cache.stat().st_mode & 0o777) == "0o700"

    second = exec_agent(host, {"n": 2}, bundle=bundle, digest=digest)
    assert second.cached is True
    assert exec_requests(log) == (2, 2, 2)
    assert json.loads(second.stdout)["plan"] == {"n": 2}
    assert json.loads(second.stdout)["argv"] == ["run", "--plan", "-"]
    assert second.exit_code == 0


def test_a_damaged_cached_agent_is_replaced(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    exec_agent(host, {}, bundle=bundle, digest=digest)
    installed = fleet_.hosts[0].server.cache_dir / "fleet" / f"agent-{digest[:16]}.pyz"
    installed.write_bytes(b"print('tampered')")
    again = exec_agent(host, {"n": 3}, bundle=bundle, digest=digest)
    assert again.cached is False
    assert json.loads(again.stdout)["plan"] == {"n": 3}
    assert installed.read_bytes() == bundle


def test_the_unpacked_agent_is_verified_and_restored_when_changed(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    exec_agent(host, {}, bundle=bundle, digest=digest)
    tree = fleet_.hosts[0].server.cache_dir / "fleet" / f"agent-{digest[:16]}"
    assert (tree / "__main__.py").read_bytes() == zipfile.ZipFile(io.BytesIO(bundle)).read("__main__.py")
    (tree / "__main__.py").write_text("print('tampered')\n")
    again = exec_agent(host, {"n": 4}, bundle=bundle, digest=digest)
    assert again.cached is True and json.loads(again.stdout)["plan"] == {"n": 4}
    assert (tree / "__main__.py").read_bytes() == zipfile.ZipFile(io.BytesIO(bundle)).read("__main__.py")


def test_installing_a_new_agent_forgets_versions_unused_for_30_days(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    host = local_host(tmp_path)
    old_bundle, old_digest = make_bundle(ECHO_AGENT)
    recent_bundle, recent_digest = make_bundle(ECHO_AGENT)
    exec_agent(host, {}, bundle=old_bundle, digest=old_digest)
    exec_agent(host, {}, bundle=recent_bundle, digest=recent_digest)
    cache = tmp_path / "cache" / "fleet"
    month_ago = time.time() - 31 * 86400
    for entry in cache.glob(f"agent-{old_digest[:16]}*"):
        os.utime(entry, (month_ago, month_ago))
    new_bundle, new_digest = make_bundle(ECHO_AGENT)
    exec_agent(host, {}, bundle=new_bundle, digest=new_digest)
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(f"agent-{d[:16]}{ext}" for d in (recent_digest, new_digest) for ext in ("", ".pyz"))


def test_values_are_never_evaluated_by_a_shell(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    marker = Path(f"/tmp/pwned-{secrets.token_hex(6)}")
    evil = f"$(touch {marker})`touch {marker}`';touch {marker};'\"$HOME"
    run = exec_agent(host, {"state_dir": evil}, bundle=bundle, digest=digest)
    assert json.loads(run.stdout)["plan"]["state_dir"] == evil

    bad_python = dataclasses.replace(host, python=f"python3$(touch${{IFS}}{marker})")
    run = exec_agent(bad_python, {}, bundle=bundle, digest=digest)
    assert "no python found" in run.error and "host1" in run.error

    bad_user = dataclasses.replace(host, become_user=f"x';touch {marker};'")
    run = exec_agent(bad_user, {}, bundle=bundle, digest=digest)
    assert run.error and "sudo" in run.error
    assert not marker.exists()


def test_become_user_runs_the_agent_as_that_user_with_its_own_cache(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(dataclasses.replace(host, become_user="fleet-test"), {}, bundle=bundle, digest=digest)
    assert run.error is None, run
    out = json.loads(run.stdout)
    assert out["home"] == "/home/fleet-test"
    installed = Path(f"/home/fleet-test/.cache/fleet/agent-{digest[:16]}.pyz")
    assert installed.read_bytes() == bundle and installed.stat().st_uid == pwd.getpwnam("fleet-test").pw_uid
    installed.unlink()
    shutil.rmtree(installed.with_suffix(""))


def test_unknown_host_key_is_refused_then_recorded_with_accept_new(one_host, tmp_path):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    known = tmp_path / "known_hosts"
    strict = dataclasses.replace(host, known_hosts=str(known))
    with pytest.raises(HostKeyRefused) as refused:
        exec_agent(strict, {}, bundle=bundle, digest=digest)
    assert "--accept-new-host-keys" in str(refused.value)
    assert 'host_key_policy = "accept-new"' in str(refused.value)
    assert not known.exists()

    run = exec_agent(strict, {}, bundle=bundle, digest=digest, accept_new_host_keys=True)
    assert run.error is None
    key = fleet_.hosts[0].server.host_public_key_line()
    assert known_to_openssh(known, f"[127.0.0.1]:{host.port}") == [key]
    assert known.read_text().count("\n") == 1
    assert exec_agent(strict, {}, bundle=bundle, digest=digest).error is None   # strict now passes
    assert known.read_text().count("\n") == 1


def known_to_openssh(known: Path, name: str) -> list[str]:
    """The keys OpenSSH's own `ssh-keygen -F` finds for `name` in `known` (hashed or not)."""
    import subprocess

    found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True, text=True)
    return [" ".join(line.split()[1:3]) for line in found.stdout.splitlines() if line and not line.startswith("#")]


def test_accepted_keys_are_hashed_when_ssh_config_says_so(one_host, tmp_path):
    fleet_, host = one_host
    config = tmp_path / "ssh_config"
    known = tmp_path / "known_hosts"
    bundle, digest = make_bundle(ECHO_AGENT)
    for hashed in ("no", "yes"):
        config.write_text(f"Host *\n  HashKnownHosts {hashed}\n")
        known.unlink(missing_ok=True)
        exec_agent(dataclasses.replace(host, known_hosts=str(known), ssh_config=str(config)), {},
                  bundle=bundle, digest=digest, accept_new_host_keys=True)
        assert known_to_openssh(known, f"[127.0.0.1]:{host.port}") == [fleet_.hosts[0].server.host_public_key_line()]
        assert known.read_text().startswith("|1|") == (hashed == "yes")


def test_changed_host_key_is_refused_even_with_accept_new(one_host, tmp_path):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    other = fleet.demo.sshd.make_keypair(tmp_path / "other_key")
    known = tmp_path / "known_hosts"
    other_line = fleet.demo.sshd.public_key_line(other.with_name("other_key.pub"))
    known.write_text("# a comment\n" + fleet.demo.sshd.known_hosts_line("127.0.0.1", host.port, other_line) + "\n")
    with pytest.raises(HostKeyRefused) as refused:
        exec_agent(dataclasses.replace(host, known_hosts=str(known)), {}, bundle=bundle, digest=digest,
                  accept_new_host_keys=True)
    message = str(refused.value)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in message
    assert f"{known} line 2" in message
    assert known.read_text().count("\n") == 2    # nothing was added


def test_known_hosts_is_parsed_once_per_content_and_again_when_it_changes(one_host, tmp_path):
    """One parse shared by every host of a run (it used to be one per host: O(N^2) for big
    fleets); a file another process changed is read again, so a key it recorded counts."""
    from paramiko.hostkeys import HostKeys

    from fleet.control.transport import parsed_known_hosts

    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    others = [fleet.demo.sshd.public_key_line(fleet.demo.sshd.make_keypair(tmp_path / f"k{i}").with_name(f"k{i}.pub"))
              for i in range(3)]
    known = tmp_path / "known_hosts"
    known.write_text("".join(fleet.demo.sshd.known_hosts_line("10.9.0.%d" % i, 22, line) + "\n"
                             for i, line in enumerate(others)))
    strict = dataclasses.replace(host, known_hosts=str(known))
    with pytest.raises(HostKeyRefused):
        exec_agent(strict, {}, bundle=bundle, digest=digest)
    first = parsed_known_hosts(known)
    assert parsed_known_hosts(known) is first and len(first.keys()) == 3

    ours = fleet_.hosts[0].server.host_public_key_line()
    hashed = HostKeys.hash_host(f"[127.0.0.1]:{host.port}")
    with open(known, "a") as f:                     # as `ssh` with HashKnownHosts yes would add it
        f.write(f"{hashed} {ours}\n")
    assert exec_agent(strict, {}, bundle=bundle, digest=digest).error is None
    assert parsed_known_hosts(known) is not first and len(parsed_known_hosts(known).keys()) == 4


def test_proxy_jump_reaches_the_host_through_the_jump_host(ssh_fleet):
    fleet_ = ssh_fleet(2, log_level="DEBUG")
    inv = load_inventory(fleet_.inventory)
    jump = fleet_.hosts[0]
    target = dataclasses.replace(inv.hosts["host2"], proxy_jump=f"root@127.0.0.1:{jump.port}")
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(target, {"via": "jump"}, bundle=bundle, digest=digest)
    assert json.loads(run.stdout)["plan"] == {"via": "jump"}
    jump_log = jump.log.read_text()
    assert "direct-tcpip" in jump_log and f"127.0.0.1 port {fleet_.hosts[1].port}" in jump_log


def test_proxy_jump_from_ssh_config(ssh_fleet, tmp_path):
    fleet_ = ssh_fleet(2, log_level="DEBUG")
    jump, far = fleet_.hosts
    config = tmp_path / "ssh_config"
    # "localhost", not 127.0.0.1: fabric skips a jump host named like the target (a self-proxy guard).
    config.write_text(f"Host far-away\n  HostName 127.0.0.1\n  Port {far.port}\n"
                      f"  ProxyJump root@localhost:{jump.port}\n")
    fleet.demo.sshd.write_known_hosts(fleet_.known_hosts, [jump.server, far.server,
                                                      ("localhost", jump.port, jump.server.host_public_key_line())])
    host = dataclasses.replace(load_inventory(fleet_.inventory).hosts["host2"], address="far-away", port=None,
                               ssh_config=str(config))
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(host, {"via": "ssh_config jump"}, bundle=bundle, digest=digest)
    assert json.loads(run.stdout)["plan"] == {"via": "ssh_config jump"}
    assert f"127.0.0.1 port {far.port}" in jump.log.read_text()


def test_command_timeout_stops_waiting_and_says_so(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(SLOW_AGENT)
    run = exec_agent(dataclasses.replace(host, command_timeout=1.0), {}, bundle=bundle, digest=digest)
    assert run.error.startswith("timed out after 1s; fleet closed the session")
    assert run.exit_code is None


def test_cancel_token_interrupts_a_running_agent(one_host):
    fleet_, host = one_host
    bundle, digest = make_bundle(SLOW_AGENT)
    cancel = CancelToken()
    run = exec_agent(host, {}, bundle=bundle, digest=digest, cancel=cancel,
                    on_running=lambda: threading.Timer(0.2, cancel.set).start())
    assert run.interrupted and run.error == "interrupted"


def test_connection_failures_name_the_host_and_the_reason(one_host, tmp_path):
    fleet_, host = one_host
    bundle, digest = make_bundle(ECHO_AGENT)
    stranger = fleet.demo.sshd.make_keypair(tmp_path / "stranger")
    with pytest.raises(ConnectionFailed) as auth:
        exec_agent(dataclasses.replace(host, identity_files=(str(stranger),)), {}, bundle=bundle, digest=digest)
    assert "host1" in str(auth.value) and "authentication failed" in str(auth.value)
    assert not getattr(auth.value, "retryable", False)

    fleet_.stop("host1")
    with pytest.raises(ConnectionFailed) as refused:
        exec_agent(host, {}, bundle=bundle, digest=digest)
    assert f"host1 (root@127.0.0.1:{host.port}): connection refused" in str(refused.value)


# --- local connection and pythons (no sshd needed) -------------------------------------------

def local_host(tmp_path, **changes):
    inv = tmp_path / "inventory.toml"
    inv.write_text('[hosts.control]\nconnection = "local"\n')
    return dataclasses.replace(load_inventory(inv).hosts["control"], **changes)


def test_local_connection_uses_the_same_bootstrap_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bundle, digest = make_bundle(ECHO_AGENT)
    host = local_host(tmp_path)
    first = exec_agent(host, {"k": "v"}, bundle=bundle, digest=digest)
    second = exec_agent(host, {"k": "w"}, bundle=bundle, digest=digest)
    assert (first.cached, second.cached) == (False, True)
    assert json.loads(second.stdout)["plan"] == {"k": "w"}
    assert (tmp_path / "cache" / "fleet" / f"agent-{digest[:16]}.pyz").read_bytes() == bundle


@pytest.mark.parametrize("old", pythons.too_old() or [None], ids=str)
def test_too_old_python_is_a_per_host_error_naming_the_version(tmp_path, monkeypatch, old):
    """On every interpreter older than 3.8 this machine really has (Debian's jython, a 2.7, from
    scripts/setup.sh test; pyenv's 2.7/3.6/3.7 where there are some)."""
    assert old is not None, pythons.MISSING_OLD
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(local_host(tmp_path, python=old.path), {}, bundle=bundle, digest=digest)
    assert run.error.startswith(f"control: {old.path} is Python {old.says}; the fleet agent needs Python >= 3.8")
    assert run.exit_code == 97
    assert not (tmp_path / "cache").exists()


def test_a_fake_interpreter_that_only_prints_its_version_is_explained(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'Python 3.6.15'\n")
    fake.chmod(0o755)
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(local_host(tmp_path, python=str(fake)), {}, bundle=bundle, digest=digest)
    assert "control" in run.error and "Python 3.6.15" in run.error and ">= 3.8" in run.error


def test_missing_python_is_a_per_host_error(tmp_path):
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(local_host(tmp_path, python="/nonexistent/python3"), {}, bundle=bundle, digest=digest)
    assert run.error.startswith("control: no python found as '/nonexistent/python3'")
    assert run.exit_code == 127


def test_ssh_config_fills_in_hostname_port_user_and_identity(one_host, tmp_path):
    fleet_, host = one_host
    config = tmp_path / "ssh_config"
    config.write_text(f"Host office-box\n  HostName 127.0.0.1\n  Port {host.port}\n  User root\n"
                      f"  IdentityFile {fleet_.identity_file}\n")
    aliased = dataclasses.replace(host, address="office-box", port=None, user=None, identity_files=(),
                                  ssh_config=str(config))
    bundle, digest = make_bundle(ECHO_AGENT)
    run = exec_agent(aliased, {"via": "ssh_config"}, bundle=bundle, digest=digest)
    assert json.loads(run.stdout)["plan"] == {"via": "ssh_config"}
    assert json.loads(run.stdout)["user"] == "root"


def test_keys_from_ssh_agent_are_used(one_host, tmp_path, monkeypatch):
    import subprocess

    fleet_, host = one_host
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            threading.Event().wait(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(fleet_.identity_file)], check=True, capture_output=True)
        bundle, digest = make_bundle(ECHO_AGENT)
        run = exec_agent(dataclasses.replace(host, identity_files=()), {"via": "agent"}, bundle=bundle, digest=digest)
        assert json.loads(run.stdout)["plan"] == {"via": "agent"}
    finally:
        agent.terminate()
        agent.wait()


def test_a_host_that_never_sends_its_banner_fails_within_the_connect_timeout(tmp_path):
    import socket

    # Listening but never accepting: the kernel completes the client's handshake on its own, so
    # the client waits for a banner that never comes, and no accepted socket exists to leak.
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        inv = tmp_path / "inventory.toml"
        inv.write_text(f'[hosts.mute]\naddress = "127.0.0.1"\nport = {silent.getsockname()[1]}\n'
                       f'connect_timeout = 0.5\nknown_hosts = "{tmp_path / "known_hosts"}"\n')
        bundle, digest = make_bundle(ECHO_AGENT)
        with pytest.raises(ConnectionFailed) as failed:
            exec_agent(load_inventory(inv).hosts["mute"], {}, bundle=bundle, digest=digest)
        assert "mute" in str(failed.value) and "banner" in str(failed.value)
        assert failed.value.retryable
    finally:
        silent.close()
