"""`fleet.toml`: the control host's settings for notifications, next to the inventory.

The file lives in the inventory's folder (`<inventory dir>/fleet.toml`); it is optional. It is
validated whole before use: every problem is reported at once, each naming file, table and key
(`fleet.toml: notify.telegram.chat_id: expected a string or integer, got [1, 2]`), unknown keys
get a "did you mean" suggestion, and `load_fleet_config` raises `ConfigError` with all of them.

Secrets never live in this file: the Telegram token is read from the environment variable that
`token_env` names, a secret webhook URL from the one `url_env` names. A literal token, password
or secret webhook URL in the file is rejected with a message saying where it belongs.

Installed schedules are not configured here: `fleet schedule install` records them in fleet's
state folder (see docs/schedule-and-notify.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fleet.errors import ConfigError
from fleet.config.validate import MISSING, Problems, Table, describe_value, read_toml, suggestion
from fleet.hostside.protocol import HEALTH_DEFAULTS

CONFIG_NAME = "fleet.toml"
DEFAULT_TELEGRAM_URL = "https://api.telegram.org"
DEFAULT_TOKEN_ENV = "FLEET_TELEGRAM_TOKEN"
DEFAULT_TIMEOUT_S = 10.0
NOTIFY_WHEN = ("always", "failure", "findings", "never")
NOTIFY_WHEN_NOTE = ("always: after every run; failure: only when something failed; findings: only when a "
                    "warning or critical finding is new since the last notice (or something failed)")

_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Telegram bot tokens look like 123456789:AAH…; a value of that shape is a token, not a name.
_TELEGRAM_TOKEN = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{20,}$")
_SECRET_KEYS = ("token", "bot_token", "secret", "password", "api_key", "apikey", "key")
# Webhook URLs of these services carry their secret in the path.
_SECRET_URL = re.compile(r"hooks\.slack\.com/|discord(app)?\.com/api/webhooks/|webhook\.office\.com/"
                         r"|chat\.googleapis\.com/.*key=", re.IGNORECASE)


@dataclass(frozen=True)
class TelegramConfig:
    token_env: str
    chat_id: str
    base_url: str = DEFAULT_TELEGRAM_URL
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class WebhookConfig:
    url: str | None = None
    url_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class NotifyConfig:
    when: str = "always"
    top: int = 5
    telegram: TelegramConfig | None = None
    webhook: WebhookConfig | None = None
    timezone: str | None = None      # IANA name for the notice's local time; None: the control host's

    @property
    def configured(self) -> bool:
        return self.telegram is not None or self.webhook is not None


def _default_tokens() -> dict[str, tuple[int, int]]:
    return {kind: (pair[0], pair[1]) for kind, pair in HEALTH_DEFAULTS["tokens"].items()}


@dataclass(frozen=True)
class Thresholds:
    """Every threshold a finding or a trend judges by (fleet.toml [thresholds]; these defaults).

    transcript_size: a transcript (or legacy session file) bigger than this is a warning — by
    default the shipped weekly playbook's first tier, so what warns is what weekly trims;
    tokens: session kind -> (warning, critical) token counts; trend_warning / trend_critical:
    an agent's total size the trend forecast counts the days to.
    """

    transcript_size: int = HEALTH_DEFAULTS["transcript_warn_bytes"]
    tokens: dict = field(default_factory=_default_tokens)
    trend_warning: int = 10 * 1024 * 1024
    trend_critical: int = 50 * 1024 * 1024

    def plan_health(self) -> dict:
        """The agent plan's "health" section (docs/agent-protocol.md)."""
        return {"transcript_warn_bytes": self.transcript_size,
                "tokens": {kind: [w, c] for kind, (w, c) in self.tokens.items()}}


def describe_thresholds(config: "FleetConfig", tiers: list | None = None) -> list[str]:
    """The lines `fleet playbook check` prints about the thresholds in force, and a warning when
    the playbook's first transcript tier starts above the size health warns from (transcripts in
    between would be flagged on every run and never trimmed)."""
    from fleet.units import human_bytes

    th = config.thresholds
    source = f"from {config.path}" if config.exists else f"defaults: no {config.path}"
    tokens = ", ".join(f"{kind} {w}/{c}" for kind, (w, c) in th.tokens.items())
    lines = [f"thresholds ({source}):",
             f"  transcript_size: a transcript or legacy session file over {human_bytes(th.transcript_size)} warns",
             f"  tokens (warning/critical): {tokens}",
             f"  trend per agent: warning {human_bytes(th.trend_warning)}, critical {human_bytes(th.trend_critical)}"]
    if tiers:
        first = min(tier["over_bytes"] for tier in tiers)
        if first > th.transcript_size:
            lines.append(f"warning: transcripts between {human_bytes(th.transcript_size)} and {human_bytes(first)} "
                         f"are flagged by health but no tier trims them: lower the first tier or raise "
                         f"[thresholds] transcript_size to {human_bytes(first)}")
    return lines


