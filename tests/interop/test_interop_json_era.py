"""OpenClaw 2026.7.1 (JSON era) judges every shipped playbook on genuine session data.

The data: real `openclaw agent --local` turns against tests/interop/mock_model.py (genuine.py says
how), over a main session (8 turns, some running `echo hello` through OpenClaw's exec tool), a cron
run, a subagent, a heartbeat (kept) and a telegram topic. Each test copies it, runs the real controller
(`fleet run PLAYBOOK`, local connection, clock 48 h ahead so the disposable sessions are old), and
then asks OpenClaw itself:
- `openclaw sessions --all-agents --json` lists exactly the keys left in the store fleet wrote
  (a store OpenClaw could not parse would list none, so an exit 0 alone proves nothing);
- `openclaw doctor --lint --json` has no finding it did not have before;
- OpenClaw's transcript loader reads every kept transcript without rewriting it, with as many
  entries as fleet reports records;
- one more `openclaw agent --local` turn on the main session works, and the model is sent the
  last kept user message (and, after a trim, none of the removed ones).
"""
import pytest

import genuine
from genuine import JSON_ERA, MAIN_KEY, CRON_RUN_KEY, SUBAGENT_KEY, HEARTBEAT_KEY, TOPIC_KEY, OpenClaw
from judge import (host_files, listed_keys, load_with_openclaw, run_fleet, sent_text, store_keys, user_texts,
                   write_turn_config)
from mock_model import MockModel

pytestmark = pytest.mark.timeout(1500)

# The heartbeat is kept: shipped playbooks prune heartbeats only when they name them.
DISPOSABLE = {CRON_RUN_KEY, SUBAGENT_KEY}
TRIM_PLAYBOOK = """\
description = "test: trim every transcript to its last 10 records, trajectories to 2 runs"
[[transcripts.tier]]
over = "1KB"
keep_records = 10
[trajectories]
keep_runs = 2
"""


@pytest.fixture(scope="session")
def genuine_71(tmp_path_factory):
    """(node, package dir, cached genuine state dir, lint findings of an untouched copy)."""
    node, pkgs = genuine.install(JSON_ERA)
    cached = genuine.genuine_state(JSON_ERA, node, pkgs[JSON_ERA])
    baseline = genuine.copy_state(cached, tmp_path_factory.mktemp("baseline") / "state")
    openclaw = OpenClaw(node, pkgs[JSON_ERA], baseline)
    keys = listed_keys(openclaw)
    assert {MAIN_KEY, CRON_RUN_KEY, SUBAGENT_KEY, HEARTBEAT_KEY, TOPIC_KEY} <= keys, keys
    return node, pkgs[JSON_ERA], cached, openclaw.lint()


def _judge(genuine_71, tmp_path, playbook):
    node, pkg, cached, lint_before = genuine_71
    state = genuine.copy_state(cached, tmp_path / "state")
    openclaw = OpenClaw(node, pkg, state)
    keys_before = set(store_keys(state))
    main_transcript_before = state / "agents/main/sessions" / (store_keys(state)[MAIN_KEY]["sessionId"] + ".jsonl")
    users_before = user_texts(main_transcript_before)
    doc = run_fleet(tmp_path, state, playbook)
    files = host_files(doc)
    kept = store_keys(state)
    store_rec = next(f for f in files if f["kind"] == "store")
    assert store_rec["after"]["records"] == len(kept)
    assert store_rec["before"]["records"] == len(keys_before)
    return state, openclaw, files, kept, keys_before, lint_before, users_before


def _openclaw_lists_kept_keys(openclaw, kept, keys_before):
    listed = listed_keys(openclaw)
    assert listed == set(kept), "OpenClaw lists %s, fleet kept %s" % (sorted(listed), sorted(kept))
    assert not (listed & (keys_before - set(kept)))


def _no_new_lint_findings(openclaw, lint_before):
    new = {(c, s) for c, s, _ in openclaw.lint()} - {(c, s) for c, s, _ in lint_before}
    assert not new, "doctor --lint has new findings after fleet: %s" % sorted(new)


