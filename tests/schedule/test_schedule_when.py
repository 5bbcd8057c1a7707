"""`fleet schedule install --when`: each schedule says when it sends a notice, whatever
fleet.toml's notify.when says (real crontab of `fleet-test`, schedules run as the timer runs them)."""
from __future__ import annotations

import json

from helpers import CRON_USER, TOKEN, RecordingServer, make_local_fleet


def test_a_quarter_hourly_health_scan_tells_only_what_is_new(tmp_path, test_users_crontab, fleet_cli):
    telegram = RecordingServer()
    state = tmp_path / "state"
    try:
        inventory = make_local_fleet(tmp_path)
        (tmp_path / "fleet.toml").write_text(
            f'[notify]\nwhen = "failure"\n[notify.telegram]\nchat_id = 42\nbase_url = "{telegram.url}"\n'
            '[thresholds]\ntranscript_size = "1MB"\n[thresholds.tokens]\nmain = [900000, 999999]\n')
        state.mkdir(mode=0o700)
        env_file = state / "schedule.env"
        env_file.write_text(f"FLEET_TELEGRAM_TOKEN={TOKEN}\n")
        env_file.chmod(0o600)

        bad = fleet_cli(["schedule", "install", "health", "--playbook", "scan", "--at", "*/15 * * * *",
                         "-i", str(inventory), "--backend", "cron", "--when", "sometimes"], state,
                        FLEET_CRONTAB_USER=CRON_USER)
        assert bad.returncode == 2 and "--when must be one of always, failure, findings, never" in bad.stderr
        for name, at, extra in (("health", "*/15 * * * *", ["--when", "findings"]), ("nightly", "0 3 * * *", [])):
            proc = fleet_cli(["schedule", "install", name, "--playbook", "scan", "--at", at, "-i", str(inventory),
                              "--backend", "cron", *extra], state, FLEET_CRONTAB_USER=CRON_USER)
            assert proc.returncode == 0, proc.stderr
        listed = {s["name"]: s for s in json.loads(fleet_cli(["schedule", "list", "--json"], state).stdout)["schedules"]}
        assert (listed["health"]["notify_when"], listed["nightly"]["notify_when"]) == ("findings", None)

        for _ in range(2):
            assert fleet_cli(["schedule", "run", "health"], state).returncode == 0
        (sent,) = telegram.received                     # one warning, told once
        assert "1 new since the last notice" in sent["json"]["text"]
        assert fleet_cli(["schedule", "run", "nightly"], state).returncode == 0
        assert len(telegram.received) == 1              # fleet.toml's "failure": an ok scan sends nothing
    finally:
        telegram.close()
        for name in ("health", "nightly"):
            fleet_cli(["schedule", "remove", name], state, FLEET_CRONTAB_USER=CRON_USER)
