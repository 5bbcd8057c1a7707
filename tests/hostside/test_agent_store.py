"""Store work of the agent on real files: key classes, prune/strip/cap, locks, bad stores, dry run."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from fleet.hostside import fsutil
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.fsutil import BackupStore
from fleet.hostside.locks import ms_to_iso
from fleet.hostside.store import PROTECTED, classify_key, load_store, prune_store, rotate_store
from fleet.hostside.fsutil import FileError
from procs import dead_pid
from trees import tree

NOW = 1763700000000
DAY = 86400
HOUR_MS = 3600 * 1000
OLD = NOW - 40 * DAY * 1000           # older than every rule below
FRESH = NOW - HOUR_MS                 # younger than every rule below

POLICY = {
    "prune": {"cron_run": DAY, "subagent": DAY, "heartbeat": DAY, "acp": DAY, "dashboard": DAY,
              "probe": DAY, "hook": DAY, "dreaming": DAY},
    "prune_direct_after_s": None, "stale_after_s": None, "max_entries": None,
    "strip_fields": ["skillsSnapshot", "systemPromptReport"], "rotate_over_bytes": None, "rotate_keep": 3,
}

KEY_TABLE = [
    ("agent:main:main", "main"),
    ("agent:ops:main", "main"),
    ("agent:main:work", "main"),                    # a custom session.mainKey
    ("global", "global"),
    ("agent:main:direct:u1", "direct"),
    ("agent:main:telegram:direct:42", "direct"),
    ("agent:main:whatsapp:acct1:direct:+15550001", "direct"),
    ("agent:main:telegram:dm:42", "direct"),          # legacy :dm:
    ("agent:main:telegram:group:-1001", "group"),
    ("agent:main:discord:channel:9876", "channel"),
    ("discord:acct:guild-1:channel-2", "channel"),   # legacy discord key
    ("agent:main:telegram:group:-1001:topic:7", "topic"),
    ("agent:main:slack:group:C1:thread:1700.1", "thread"),   # thread under a group
    ("agent:main:main:thread:abc", "thread"),
    ("agent:main:cron:nightly", "cron"),
    ("agent:main:cron:nightly:run:3f1a", "cron_run"),
    ("agent:main:subagent:9b2c-11", "subagent"),
    ("agent:main:direct:u1:subagent:worker", "subagent"),
    ("subagent:9b2c-12", "subagent"),
    ("agent:main:telegram:group:-1001:subagent:w", "group"),   # kept, like OpenClaw's chat-type rule
    ("agent:main:acp:77aa", "acp"),
    ("agent:main:dashboard:88bb", "dashboard"),
    ("agent:main:explicit:model-run-1234-abcd", "probe"),
    ("agent:main:explicit:s-1", "explicit"),
    ("hook:0c6f1b7e-2f0e-4a53-9d55-7f0b0f4c1a2b", "hook"),
    ("agent:main:main:heartbeat", "heartbeat"),          # heartbeat on a main base
    ("agent:main:telegram:group:-1001:heartbeat", "heartbeat"),
    ("dreaming-narrative-light-0123456789ab", "dreaming"),
    ("dreaming-narrative-rem-0123456789ab-retry-2", "dreaming"),
    ("agent:main:dreaming-narrative-deep-0123456789ab", "dreaming"),
    ("AGENT:Main:Telegram:Group:-1001", "group"),      # case-insensitive like OpenClaw
    ("agent:main", "other"),
    ("agent:main:weird:thing", "other"),
]


@pytest.mark.parametrize("key,kind", KEY_TABLE)
def test_every_key_kind_is_classified(key, kind):
    assert classify_key(key) == kind


def test_protected_kinds_are_the_spec_ones():
    assert PROTECTED == {"main", "global", "group", "channel", "topic", "thread", "cron"}


# ---------------------------------------------------------------- helpers

def make_agent(tmp_path, store, raw=None, mode=0o600):
    state = tmp_path / "state"
    sessions = state / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    path = sessions / "sessions.json"
    path.write_bytes(raw if raw is not None else json.dumps(store, indent=2).encode() + b"\n")
    os.chmod(path, mode)
    return str(state), str(path)


def make_ctx(state, dry_run=False, now_ms=NOW, backups=None, run_id="run1"):
    root = os.path.join(state, "fleet-backups", run_id)
    return RunContext(state, run_id, now_ms, dry_run,
                      backups or BackupStore(root, dry_run=dry_run), {"store": POLICY})


def store_info(state, path):
    st = os.stat(path)
    return FileInfo("main", path, os.path.relpath(path, state), "store", st.st_size, st.st_mtime_ns)


def entry(sid, updated=OLD, **extra):
    e = {"sessionId": sid}
    if updated is not None:
        e["updatedAt"] = updated
    e.update(extra)
    return e


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def protected_and_disposable():
    """One ancient entry of every kind, plus fresh disposable ones that must stay."""
    store = {}
    for i, (key, kind) in enumerate(KEY_TABLE):
        store[key] = entry("s%02d-old" % i, OLD)
    store["agent:main:cron:nightly:run:fresh"] = entry("fresh-cron", FRESH)
    store["agent:main:subagent:fresh"] = entry("fresh-sub", FRESH)
    store["hook:fresh"] = entry("fresh-hook", FRESH)
    return store


# ---------------------------------------------------------------- prune rules

def test_prune_removes_exactly_the_old_disposable_entries_and_never_protected(tmp_path):
    store = protected_and_disposable()
    state, path = make_agent(tmp_path, store)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)

    assert rec["error"] is None and rec["action"] == "prune"
    disposable = {"cron_run", "subagent", "heartbeat", "acp", "dashboard", "probe", "hook", "dreaming"}
    expected_removed = {k for k, kind in KEY_TABLE if kind in disposable}
    assert set(removed) == expected_removed
    after = load_store(path)
    assert set(after) == set(store) - expected_removed
    for key, kind in KEY_TABLE:
        if kind in PROTECTED:
            assert key in after, key             # 40 days idle and still there
    for key in ("agent:main:cron:nightly:run:fresh", "agent:main:subagent:fresh", "hook:fresh"):
        assert key in after
    # direct / explicit / other have no age rule in this policy
    assert "agent:main:telegram:direct:42" in after and "agent:main:weird:thing" in after
    assert rec["before"]["records"] == len(store) and rec["after"]["records"] == len(after)
    assert "removed 1 cron_run entry" in rec["notes"]
    assert "removed 3 subagent entries" in rec["notes"]


def test_direct_only_by_its_own_policy_and_stale_for_the_rest(tmp_path):
    store = {
        "agent:main:main": entry("m", OLD),
        "agent:main:telegram:direct:1": entry("d-old", OLD),
        "agent:main:telegram:direct:2": entry("d-new", FRESH),
        "agent:main:explicit:x": entry("e-old", OLD),
        "agent:main:weird:thing": entry("o-old", OLD),
        "agent:main:weird:new": entry("o-new", FRESH),
        "agent:main:telegram:group:1": entry("g-old", OLD),
    }
    state, path = make_agent(tmp_path, store)
    policy = dict(POLICY, stale_after_s=30 * DAY)
    _, removed = prune_store(make_ctx(state), "main", store_info(state, path), policy)
    assert set(removed) == {"agent:main:explicit:x", "agent:main:weird:thing"}   # direct untouched

    policy = dict(POLICY, prune_direct_after_s=7 * DAY)
    _, removed = prune_store(make_ctx(state, run_id="run2"), "main", store_info(state, path), policy)
    assert set(removed) == {"agent:main:telegram:direct:1"}
    assert set(load_store(path)) == {"agent:main:main", "agent:main:telegram:direct:2",
                                     "agent:main:weird:new", "agent:main:telegram:group:1"}


def test_entries_without_updated_at_are_oldest_for_age_rules(tmp_path):
    store = {
        "agent:main:cron:j:run:a": entry("a", None),
        "agent:main:cron:j:run:b": entry("b", "yesterday"),
        "agent:main:cron:j:run:c": entry("c", FRESH),
        "agent:main:main": entry("m", None),
    }
    state, path = make_agent(tmp_path, store)
    _, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert set(removed) == {"agent:main:cron:j:run:a", "agent:main:cron:j:run:b"}
    assert set(load_store(path)) == {"agent:main:cron:j:run:c", "agent:main:main"}


def test_max_entries_removes_missing_updated_at_first_then_oldest(tmp_path):
    store = {
        "agent:main:main": entry("m", 10),
        "agent:main:telegram:direct:1": entry("d1", NOW - 5000),
        "agent:main:telegram:direct:2": entry("d2", NOW - 9000),
        "agent:main:telegram:direct:3": entry("d3", None),
        "agent:main:telegram:direct:4": entry("d4", NOW - 1000),
        "agent:main:telegram:group:1": entry("g1", 5),
    }
    state, path = make_agent(tmp_path, store)
    policy = dict(POLICY, max_entries=4)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), policy)
    assert list(removed) == ["agent:main:telegram:direct:3", "agent:main:telegram:direct:2"]
    assert list(load_store(path)) == ["agent:main:main", "agent:main:telegram:direct:1",
                                      "agent:main:telegram:direct:4", "agent:main:telegram:group:1"]
    assert rec["after"]["records"] == 4
    assert not any("exceed" in n for n in rec["notes"])


def test_protected_entries_over_the_cap_are_kept_and_reported(tmp_path):
    store = {
        "agent:main:main": entry("m", 1),
        "agent:main:telegram:group:1": entry("g1", 2),
        "agent:main:telegram:group:2": entry("g2", 3),
        "agent:main:discord:channel:1:thread:2": entry("t1", 4),
        "agent:main:telegram:direct:9": entry("d9", NOW),
    }
    state, path = make_agent(tmp_path, store)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), dict(POLICY, max_entries=2))
    assert list(removed) == ["agent:main:telegram:direct:9"]
    assert set(load_store(path)) == set(store) - {"agent:main:telegram:direct:9"}
    assert "4 protected entries exceed max_entries 2 (kept)" in rec["notes"]


def test_strip_only_writes_pretty_json_with_mode_and_identical_kept_entries(tmp_path):
    store = {
        "agent:main:main": entry("m", FRESH, skillsSnapshot={"prompt": "x" * 5000}, model="claude",
                                 systemPromptReport={"tools": {"entries": ["a"] * 50}}, label="ünïcode ✓"),
        "agent:main:telegram:group:1": entry("g", FRESH, totalTokens=5, origin={"provider": "telegram"}),
    }
    state, path = make_agent(tmp_path, store)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert removed == {}
    assert rec["action"] == "strip" and rec["actions"] == ["strip"]
    expected = json.loads(json.dumps(store))
    del expected["agent:main:main"]["skillsSnapshot"]
    del expected["agent:main:main"]["systemPromptReport"]
    data = open(path, "rb").read()
    assert data == json.dumps(expected, indent=2, ensure_ascii=False).encode() + b"\n"
    assert json.loads(data) == expected
    assert list(json.loads(data)["agent:main:main"]) == ["sessionId", "updatedAt", "model", "label"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert rec["after"]["sha256"] == sha(path)
    # the backup holds the original bytes
    assert sha(rec["backup"]) == rec["before"]["sha256"] == rec["backup_sha256"]
    assert "stripped skillsSnapshot from 1 entry" in rec["notes"]
    # a second run has nothing to do and writes nothing
    before = tree(os.path.dirname(path))
    rec2, _ = prune_store(make_ctx(state, run_id="run2"), "main", store_info(state, path), POLICY)
    assert rec2["action"] == "none" and rec2["backup"] is None
    assert tree(os.path.dirname(path)) == before


def test_mode_of_the_store_is_kept(tmp_path):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store, mode=0o640)
    prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert list(load_store(path)) == ["agent:main:main"]


def test_store_without_trailing_newline_is_written_without_one(tmp_path):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store, raw=json.dumps(store, indent=2).encode())
    prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert open(path, "rb").read() == json.dumps({"agent:main:main": entry("m")}, indent=2).encode()


# ---------------------------------------------------------------- bad stores

def test_hostile_session_ids_are_an_error_and_nothing_is_written_anywhere(tmp_path):
    store = {
        "agent:main:cron:j:run:a": entry("../../x"),
        "agent:main:cron:j:run:b": entry("/etc/passwd"),
        "agent:main:cron:j:run:c": entry("ok-id"),
        "agent:main:main": entry("m"),
    }
    state, path = make_agent(tmp_path, store)
    (tmp_path / "x.jsonl").write_text("victim\n")
    before = tree(str(tmp_path))
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert removed == {}
    assert rec["action"] == "none" and rec["backup"] is None
    assert "'../../x'" in rec["error"] and "'/etc/passwd'" in rec["error"]
    assert "never used as a path" in rec["error"]
    assert tree(str(tmp_path)) == before


BAD_STORES = [
    (b"", "empty (0 bytes)"),
    (b"  \n", "empty (3 bytes)"),
    (b'{\n  "agent:main:main": {"sessionId": "a",}\n}\n', "not valid JSON (line 2 column"),
    (b'[{"sessionId": "a"}]', "JSON array at the top level"),
    (b'{"agent:main:main": "x"}', "is a JSON string, not an object"),
    (b'{"agent:main:main": {"updatedAt": 1}}', "has no sessionId"),
    (b'{"agent:main:main": {"sessionId": "a", "label": "\xff\xfe"}}', "not valid UTF-8 (byte"),
    (b'{"agent:main:main": {"sessionId": "a", "x": NaN}}', "not valid JSON"),
    (b'\xef\xbb\xbf{}', "byte-order mark"),
]


@pytest.mark.parametrize("raw,message", BAD_STORES)
def test_bad_store_gets_a_clear_error_and_stays_byte_identical(tmp_path, raw, message):
    state, path = make_agent(tmp_path, None, raw=raw)
    before = tree(str(tmp_path))
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert message in rec["error"]
    assert removed == {} and rec["action"] == "none"
    assert tree(str(tmp_path)) == before                # no backup dir, no lock, no temp
    with pytest.raises(FileError):
        load_store(path)


# ---------------------------------------------------------------- locks around the rewrite

def test_live_pid_store_lock_leaves_the_store_untouched(tmp_path, live_pid):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    wall = int(time.time() * 1000)
    lock = path + ".lock"
    with open(lock, "w") as f:
        json.dump({"pid": live_pid, "createdAt": ms_to_iso(wall)}, f)
    before = tree(os.path.dirname(path))
    rec, removed = prune_store(make_ctx(state, now_ms=wall), "main", store_info(state, path), POLICY,
                               lock_wait_s=0.3)
    assert "store locked by live pid %d" % live_pid in rec["error"]
    assert removed == {} and rec["action"] == "none"
    assert tree(os.path.dirname(path)) == before        # store and the gateway's lock as they were


def test_dead_pid_store_lock_is_taken_over(tmp_path):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    pid = dead_pid()
    with open(path + ".lock", "w") as f:
        json.dump({"pid": pid, "startedAt": NOW - 1000}, f)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY, lock_wait_s=0.3)
    assert rec["error"] is None and list(removed) == ["agent:main:cron:j:run:a"]
    assert any("took over stale store lock (dead pid %d)" % pid in n for n in rec["notes"])
    assert not os.path.exists(path + ".lock")            # ours removed on exit
    assert list(load_store(path)) == ["agent:main:main"]


# ---------------------------------------------------------------- dry run

def test_dry_run_predicts_the_real_run_and_writes_nothing(tmp_path):
    store = protected_and_disposable()
    store["agent:main:main"]["skillsSnapshot"] = {"prompt": "p" * 100}
    state, path = make_agent(tmp_path, store)
    before = tree(str(tmp_path))
    dry, dry_removed = prune_store(make_ctx(state, dry_run=True), "main", store_info(state, path), POLICY)
    assert tree(str(tmp_path)) == before                 # no lock, no backup dir, no temp
    assert not os.path.exists(os.path.join(state, "fleet-backups"))
    real, real_removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert dry["after"] == real["after"] and dry["before"] == real["before"]
    assert dry["actions"] == real["actions"] == ["prune", "strip"]
    assert dry["notes"] == real["notes"]
    assert dict(dry_removed) == dict(real_removed)
    assert real["after"]["sha256"] == sha(path)
    assert dry["backup"] is None and real["backup"] is not None


def test_dry_run_reports_a_live_lock_like_the_real_run(tmp_path, live_pid):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    wall = int(time.time() * 1000)
    with open(path + ".lock", "w") as f:
        json.dump({"pid": live_pid, "createdAt": ms_to_iso(wall)}, f)
    before = tree(str(tmp_path))
    rec, _ = prune_store(make_ctx(state, dry_run=True, now_ms=wall), "main", store_info(state, path),
                         POLICY, lock_wait_s=0.2)
    assert "store locked by live pid %d" % live_pid in rec["error"]
    assert tree(str(tmp_path)) == before


# ---------------------------------------------------------------- a concurrent writer (2026.5-7: no lock)

def gateway_write(path, add):
    """What a lock-less gateway does: read, add, write a temp file, rename it over."""
    with open(path, "rb") as f:
        store = json.loads(f.read())
    store.update(add)
    tmp = "%s.%d.%s.tmp" % (path, os.getpid(), "0f0e0d0c")
    with open(tmp, "w") as f:
        f.write(json.dumps(store, indent=2))
    os.rename(tmp, path)


class WriterDuringBackup(BackupStore):
    """A real BackupStore; a gateway rewrites the store right after each of the first N backups."""

    def __init__(self, root, store_path, times):
        BackupStore.__init__(self, root)
        self.store_path = store_path
        self.times = times
        self.calls = 0

    def backup(self, abs_path, rel_path):
        res = BackupStore.backup(self, abs_path, rel_path)
        self.calls += 1
        if self.calls <= self.times:
            gateway_write(self.store_path, {"agent:main:telegram:direct:new%d" % self.calls:
                                            entry("new%d" % self.calls, NOW)})
        return res


def test_writer_replacing_the_store_during_backup_is_retried_on_fresh_content(tmp_path):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    backups = WriterDuringBackup(os.path.join(state, "fleet-backups", "run1"), path, times=1)
    rec, removed = prune_store(make_ctx(state, backups=backups), "main", store_info(state, path), POLICY)
    assert rec["error"] is None and list(removed) == ["agent:main:cron:j:run:a"]
    assert any("redone on the fresh content" in n for n in rec["notes"])
    assert list(load_store(path)) == ["agent:main:main", "agent:main:telegram:direct:new1"]


def test_writer_replacing_the_store_twice_is_reported_and_its_entries_kept(tmp_path):
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    backups = WriterDuringBackup(os.path.join(state, "fleet-backups", "run1"), path, times=5)
    rec, removed = prune_store(make_ctx(state, backups=backups), "main", store_info(state, path), POLICY)
    assert "changed again while fleet rewrote it" in rec["error"]
    assert removed == {}
    assert set(load_store(path)) == set(store) | {"agent:main:telegram:direct:new1",
                                                 "agent:main:telegram:direct:new2"}
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp") or n.endswith(".lock")]


def test_writer_replacing_the_store_just_before_our_rename_is_retried(tmp_path, monkeypatch):
    """The gateway's rename lands after our temp file is written and synced, before our rename."""
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state, path = make_agent(tmp_path, store)
    fired = []

    def at_step(step):
        if step == "temp-synced" and not fired:
            fired.append(step)
            gateway_write(path, {"agent:main:telegram:direct:late": entry("late", NOW)})

    monkeypatch.setattr(fsutil.FAULTS, "hit", at_step)
    rec, removed = prune_store(make_ctx(state), "main", store_info(state, path), POLICY)
    assert fired and rec["error"] is None
    assert list(load_store(path)) == ["agent:main:main", "agent:main:telegram:direct:late"]


