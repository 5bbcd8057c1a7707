"""After a run: a short summary to Telegram and/or a Slack-compatible webhook.

`build_notice_text(result)` is pure: run id, playbook (a dry run is marked), hosts ok/failed,
the agents that shrank most (`pc-a/main 9.2MB → 0.18MB (−98 %)`), the total freed, failed hosts
with their reasons, and where the backups are — short, like the field report's notice.

`send_run_notice(result, inventory_path)` reads `fleet.toml` next to the inventory and sends
that text with the standard library (`urllib`, no extra dependency):

- Telegram Bot API: `POST {base_url}/bot{token}/sendMessage` with JSON `chat_id`, `text`,
  `disable_web_page_preview`; the token comes from the environment variable `token_env` names.
- Webhook: `POST url` with JSON `{"text": …}` (Slack's incoming-webhook shape).

It never raises: an invalid config, a missing environment variable, a refused connection, a
timeout or an HTTP error each come back as one line in the returned list of problems, which the
caller prints and records. The token never appears in those lines or in the log. Every attempt
is also appended to `<state>/logs/notify.jsonl` (0600), so a failed notice leaves a trace even
when nobody reads the run's output.
"""
from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from fleet.errors import ConfigError
from fleet.config.fleetconf import NotifyConfig, TelegramConfig, WebhookConfig, load_fleet_config
from fleet.report.results import RunResult
from fleet.units import human_mb, percent_change

TELEGRAM_TEXT_LIMIT = 4096
MAX_FAILED_LISTED = 5
MAX_BACKUPS_LISTED = 3
MAX_REASON_CHARS = 160


# --- the text -------------------------------------------------------------------------------

