"""Session keys of every kind and the `sessions.json` entries that go with them.

`plan_sessions` decides which sessions an agent has (key, kind, session id, age); `make_entry`
builds the store entry with realistic routing fields, token counters and the bulky
`skillsSnapshot` / `systemPromptReport` that make real stores large.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from fleet.demo.gen.common import DAY_MS, HOUR_MS, MINUTE_MS, new_uuid
from fleet.demo.gen.text import pools

KINDS = ("main", "direct", "group", "channel", "topic", "thread", "cron_job", "cron_run", "subagent",
         "acp", "dashboard", "probe", "hook", "heartbeat", "dreaming")
DEFAULT_KEY_MIX: Mapping[str, int] = {
    "main": 1, "direct": 2, "group": 1, "channel": 1, "topic": 1, "thread": 1, "cron_job": 2, "cron_run": 10,
    "subagent": 3, "acp": 1, "dashboard": 1, "probe": 2, "hook": 1, "heartbeat": 1, "dreaming": 1,
}
# Kinds fleet may prune by age (docs/openclaw-format.md, "Session keys").
PRUNABLE_KINDS = frozenset({"cron_run", "subagent", "acp", "dashboard", "probe", "hook", "heartbeat", "dreaming"})
_SKILLS = ("github", "weather", "calendar", "gmail", "notion", "browser", "coding-agent", "summarize", "healthcheck",
           "himalaya", "obsidian", "spotify", "tmux", "openai-image-gen", "session-logs", "skill-creator")
_TOOL_NAMES = ("exec", "read", "write", "edit", "apply_patch", "process", "web_search", "web_fetch", "browser",
               "canvas", "nodes", "cron", "message", "gateway", "sessions_list", "sessions_send", "memory_search")


@dataclass
class SessionPlan:
    """One session of an agent: its store key, kind, id, transcript name and clock."""

    key: str
    kind: str
    session_id: str
    file_name: str
    updated_at: int
    started_at: int
    shares_transcript: bool = False      # a cron job template pointing at its latest run's transcript
    extra: Dict[str, object] = field(default_factory=dict)


def plan_sessions(rng: random.Random, agent_id: str, key_mix: Mapping[str, int], now_ms: int,
                  age_days: float) -> List[SessionPlan]:
    """Every session of one agent, main first. Cron runs: about half older than 24 h."""
    spread = max(int(age_days * DAY_MS), 2 * DAY_MS)
    plans: List[SessionPlan] = []
    peer = rng.randint(10**8, 10**9)
    chat = -1000000000000 - rng.randint(10**8, 10**9)

    def add(kind: str, key: str, age_ms: int, **extra) -> SessionPlan:
        sid = new_uuid(rng)
        updated = now_ms - max(age_ms, MINUTE_MS)
        started = updated - rng.randint(10 * MINUTE_MS, 6 * HOUR_MS)
        plan = SessionPlan(key, kind, sid, f"{sid}.jsonl", updated, started, extra=dict(extra))
        plans.append(plan)
        return plan

    for kind in KINDS:
        for i in range(key_mix.get(kind, 0)):
            recent = rng.randint(MINUTE_MS, spread)
            if kind == "main":
                add(kind, f"agent:{agent_id}:main", rng.randint(2 * MINUTE_MS, 40 * MINUTE_MS))
            elif kind == "direct":
                shape = (f"agent:{agent_id}:telegram:direct:{peer + i}", f"agent:{agent_id}:direct:{peer + i}",
                         f"agent:{agent_id}:whatsapp:default:direct:+8190{peer % 10**8 + i}", f"agent:{agent_id}:dm:{peer + i}")
                add(kind, shape[i % len(shape)], recent)
            elif kind == "group":
                add(kind, f"agent:{agent_id}:telegram:group:{chat - i}", recent, chat=chat - i)
            elif kind == "channel":
                add(kind, f"agent:{agent_id}:discord:channel:{rng.randint(10**17, 10**18)}", recent)
            elif kind == "topic":
                topic = rng.randint(2, 400)
                plan = add(kind, f"agent:{agent_id}:telegram:group:{chat}:topic:{topic}", recent, chat=chat, topic=topic)
                plan.file_name = f"{plan.session_id}-topic-{topic}.jsonl"
            elif kind == "thread":
                add(kind, f"agent:{agent_id}:slack:channel:C0{rng.randint(10**7, 10**8)}:thread:{now_ms // 1000 - i}.{rng.randint(100000, 999999)}", recent)
            elif kind == "cron_job":
                add(kind, f"agent:{agent_id}:cron:{new_uuid(rng)}", recent, job_index=i)
            elif kind == "cron_run":
                # OpenClaw keeps cron runs 24 h; half of these are past that, the rest are fresh.
                old = i % 2 == 0
                age = rng.randint(25 * HOUR_MS, spread + DAY_MS) if old else rng.randint(10 * MINUTE_MS, 20 * HOUR_MS)
                add(kind, "", age)
            elif kind == "subagent":
                add(kind, f"agent:{agent_id}:subagent:{new_uuid(rng)}", recent)
            elif kind in ("acp", "dashboard"):
                add(kind, f"agent:{agent_id}:{kind}:{new_uuid(rng)}", recent)
            elif kind == "probe":
                add(kind, f"agent:{agent_id}:explicit:model-run-{new_uuid(rng)}", rng.randint(25 * HOUR_MS, spread + DAY_MS))
            elif kind == "hook":
                add(kind, f"hook:{new_uuid(rng)}", recent)
            elif kind == "heartbeat":
                add(kind, f"agent:{agent_id}:main:heartbeat", rng.randint(MINUTE_MS, HOUR_MS))
            elif kind == "dreaming":
                retry = "-retry-1" if i % 2 else ""
                add(kind, f"dreaming-narrative-{rng.choice(['light', 'deep', 'rem'])}-{rng.getrandbits(48):012x}{retry}", recent)
    _attach_cron_runs(rng, agent_id, plans)
    return plans


def _attach_cron_runs(rng: random.Random, agent_id: str, plans: List[SessionPlan]) -> None:
    """Give each cron run its job's key; a job template shares its latest run's session id."""
    jobs = [p for p in plans if p.kind == "cron_job"]
    runs = [p for p in plans if p.kind == "cron_run"]
    if not jobs:
        jobs_keys = [f"agent:{agent_id}:cron:{new_uuid(rng)}"]
    else:
        jobs_keys = [p.key for p in jobs]
    for i, run in enumerate(runs):
        run.key = f"{jobs_keys[i % len(jobs_keys)]}:run:{run.session_id}"
    for job in jobs:
        mine = [r for r in runs if r.key.startswith(job.key + ":run:")]
        if mine:
            latest = max(mine, key=lambda r: r.updated_at)
            job.session_id, job.file_name = latest.session_id, latest.file_name
            job.updated_at, job.started_at = latest.updated_at, latest.started_at
            job.shares_transcript = True


def _routing(plan: SessionPlan, agent_id: str) -> dict:
    kind, key = plan.kind, plan.key
    if kind in ("main", "direct", "heartbeat"):
        channel = "whatsapp" if ":whatsapp:" in key else "telegram"
        peer = key.rsplit(":", 1)[-1] if kind == "direct" else "6012345678"
        to = f"{channel}:{peer}"
        return {"chatType": "direct", "channel": channel, "lastChannel": channel, "lastTo": to,
                "origin": {"provider": channel, "chatType": "direct", "from": to, "to": f"{channel}:bot", "accountId": "default"},
                "deliveryContext": {"channel": channel, "to": to, "accountId": "default"}}
    if kind in ("group", "topic"):
        chat = plan.extra.get("chat")
        fields = {"chatType": "group", "channel": "telegram", "groupId": str(chat), "subject": "家族グループ 👨‍👩‍👧",
                  "lastChannel": "telegram", "lastTo": f"telegram:{chat}",
                  "origin": {"provider": "telegram", "chatType": "group", "from": f"telegram:{chat}", "to": "telegram:bot",
                             "accountId": "default"},
                  "deliveryContext": {"channel": "telegram", "to": f"telegram:{chat}", "accountId": "default"}}
        if kind == "topic":
            fields["lastThreadId"] = plan.extra["topic"]
            fields["origin"]["threadId"] = plan.extra["topic"]
            fields["deliveryContext"]["threadId"] = plan.extra["topic"]
        return fields
    if kind == "channel":
        return {"chatType": "channel", "channel": "discord", "displayName": "#ops", "lastChannel": "discord",
                "deliveryContext": {"channel": "discord", "to": key.rsplit(":", 1)[-1], "accountId": "default"}}
    if kind == "thread":
        return {"chatType": "thread", "channel": "slack", "lastChannel": "slack", "lastThreadId": key.rsplit(":", 1)[-1],
                "deliveryContext": {"channel": "slack", "to": key.split(":")[4], "threadId": key.rsplit(":", 1)[-1]}}
    if kind in ("cron_job", "cron_run"):
        return {"label": f"Cron: {['daily report', 'backup check', 'news digest'][len(key) % 3]}",
                "deliveryContext": {"channel": "telegram", "to": "telegram:6012345678", "accountId": "default"}}
    if kind == "subagent":
        return {"spawnedBy": f"agent:{agent_id}:main", "parentSessionKey": f"agent:{agent_id}:main", "spawnDepth": 1,
                "status": "done", "startedAt": plan.started_at, "endedAt": plan.updated_at, "label": "research subtask"}
    return {"label": kind}


def bulk_fields(rng: random.Random, n_bytes: int, plan: SessionPlan, agent_id: str,
                prompt_ref: Optional[Tuple[str, int]] = None) -> dict:
    """`skillsSnapshot` and `systemPromptReport` of about `n_bytes` together (before indentation)."""
    p = pools()
    # Small entries (tests) list fewer skills and tools, so their fixed part does not dominate.
    n_items = max(2, min(len(_TOOL_NAMES), n_bytes // (4 * 1024)))
    skill_names, tool_names = _SKILLS[:n_items], _TOOL_NAMES[:n_items]
    skills = [{"name": name, "primaryEnv": None if i % 3 else "GITHUB_TOKEN", "requiredEnv": [],
               "description": p["prose"].take(rng, n_bytes // 60)} for i, name in enumerate(skill_names)]
    snapshot: dict = {"skills": skills, "version": 3}
    if prompt_ref is not None:
        digest, size = prompt_ref
        snapshot["promptRef"] = {"version": 1, "algorithm": "sha256", "hash": digest, "bytes": size}
    else:
        snapshot["prompt"] = p["prose"].take(rng, n_bytes * 30 // 100)
    tools = [{"name": name, "summaryChars": rng.randint(80, 900), "schemaChars": rng.randint(300, 6000),
              "propertiesCount": rng.randint(1, 14), "schema": p["tool"].take(rng, n_bytes // 50)}
             for name in tool_names]
    workspace = [{"name": name, "path": f"/home/linou/.openclaw/workspace-{agent_id}/{name}", "missing": False,
                  "rawChars": rng.randint(500, 20000), "injectedChars": rng.randint(500, 20000), "truncated": False,
                  "preview": p["prose"].take(rng, n_bytes // 40)}
                 for name in ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "IDENTITY.md", "MEMORY.md")[:n_items]]
    report = {"source": "run", "generatedAt": plan.updated_at, "sessionId": plan.session_id, "sessionKey": plan.key,
              "provider": "anthropic", "model": "claude-sonnet-4-5", "workspaceDir": f"/home/linou/.openclaw/workspace-{agent_id}",
              "bootstrapMaxChars": 20000, "sandbox": {"mode": "off", "sandboxed": False},
              "systemPrompt": {"chars": n_bytes, "projectContextChars": n_bytes // 3, "nonProjectContextChars": n_bytes // 2},
              "injectedWorkspaceFiles": workspace,
              "skills": {"promptChars": n_bytes // 3, "entries": [{"name": s, "blockChars": rng.randint(200, 3000)} for s in skill_names]},
              "tools": {"listChars": rng.randint(2000, 9000), "schemaChars": rng.randint(20000, 90000), "entries": tools}}
    return {"skillsSnapshot": snapshot, "systemPromptReport": report}


def prompt_blob(rng: random.Random, n_bytes: int) -> Tuple[str, str]:
    """(text, sha256) of a skills prompt stored under skills-prompts/ and referenced by promptRef."""
    text = pools()["prose"].take(rng, n_bytes)
    return text, hashlib.sha256(text.encode()).hexdigest()


def make_entry(rng: random.Random, plan: SessionPlan, agent_id: str, transcript_path: str, bulk_bytes: int,
               tokens: Tuple[int, int, int], compactions: int = 0,
               prompt_ref: Optional[Tuple[str, int]] = None) -> dict:
    """The store entry for `plan` (insertion order like OpenClaw's: ids and clock first, bulk last)."""
    input_tokens, output_tokens, cache_read = tokens
    entry = {"sessionId": plan.session_id, "updatedAt": plan.updated_at, "sessionFile": transcript_path,
             "sessionStartedAt": plan.started_at, "lastInteractionAt": plan.updated_at}
    entry.update(_routing(plan, agent_id))
    entry.update({"modelProvider": "anthropic", "model": "claude-sonnet-4-5",
                  "inputTokens": input_tokens, "outputTokens": output_tokens,
                  "totalTokens": input_tokens + output_tokens, "contextTokens": 200000,
                  "cacheRead": cache_read, "cacheWrite": 0,
                  "estimatedCostUsd": round(input_tokens * 3e-6 + output_tokens * 15e-6, 4),
                  "compactionCount": compactions})
    entry.update(bulk_fields(rng, bulk_bytes, plan, agent_id, prompt_ref))
    return entry