# ---------------------------------------------------------------- rotation

def test_rotation_copies_over_size_and_keeps_k(tmp_path):
    store = {"agent:main:main": entry("m", skillsSnapshot={"prompt": "x" * 2000})}
    state, path = make_agent(tmp_path, store)
    folder = os.path.dirname(path)
    for ms in (NOW - 4000, NOW - 3000, NOW - 2000):
        with open(os.path.join(folder, "sessions.json.bak.%d" % ms), "w") as f:
            f.write('{"old": %d}' % ms)
    original = open(path, "rb").read()
    policy = dict(POLICY, rotate_over_bytes=1000, rotate_keep=3)

    before = tree(str(tmp_path))
    dry = rotate_store(make_ctx(state, dry_run=True), "main", store_info(state, path), policy)
    assert tree(str(tmp_path)) == before
    recs = rotate_store(make_ctx(state), "main", store_info(state, path), policy)
    assert [(r["action"], r["error"]) for r in recs] == [(r["action"], r["error"]) for r in dry]
    assert [r["after"] for r in recs] == [r["after"] for r in dry]

    new = os.path.join(folder, "sessions.json.bak.%d" % NOW)
    assert recs[0]["action"] == "rotate" and recs[0]["path"].endswith("sessions.json.bak.%d" % NOW)
    assert open(new, "rb").read() == original == open(path, "rb").read()   # live store unchanged
    assert os.stat(new).st_mode & 0o777 == 0o600
    baks = sorted(n for n in os.listdir(folder) if ".bak." in n)
    assert baks == ["sessions.json.bak.%d" % ms for ms in (NOW - 3000, NOW - 2000, NOW)]
    deleted = [r for r in recs if r["action"] == "delete"]
    assert len(deleted) == 1 and deleted[0]["path"].endswith(".bak.%d" % (NOW - 4000))
    assert open(deleted[0]["backup"]).read() == '{"old": %d}' % (NOW - 4000)
    assert deleted[0]["after"]["bytes"] == 0