def _loader_reads_kept_transcripts(genuine_71, state, files, kept, tmp_path):
    """Every kept entry's transcript: OpenClaw loads it unchanged, with fleet's record count."""
    node, pkg = genuine_71[0], genuine_71[1]
    by_path = {f["path"]: f for f in files}
    transcripts = [by_path["agents/main/sessions/%s.jsonl" % e["sessionId"]] for e in kept.values()]
    assert len(transcripts) == len(kept)
    for rec in transcripts:
        assert rec["kind"] == "transcript" and rec["action"] not in ("archive", "delete"), rec
        seen = load_with_openclaw(node, pkg, state / rec["path"], tmp_path / "loader")
        assert seen["rewritten"] is False, rec["path"]
        assert seen["recovered_corrupt_header"] is False
        assert seen["entries"] == rec["after"]["records"], rec["path"]
        assert seen["messages"] and seen["first_role"] == "user", (rec["path"], seen)
        assert seen["sanitized_messages"] == seen["messages"]


def _further_turn_sends_kept_messages(openclaw, state, kept, removed_users):
    mock = MockModel.start()
    try:
        write_turn_config(state, mock.base_url)
        transcript = state / "agents/main/sessions" / (kept[MAIN_KEY]["sessionId"] + ".jsonl")
        last_kept_user = user_texts(transcript)[-1]
        answer = openclaw.turn(MAIN_KEY, "one more turn after fleet")
        assert answer.get("payloads")
    finally:
        mock.stop()
    assert mock.requests, "OpenClaw never called the model"
    sent = sent_text(mock.requests[0])
    assert "one more turn after fleet" in sent
    assert last_kept_user in sent, "the last kept user message was not sent to the model"
    for text in removed_users:
        assert text not in sent, "a message fleet removed was sent: %r" % text


@pytest.mark.parametrize("playbook", ["weekly", "daily-prune", "maintenance", "emergency"])
def test_openclaw_sessions_lists_exactly_the_kept_keys_lint_clean_loader_reads_and_turn_works_after(
        genuine_71, tmp_path, playbook):
    state, openclaw, files, kept, keys_before, lint_before, users_before = _judge(genuine_71, tmp_path, playbook)
    if playbook in ("weekly", "daily-prune"):
        # 48 h later the cron run and subagent are disposable; main, the topic and the heartbeat are kept.
        assert set(kept) == keys_before - DISPOSABLE
    else:
        assert set(kept) == keys_before
    _openclaw_lists_kept_keys(openclaw, kept, keys_before)
    _no_new_lint_findings(openclaw, lint_before)
    _loader_reads_kept_transcripts(genuine_71, state, files, kept, tmp_path)
    _further_turn_sends_kept_messages(openclaw, state, kept, [])


def test_openclaw_loads_trimmed_main_and_the_model_gets_only_the_kept_messages(genuine_71, tmp_path):
    playbook = tmp_path / "trim-hard.toml"
    playbook.write_text(TRIM_PLAYBOOK)
    state, openclaw, files, kept, keys_before, lint_before, users_before = _judge(genuine_71, tmp_path, playbook)
    main_rec = next(f for f in files if f["kind"] == "transcript" and kept[MAIN_KEY]["sessionId"] in f["path"])
    assert main_rec["action"] == "trim" and main_rec["after"]["records"] <= 10
    traj = [f for f in files if f["kind"] == "trajectory" and f["action"] != "none"]
    assert traj, "no trajectory was capped"
    _openclaw_lists_kept_keys(openclaw, kept, keys_before)
    _no_new_lint_findings(openclaw, lint_before)
    _loader_reads_kept_transcripts(genuine_71, state, files, kept, tmp_path)
    users_after = user_texts(state / main_rec["path"])
    removed = [u for u in users_before if u not in users_after]
    assert removed, "the trim removed no user message"
    _further_turn_sends_kept_messages(openclaw, state, kept, removed)