def _thresholds(t: Table) -> Thresholds:
    t.check_keys(("transcript_size", "tokens", "trend_warning", "trend_critical"),
                 {"transcript": 'use "transcript_size"', "trend": 'use "trend_warning" and "trend_critical"',
                  "size": 'use "transcript_size"'})
    base = Thresholds()
    tokens = dict(base.tokens)
    table = t.table("tokens")
    for kind in table.keys():
        where = table.key_path(kind)
        value = table.data[kind]
        if kind not in tokens:
            table.add(kind, f"unknown session kind{suggestion(kind, tokens)} (kinds with token "
                            f"thresholds: {', '.join(tokens)})")
        elif (not isinstance(value, list) or len(value) != 2
              or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)):
            table.add(kind, f"expected [warning, critical], two token counts, e.g. {kind} = "
                            f"[{tokens[kind][0]}, {tokens[kind][1]}], got {_shown(value)}")
        elif value[0] > value[1]:
            t.problems.add(where, f"the warning {value[0]} is above the critical {value[1]}")
        else:
            tokens[kind] = (value[0], value[1])
    transcript = t.size("transcript_size", base.transcript_size, minimum=1)
    warning = t.size("trend_warning", base.trend_warning, minimum=1)
    critical = t.size("trend_critical", base.trend_critical, minimum=1)
    if warning is not None and critical is not None and warning > critical:
        t.add("trend_warning", f"is above trend_critical ({describe_value(t.data.get('trend_critical', critical))})")
    return Thresholds(transcript_size=transcript, tokens=tokens, trend_warning=warning, trend_critical=critical)


def _timezone(t: Table) -> str | None:
    name = t.string("timezone", None)
    if name is None:
        return None
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd names
        t.add("timezone", f'unknown time zone {describe_value(name)}: give an IANA name such as '
                          f'"Asia/Tokyo" or "Europe/Paris", or leave it out for the control host\'s own')
        return None
    return name


@dataclass(frozen=True)
class FleetConfig:
    path: Path
    exists: bool
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)


def config_path(inventory_path: Path) -> Path:
    """Where fleet.toml belongs for this inventory: the same folder."""
    return Path(inventory_path).parent / CONFIG_NAME


def _secret_hints(env_key: str, example: str) -> dict[str, str]:
    message = (f"secrets do not belong in {CONFIG_NAME}: put it in an environment variable and give its "
               f'name instead, {env_key} = "{example}"')
    return {k: message for k in _SECRET_KEYS}


def _timeout(t: Table) -> float:
    value = t.data.get("timeout", MISSING)
    if value is MISSING:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = t.number("timeout", DEFAULT_TIMEOUT_S, minimum=0, maximum=300, exclusive_minimum=True)
    else:
        seconds = t.duration("timeout", DEFAULT_TIMEOUT_S, minimum=1)
        if seconds > 300:
            t.add("timeout", f"must be at most 300 seconds, got {describe_value(value)}")
    return float(seconds)


def _env_name(t: Table, key: str, default: str | None, example: str) -> str | None:
    value = t.data.get(key, MISSING)
    if value is MISSING:
        return default
    if isinstance(value, str) and (_TELEGRAM_TOKEN.match(value) or "://" in value
                                   or (not _ENV_NAME.match(value) and len(value) > 20)):
        t.add(key, "this looks like the secret itself: put the secret in an environment variable and give "
                   f'its NAME here, e.g. {key} = "{example}"')
        return None
    return t.string(key, None, pattern=_ENV_NAME,
                    pattern_hint="expected the NAME of an environment variable (letters, digits, _)")


def _url(t: Table, key: str, default: str | None) -> str | None:
    url = t.string(key, default, pattern=_HTTP_URL, pattern_hint="expected an http:// or https:// URL")
    if url and "@" in url.split("/")[2]:
        t.add(key, "a URL with a user or password carries a secret: put it in an environment variable "
                   'and give its name instead, url_env = "FLEET_WEBHOOK_URL"')
        return None
    return url