def test_rotation_below_size_or_unset_does_nothing(tmp_path):
    state, path = make_agent(tmp_path, {"agent:main:main": entry("m")})
    before = tree(str(tmp_path))
    assert rotate_store(make_ctx(state), "main", store_info(state, path), dict(POLICY, rotate_over_bytes=None)) == []
    assert rotate_store(make_ctx(state), "main", store_info(state, path),
                        dict(POLICY, rotate_over_bytes=10 ** 6)) == []
    assert tree(str(tmp_path)) == before


# ---------------------------------------------------------------- as an unprivileged user

UNPRIVILEGED_PRUNE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from fleet.hostside.context import FileInfo, RunContext
from fleet.hostside.fsutil import BackupStore
from fleet.hostside.store import prune_store
state, path, backups = sys.argv[2], sys.argv[3], sys.argv[4]
ctx = RunContext(state, "run1", int(sys.argv[5]), False, BackupStore(backups), {})
st = os.lstat(path)
info = FileInfo("main", path, os.path.relpath(path, state), "store", st.st_size, st.st_mtime_ns)
rec, removed = prune_store(ctx, "main", info, json.loads(sys.argv[6]), lock_wait_s=0.2)
print(json.dumps({"rec": rec, "removed": sorted(removed)}))
"""


@pytest.fixture
def shared_dir():
    """A folder the unprivileged user `fleet-test` can reach (tmp_path's parents are root-only)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="fleet-store-perm-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def prune_as_fleet_test(state, path, backups):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(["runuser", "-u", "fleet-test", "--", "/usr/bin/python3", "-c", UNPRIVILEGED_PRUNE,
                           repo, state, path, backups, str(NOW), json.dumps(POLICY)],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_permission_errors_as_an_unprivileged_user_leave_the_store_alone(shared_dir):
    import pwd

    pw = pwd.getpwnam("fleet-test")
    store = {"agent:main:cron:j:run:a": entry("a"), "agent:main:main": entry("m")}
    state = os.path.join(shared_dir, "state")
    sessions = os.path.join(state, "agents", "main", "sessions")
    os.makedirs(sessions)
    path = os.path.join(sessions, "sessions.json")
    with open(path, "w") as f:
        json.dump(store, f, indent=2)
    backups = os.path.join(shared_dir, "backups")
    os.mkdir(backups)
    for p in (state, os.path.dirname(sessions), sessions, path, backups):
        os.chown(p, pw.pw_uid, pw.pw_gid)

    # a sessions folder fleet-test may not write to: no lock, no temp file, so no write at all
    os.chmod(sessions, 0o555)
    before = tree(shared_dir)
    out = prune_as_fleet_test(state, path, backups)
    assert "permission denied" in out["rec"]["error"] and "store lock" in out["rec"]["error"]
    assert out["removed"] == [] and out["rec"]["action"] == "none"
    assert tree(shared_dir) == before

    # a store fleet-test cannot read (root's, 0600)
    os.chmod(sessions, 0o755)
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    before = tree(shared_dir)
    out = prune_as_fleet_test(state, path, backups)
    assert "permission denied" in out["rec"]["error"]
    assert tree(shared_dir) == before

    # and with its own store and folder, the same user prunes normally
    os.chown(path, pw.pw_uid, pw.pw_gid)
    out = prune_as_fleet_test(state, path, backups)
    assert out["rec"]["error"] is None and out["removed"] == ["agent:main:cron:j:run:a"]
    assert os.stat(path).st_uid == pw.pw_uid and os.stat(path).st_mode & 0o777 == 0o600
    assert list(load_store(path)) == ["agent:main:main"]