def _short(text: str | None, limit: int = MAX_REASON_CHARS) -> str:
    line = " ".join((text or "unknown error").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _agent_sizes(result: RunResult) -> list[tuple[str, int, int]]:
    """(host/agent, before, after) for every agent of every host that answered."""
    sizes: dict[str, list[int]] = {}
    for host in result.hosts:
        for f in host.files:
            entry = sizes.setdefault(f"{host.host}/{f.agent}" if f.agent else host.host, [0, 0])
            entry[0] += f.before.bytes
            entry[1] += f.after.bytes
    return [(name, before, after) for name, (before, after) in sizes.items()]


def _headline(result: RunResult) -> str:
    if result.kind == "skipped":
        name = result.extra.get("schedule") or result.playbook or "?"
        return f"fleet schedule {name}: skipped ({_short(result.extra.get('reason'))})"
    status = "ok" if result.ok else "FAILED"
    if result.kind == "scan":
        return f"fleet scan {result.run_id} — {status}"
    dry = " (DRY RUN, nothing changed)" if result.dry_run else ""
    return f"fleet {result.kind} {result.run_id}: {result.playbook or '?'}{dry} — {status}"


def build_notice_text(result: RunResult, top: int = 5) -> str:
    """The notice for `result` as plain text (pure; at most Telegram's 4096 characters)."""
    lines = [_headline(result)]
    if result.kind == "skipped":
        return lines[0]
    totals = result.totals()
    failed = [h for h in result.hosts if not h.ok]
    lines.append(f"hosts: {totals['hosts_ok']} ok, {totals['hosts_failed']} failed")

    sizes = _agent_sizes(result)
    if result.kind == "scan":
        for name, before, _after in sorted(sizes, key=lambda s: (-s[1], s[0]))[:top]:
            lines.append(f"{name} {human_mb(before)}")
        lines.append(f"total {human_mb(totals['before_bytes'])}")
        findings = [(h.host, f) for h in result.hosts for f in h.health if f.severity in ("critical", "warning")]
        if findings:
            critical = sum(1 for _h, f in findings if f.severity == "critical")
            lines.append(f"health: {critical} critical, {len(findings) - critical} warning")
            for host, f in sorted(findings, key=lambda x: x[1].severity != "critical")[:3]:
                lines.append(f"  {host}/{f.agent} {f.severity}: {_short(f.detail, 100)}")
    else:
        shrunk = [s for s in sizes if s[1] != s[2]]
        for name, before, after in sorted(shrunk, key=lambda s: (s[2] - s[1], s[0]))[:top]:
            lines.append(f"{name} {human_mb(before)} → {human_mb(after)} ({percent_change(before, after)})")
        verb = "would free" if result.dry_run else "freed"
        lines.append(f"{verb} {human_mb(totals['freed_bytes'])} "
                     f"({human_mb(totals['before_bytes'])} → {human_mb(totals['after_bytes'])})")
        if totals.get("file_errors"):
            lines.append(f"files not handled: {totals['file_errors']}")

    if failed:
        lines.append("failed:")
        for h in failed[:MAX_FAILED_LISTED]:
            lines.append(f"  {h.host}: {_short(h.error)}")
        if len(failed) > MAX_FAILED_LISTED:
            lines.append(f"  … and {len(failed) - MAX_FAILED_LISTED} more")

    backups = [f"{h.host}:{h.backup_dir}" for h in result.hosts if h.backup_dir]
    if backups and not result.dry_run:
        more = f" (+{len(backups) - MAX_BACKUPS_LISTED} more)" if len(backups) > MAX_BACKUPS_LISTED else ""
        lines.append("backups: " + ", ".join(backups[:MAX_BACKUPS_LISTED]) + more)

    text = "\n".join(lines)
    if len(text) > TELEGRAM_TEXT_LIMIT:
        text = text[: TELEGRAM_TEXT_LIMIT - 1] + "…"
    return text


# --- sending ----------------------------------------------------------------------------------

def _opener(url: str) -> urllib.request.OpenerDirector:
    """Loopback targets never go through a proxy from the environment."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _post_json(url: str, payload: dict, timeout_s: float) -> tuple[int, bytes]:
    """POST `payload` as JSON; return (status, body). Raises urllib/OSError errors as they come."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8",
                                              "User-Agent": "fleet-notify"})
    with _opener(url).open(request, timeout=timeout_s) as response:
        return response.status, response.read(65536)


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        detail = ""
        try:
            body = json.loads(exc.read(65536) or b"{}")
            detail = body.get("description") or body.get("error") or ""
        except (ValueError, OSError, AttributeError):
            pass
        return f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _where(url: str) -> str:
    """Scheme and server of a URL: enough to act on, nothing secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def send_telegram(config: TelegramConfig, text: str) -> str | None:
    """Send `text` via the Bot API; None on success, else a problem line without the token."""
    token = os.environ.get(config.token_env, "").strip()
    if not token:
        return (f"telegram: environment variable {config.token_env} is not set (it holds the bot token; "
                "scheduled runs read it from the schedule's env file, see docs/schedule-and-notify.md)")
    url = f"{config.base_url}/bot{token}/sendMessage"
    chat_id: int | str = int(config.chat_id) if config.chat_id.lstrip("-").isdigit() else config.chat_id
    payload = {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
    try:
        _status, body = _post_json(url, payload, config.timeout_s)
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("ok") is False:
            problem = f"telegram: {_where(config.base_url)} refused the message: {answer.get('description', '?')}"
        else:
            return None
    except Exception as exc:  # noqa: BLE001 - a notifier must never fail the run
        problem = f"telegram: sending to {_where(config.base_url)} failed: {_describe_failure(exc)}"
    return problem.replace(token, "***")


def send_webhook(config: WebhookConfig, text: str) -> str | None:
    """POST {"text": text} to the webhook; None on success, else a problem line."""
    if config.url_env:
        url = os.environ.get(config.url_env, "").strip()
        label = f"webhook (URL from ${config.url_env})"
        if not url:
            return f"webhook: environment variable {config.url_env} is not set (it holds the webhook URL)"
    else:
        url = config.url or ""
        label = f"webhook {_where(url)}"
    try:
        _post_json(url, {"text": text}, config.timeout_s)
        return None
    except Exception as exc:  # noqa: BLE001 - a notifier must never fail the run
        problem = f"{label}: sending failed: {_describe_failure(exc)}"
        return problem.replace(url, "<url>") if config.url_env else problem


def _log_attempt(result: RunResult, channel: str, problem: str | None) -> str | None:
    from fleet.home import control_dir

    log = control_dir() / "logs" / "notify.jsonl"
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run_id": result.run_id,
             "channel": channel, "ok": problem is None, "problem": problem}
    try:
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    except OSError as exc:
        return f"notify: cannot append to {log}: {exc.strerror or exc}"
    return None


def should_notify(config: NotifyConfig, result: RunResult) -> bool:
    """Whether `notify.when` asks for a notice about this result."""
    if config.when == "never":
        return False
    if config.when == "failure":
        return not result.ok or result.kind == "skipped"
    return True


def check_notify_config(inventory_path: Path) -> NotifyConfig:
    """For `--notify` before anything runs: the validated config, or ConfigError (exit 2) when
    fleet.toml is invalid. A config without notifiers, or a missing environment variable, is not
    an error here: like any delivery problem it is reported after the run, which it never fails."""
    return load_fleet_config(Path(inventory_path)).notify


def send_run_notice(result: RunResult, inventory_path: Path) -> list[str]:
    """Send the notice for `result` to every notifier in fleet.toml; return problems (never raises)."""
    try:
        config = load_fleet_config(Path(inventory_path)).notify
    except ConfigError as exc:
        return [f"notify: {p}" for p in exc.problems]
    except Exception as exc:  # noqa: BLE001 - a notifier must never fail the run
        return [f"notify: cannot read the config: {exc}"]
    if not config.configured:
        from fleet.config.fleetconf import config_path

        return [f"notify: nothing to send to: {config_path(Path(inventory_path))} has no "
                "[notify.telegram] or [notify.webhook] table"]
    if not should_notify(config, result):
        return []
    text = build_notice_text(result, top=config.top)
    problems: list[str] = []
    channels = []
    if config.telegram:
        channels.append(("telegram", lambda: send_telegram(config.telegram, text)))
    if config.webhook:
        channels.append(("webhook", lambda: send_webhook(config.webhook, text)))
    for name, send in channels:
        try:
            problem = send()
        except Exception as exc:  # noqa: BLE001 - belt and braces: never raise into the run
            problem = f"{name}: unexpected failure: {type(exc).__name__}"
        if problem:
            problems.append(problem)
        log_problem = _log_attempt(result, name, problem)
        if log_problem:
            problems.append(log_problem)
    return problems
