"""The test fleet is real: strict host keys, key-only logins, an unprivileged user, clean teardown."""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import paramiko
import pytest

from fleet.demo.sshd import SshdServer, free_port, make_keypair, pid_alive, write_known_hosts
from sshfleet import SshFleet, generated


def _connect(host, fleet, known_hosts=None, user=None):
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or fleet.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host.address, port=host.port, username=user or fleet.user,
                   key_filename=str(fleet.identity_file), look_for_keys=False, allow_agent=False, timeout=10)
    return client


def _run(client, command):
    _, stdout, _ = client.exec_command(command, timeout=10)
    out = stdout.read().decode()
    assert stdout.channel.recv_exit_status() == 0
    return out


def test_strict_host_key_connection_runs_a_command(ssh_fleet):
    fleet = ssh_fleet(2)
    for host in fleet.hosts:
        client = _connect(host, fleet)
        try:
            assert _run(client, "echo ok") == "ok\n"
            assert _run(client, "id -u") == "0\n"
        finally:
            client.close()


def test_wrong_host_key_in_known_hosts_is_refused(ssh_fleet, tmp_path):
    fleet = ssh_fleet(2)
    first, second = fleet.hosts
    # Claim that host 1 has host 2's key: a strict client must refuse host 1.
    wrong = write_known_hosts(tmp_path / "known_hosts", [(first.address, first.port, second.server.host_public_key_line())])
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(first, fleet, known_hosts=wrong)
    # A host missing from known_hosts is refused too (never accept-any).
    absent = write_known_hosts(tmp_path / "only_second", [second.server])
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _connect(first, fleet, known_hosts=absent)


def test_unprivileged_user_logs_in_and_owns_its_state_dir(ssh_fleet):
    fleet = ssh_fleet(1, user="fleet-test", populate=lambda state_dir, i: (state_dir / "agents").mkdir())
    host = fleet.hosts[0]
    client = _connect(host, fleet)
    try:
        assert _run(client, "id -u").strip() != "0"
        assert _run(client, "id -un").strip() == "fleet-test"
        # Real permissions: the user can write its own state dir, not root's files.
        assert _run(client, f"touch {host.state_dir}/agents/probe && echo written") == "written\n"
        _, stdout, _ = client.exec_command("touch /root/fleet-should-not-write", timeout=10)
        assert stdout.channel.recv_exit_status() != 0
    finally:
        client.close()
    assert (host.state_dir / "agents" / "probe").stat().st_uid == fleet.identity_file.stat().st_uid != 0


def test_inventory_uses_contract_keys_only(ssh_fleet):
    fleet = ssh_fleet(2, populate=lambda state_dir, i: (state_dir / f"marker{i}").write_text("x"))
    data = tomllib.loads(fleet.inventory.read_text())
    assert set(data) == {"defaults", "hosts"}
    assert data["defaults"] == {"user": "root", "identity_file": str(fleet.identity_file),
                                "known_hosts": str(fleet.known_hosts)}
    for i, host in enumerate(fleet.hosts):
        entry = data["hosts"][host.name]
        assert entry == {"address": "127.0.0.1", "port": host.port, "state_dir": str(host.state_dir)}
        assert (host.state_dir / f"marker{i}").exists()
    assert len({h.port for h in fleet.hosts}) == 2
    assert len({h.server.host_public_key_line() for h in fleet.hosts}) == 2


def test_stop_one_host_leaves_the_others_up(ssh_fleet):
    fleet = ssh_fleet(2)
    down, up = fleet.hosts
    fleet.stop(down.name)
    assert not pid_alive(down.server.pid)
    with pytest.raises((OSError, paramiko.SSHException)):
        _connect(down, fleet)
    client = _connect(up, fleet)
    client.close()


def test_debug_log_shows_exec_channels(ssh_fleet):
    fleet = ssh_fleet(1, log_level="DEBUG")
    host = fleet.hosts[0]
    client = _connect(host, fleet)
    try:
        for _ in range(3):
            _run(client, "true")
    finally:
        client.close()
    log = host.log.read_text()
    assert log.count("req exec") >= 3


def _start_time(pid):
    """When `pid` started (None when there is no such process): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19]
    except OSError:
        return None


def test_teardown_stops_every_sshd_even_after_a_failure():
    fleet = SshFleet.start(2)
    pids = fleet.pids
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    try:
        client = _connect(fleet.hosts[0], fleet)
        # A live command under a connection survives a listener-only kill, and its connection's
        # kill too (no tty, so nothing hangs it up): the teardown must reach it.
        _, stdout, _ = client.exec_command("echo $$; exec sleep 30", timeout=10)
        sleeper = int(stdout.readline())
        sleeper_start = _start_time(sleeper)
        deadline = time.monotonic() + 10      # the shell said its pid just before its exec
        while Path(f"/proc/{sleeper}/cmdline").read_bytes() != b"sleep\x0030\x00":
            assert time.monotonic() < deadline, "the command never became `sleep 30`"
            time.sleep(0.01)
        raise RuntimeError("a failing test")
    except RuntimeError:
        pass
    finally:
        fleet.close()
    assert not any(pid_alive(p) for p in pids)
    assert not (pid_alive(sleeper) and _start_time(sleeper) == sleeper_start), \
        f"the `sleep 30` (pid {sleeper}) a connection ran outlived the teardown"
    assert not fleet.base.exists()
    client.close()


def test_teardown_asks_a_running_command_to_stop_first(tmp_path):
    """A command under a connection gets SIGTERM (time to clean up), not only the last-resort
    SIGKILL: its TERM trap leaves a mark, and teardown returns only once it and its child are gone."""
    fleet = SshFleet.start(1)
    marker = tmp_path / "terminated"
    try:
        client = _connect(fleet.hosts[0], fleet)
        _, stdout, _ = client.exec_command(
            f"trap 'echo term > {marker}; exit 0' TERM; sleep 30 & echo $$ $!; wait", timeout=10)
        shell, sleeper = (int(x) for x in stdout.readline().split())
        started = {p: _start_time(p) for p in (shell, sleeper)}
    finally:
        fleet.close()
    assert marker.read_text() == "term\n"
    assert not [p for p, t in started.items() if pid_alive(p) and _start_time(p) == t]
    client.close()


def test_sshd_server_reports_why_it_cannot_start(tmp_path):
    port = free_port()
    key = make_keypair(tmp_path / "k")
    with SshdServer(tmp_path / "a", port=port, authorized_keys=[key.with_suffix(".pub").read_text()]) as first:
        assert pid_alive(first.pid)
        from fleet.demo.sshd import SshdUnavailable
        with pytest.raises(SshdUnavailable, match="did not start"):
            SshdServer(tmp_path / "b", port=port).start(timeout=3)
    assert not pid_alive(first.pid)


def test_generated_state_is_owned_by_the_login_user(ssh_fleet):
    fleet = ssh_fleet(1, user="fleet-test", populate=generated())
    host = fleet.hosts[0]
    store = host.state_dir / "agents" / "main" / "sessions" / "sessions.json"
    assert store.stat().st_mode & 0o777 == 0o600
    client = _connect(host, fleet)
    try:
        assert _run(client, f"head -c 1 {store}") == "{"
    finally:
        client.close()