# --- the entry-at-a-time store reader (memory) -------------------------------------------

from fleet.hostside.discover import loads_store_text  # noqa: E402

SAME_AS_JSON_LOADS = [
    '{}', ' { } ', '{"a": {"sessionId": "x", "skillsSnapshot": {"skills": [1, 2]}}}',
    '{"a": 1, "a": {"sessionId": "y"}, "b": []}',                 # repeated key: last value, first place
    '{\n  "k\\u00e9y": {"sessionId": "s", "n": 1.5e3, "t": true, "z": null}\n}\n',
    '{"a": {"x": "\\ud83d\\ude00"}, "b": "plain"}',
]
BAD = ['', '[]', '"x"', '{"a": 1,}', '{"a" 1}', '{"a": 1} x', '{"a": NaN}', '{"a": 1e400}', '{"a": [1, }',
       '{"a": 1', '{a: 1}', '\ufeff{}', '{"a": "\x01"}']


@pytest.mark.parametrize("text", SAME_AS_JSON_LOADS)
def test_store_reader_gives_what_json_loads_gives(text):
    got = loads_store_text(text)
    assert got == json.loads(text) and list(got) == list(json.loads(text))


@pytest.mark.parametrize("text", BAD)
def test_store_reader_refuses_what_json_loads_refuses_with_its_message(text):
    from fleet.hostside.discover import _reject_constant, finite_float
    try:
        expected = json.loads(text, parse_constant=_reject_constant, parse_float=finite_float)
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            loads_store_text(text)
        assert str(got.value) == str(exc)
    else:
        assert not isinstance(expected, dict) and loads_store_text(text) == expected