def _telegram(t: Table) -> TelegramConfig | None:
    t.check_keys(("token_env", "chat_id", "base_url", "timeout"), _secret_hints("token_env", DEFAULT_TOKEN_ENV))
    token_env = _env_name(t, "token_env", DEFAULT_TOKEN_ENV, DEFAULT_TOKEN_ENV)
    chat_id = t.data.get("chat_id", MISSING)
    if chat_id is MISSING:
        t.add("chat_id", "missing required key: the chat to send to, e.g. chat_id = -1001234567890")
        chat_id = None
    elif isinstance(chat_id, bool) or not isinstance(chat_id, (str, int)):
        t.add("chat_id", f"expected a string or integer, got {_shown(chat_id)}")
        chat_id = None
    elif isinstance(chat_id, str) and (not chat_id.strip() or any(c.isspace() for c in chat_id)):
        t.add("chat_id", f"expected a chat id like -1001234567890 or \"@channel\", got {describe_value(chat_id)}")
        chat_id = None
    base_url = _url(t, "base_url", DEFAULT_TELEGRAM_URL)
    if base_url and "/bot" in base_url:
        t.add("base_url", 'give only the server (e.g. "https://api.telegram.org"): fleet adds '
                          "/bot<token>/sendMessage itself, with the token from token_env")
        base_url = None
    timeout = _timeout(t)
    if token_env is None or chat_id is None or base_url is None:
        return None
    return TelegramConfig(token_env=token_env, chat_id=str(chat_id), base_url=base_url.rstrip("/"),
                          timeout_s=timeout)


def _webhook(t: Table) -> WebhookConfig | None:
    t.check_keys(("url", "url_env", "timeout"), _secret_hints("url_env", "FLEET_WEBHOOK_URL"))
    has_url, has_env = "url" in t, "url_env" in t
    url = _url(t, "url", None)
    if url and _SECRET_URL.search(url):
        t.add("url", "this webhook URL carries its secret: put it in an environment variable and give its "
                     'name instead, url_env = "FLEET_WEBHOOK_URL"')
        url = None
    url_env = _env_name(t, "url_env", None, "FLEET_WEBHOOK_URL")
    timeout = _timeout(t)
    if has_url and has_env:
        t.problems.add(t.path, "give url or url_env, not both")
        return None
    if not has_url and not has_env:
        t.problems.add(t.path, 'needs url = "https://…" or url_env = "FLEET_WEBHOOK_URL"')
        return None
    if url is None and url_env is None:
        return None
    return WebhookConfig(url=url, url_env=url_env, timeout_s=timeout)


def _shown(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(describe_value(v) for v in value) + "]"
    return describe_value(value)


_SCHEDULES_HINT = ("schedules are not configured here: install one with `fleet schedule install NAME "
                   "--playbook P --at CRON` (kept in fleet's state folder; see `fleet schedule list`)")


def parse_fleet_config(raw: dict, path: Path) -> FleetConfig:
    """Validate the parsed TOML of a fleet.toml; raise ConfigError listing every problem."""
    problems = Problems(path)
    root = Table(raw, "", problems)
    root.check_keys(("notify", "thresholds"), {"schedules": _SCHEDULES_HINT, "schedule": _SCHEDULES_HINT,
                                               "telegram": "use [notify.telegram]", "webhook": "use [notify.webhook]",
                                               "health": "use [thresholds]", "trend": "use [thresholds]"})
    notify = NotifyConfig()
    if "notify" in root:
        t = root.table("notify")
        t.check_keys(("when", "top", "telegram", "webhook", "timezone"),
                     {**_secret_hints("notify.telegram.token_env", DEFAULT_TOKEN_ENV), "tz": 'use "timezone"'})
        when = t.string("when", "always", choices=NOTIFY_WHEN, choices_note=NOTIFY_WHEN_NOTE)
        top = t.integer("top", 5, minimum=0, maximum=50)
        telegram = _telegram(t.table("telegram")) if "telegram" in t else None
        webhook = _webhook(t.table("webhook")) if "webhook" in t else None
        notify = NotifyConfig(when=when, top=top, telegram=telegram, webhook=webhook, timezone=_timezone(t))
    thresholds = _thresholds(root.table("thresholds")) if "thresholds" in root else Thresholds()
    problems.raise_if_any(ConfigError)
    return FleetConfig(path=path, exists=True, notify=notify, thresholds=thresholds)


def load_fleet_config(inventory_path: Path) -> FleetConfig:
    """Read and validate `<inventory dir>/fleet.toml`; an absent file gives the defaults.

    Raises ConfigError (exit 2) naming file, table and key for every problem found.
    """
    path = config_path(inventory_path)
    if not path.exists():
        return FleetConfig(path=path, exists=False)
    problems = Problems(path)
    raw = read_toml(path, problems)
    problems.raise_if_any(ConfigError)
    return parse_fleet_config(raw or {}, path)
