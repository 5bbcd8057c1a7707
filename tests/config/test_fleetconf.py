"""fleet.toml: validated whole, every problem with file and key, no secrets in the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.config.fleetconf import DEFAULT_TELEGRAM_URL, config_path, load_fleet_config


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "fleet.toml").write_text(text)
    return tmp_path / "inventory.toml"


def problems_of(inventory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_fleet_config(inventory)
    return info.value.problems


def test_it_lives_next_to_the_inventory(tmp_path):
    assert config_path(tmp_path / "sub" / "inventory.toml") == tmp_path / "sub" / "fleet.toml"
    assert config_path(Path("inventory.toml")) == Path("fleet.toml")


def test_no_file_means_no_notifiers(tmp_path):
    config = load_fleet_config(tmp_path / "inventory.toml")
    assert not config.exists and not config.notify.configured


def test_a_full_config_is_read_with_defaults(tmp_path):
    inv = write(tmp_path, """
[notify]
when = "failure"
[notify.telegram]
chat_id = -1001234567890
[notify.webhook]
url_env = "TEAM_HOOK"
timeout = "30s"
""")
    notify = load_fleet_config(inv).notify
    assert notify.when == "failure" and notify.top == 5
    assert notify.telegram.token_env == "FLEET_TELEGRAM_TOKEN"
    assert notify.telegram.chat_id == "-1001234567890"
    assert notify.telegram.base_url == DEFAULT_TELEGRAM_URL and notify.telegram.timeout_s == 10
    assert notify.webhook.url_env == "TEAM_HOOK" and notify.webhook.url is None and notify.webhook.timeout_s == 30


def test_every_problem_is_reported_at_once_with_file_and_key(tmp_path):
    inv = write(tmp_path, """
[notify]
when = "sometimes"
[notify.telegram]
chat_id = [1, 2]
tokn_env = "X"
base_url = "api.telegram.org"
timeout = -1
[notify.webhook]
""")
    problems = problems_of(inv)
    f = str(tmp_path / "fleet.toml")
    assert f"{f}: notify.telegram.chat_id: expected a string or integer, got [1, 2]" in problems
    assert f'{f}: notify.telegram.tokn_env: unknown key; did you mean "token_env"?' in problems
    assert any(p.startswith(f"{f}: notify.when: expected \"always\", \"failure\", \"findings\" or \"never\"") for p in problems)
    assert any(p.startswith(f"{f}: notify.telegram.base_url: expected an http:// or https:// URL") for p in problems)
    assert any(p.startswith(f"{f}: notify.telegram.timeout: must be") for p in problems)
    assert any(p.startswith(f"{f}: notify.webhook: needs url") for p in problems)
    assert len(problems) == 6


@pytest.mark.parametrize("table, line, key, fix", [
    ("notify.telegram", 'token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"\nchat_id = 1', "token", "token_env"),
    ("notify.telegram", 'token_env = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"\nchat_id = 1', "token_env",
     "token_env"),
    ("notify.webhook", 'url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"', "url", "url_env"),
    ("notify.webhook", 'secret = "hunter2"\nurl = "http://127.0.0.1:9/x"', "secret", "url_env"),
    ("notify.webhook", 'url = "https://fleet:hunter2@chat.example.org/hook"', "url", "url_env"),
])
def test_a_secret_in_the_file_is_refused_with_where_it_belongs(tmp_path, table, line, key, fix):
    problems = problems_of(write(tmp_path, f"[{table}]\n{line}\n"))
    assert len(problems) == 1
    assert f"{table}.{key}:" in problems[0] and "environment variable" in problems[0] and fix in problems[0]
    assert "AAHdqTcv" not in problems[0] and "hunter2" not in problems[0] and "XXXXXXXX" not in problems[0]


def test_schedules_in_the_file_point_to_the_command(tmp_path):
    problems = problems_of(write(tmp_path, "[schedules.weekly]\nat = \"0 3 * * 0\"\n"))
    assert problems[0].endswith("schedules: unknown key; schedules are not configured here: install one with "
                                "`fleet schedule install NAME --playbook P --at CRON` (kept in fleet's state "
                                "folder; see `fleet schedule list`)")


def test_invalid_toml_names_line_and_column(tmp_path):
    problems = problems_of(write(tmp_path, "[notify.telegram]\nchat_id = \n"))
    assert problems[0].startswith(f"{tmp_path / 'fleet.toml'}: line 2, column")