def test_store_reader_lets_bulky_fields_go_per_entry_and_a_prune_strips_them_the_same(tmp_path):
    """With the fields dropped at parse time the prune writes the very same bytes, and a parse
    that drops them holds a fraction of the memory of one that does not."""
    import tracemalloc

    bulk = {"skills": [{"name": "s%d" % i, "description": "d" * 40, "env": ["A", "B"]} for i in range(400)]}
    store = {}
    for i in range(40):
        store["agent:main:cron:job%d:run:r%d" % (i, i)] = entry("r%d" % i, OLD, skillsSnapshot=bulk)
        store["agent:main:telegram:direct:u%d" % i] = entry("d%d" % i, FRESH, skillsSnapshot=bulk,
                                                            systemPromptReport={"text": "p" * 2000})
    text = json.dumps(store, indent=2)
    dropped = loads_store_text(text, ("skillsSnapshot", "systemPromptReport"), keep_keys=True)
    assert list(dropped) == list(store)
    assert all(e["skillsSnapshot"] is None for e in dropped.values())
    tracemalloc.start()
    try:
        loads_store_text(text)
        full_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        loads_store_text(text, ("skillsSnapshot", "systemPromptReport"))
        dropped_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert dropped_peak * 5 < full_peak, (dropped_peak, full_peak)

    state, path = make_agent(tmp_path, store)
    rec, _ = prune_store(make_ctx(state), "main", store_info(state, path),
                         {"prune": {"cron_run": 86400}, "strip_fields": ["skillsSnapshot", "systemPromptReport"]})
    assert rec["error"] is None and rec["actions"] == ["prune", "strip"]
    expected = {k: {f: v for f, v in e.items() if f not in ("skillsSnapshot", "systemPromptReport")}
                for k, e in store.items() if ":cron:" not in k}
    with open(path, "rb") as f:
        assert f.read() == json.dumps(expected, indent=2).encode() + b"\n"
    assert "stripped skillsSnapshot from 40 entries" in rec["notes"]
