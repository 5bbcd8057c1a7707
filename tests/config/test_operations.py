"""One table of operations (fleet/hostside/ops/): the controller and the host-side program read the
same entries, so what a playbook compiles to is what the host accepts, and a new operation is
one module plus one table entry."""
from __future__ import annotations

import copy
import io
import json
import types

import pytest

from fleet.config.playbook import load_playbook, sections, shipped_playbooks
from fleet.hostside import ops
from fleet.hostside.main import main as host_main
from fleet.hostside.protocol import BACKUP_DEFAULTS, PlanError, validate_operations
from helpers import run_cli

REQUIRED = ("SECTION", "DEFAULTS", "REWRITES", "read", "describe", "validate", "backup_need", "run")


def test_every_entry_is_a_whole_operation_and_every_one_has_its_place_in_a_run():
    for op in ops.OPERATIONS:
        missing = [name for name in REQUIRED if not hasattr(op, name)]
        assert not missing, f"{op.__name__} lacks {missing}"
        assert ops.BY_SECTION[op.SECTION] is op
    assert sorted(op.SECTION for op in ops.PASSES) == sorted(op.SECTION for op in ops.OPERATIONS)
    assert sections() == ("backup",) + tuple(op.SECTION for op in ops.OPERATIONS)


@pytest.mark.parametrize("name", sorted(shipped_playbooks()))
def test_a_shipped_playbook_compiles_to_what_the_host_accepts_unchanged(name):
    book = load_playbook(name)
    assert book.operations, name
    assert validate_operations(copy.deepcopy(book.operations)) == book.operations
    for section, values in book.operations.items():
        assert set(values) == set(ops.BY_SECTION[section].DEFAULTS), section
    # [backup] to is the one key a playbook may leave to the inventory's backup_to.
    assert set(BACKUP_DEFAULTS) - set(book.backup) <= {"to"} and set(book.backup) <= set(BACKUP_DEFAULTS)


@pytest.mark.parametrize("name", sorted(shipped_playbooks()))
def test_playbook_check_describes_every_operation_it_counts(name, capsys):
    code, out, _ = run_cli(["playbook", "check", name], capsys)
    assert code == 0
    book = load_playbook(name)
    described = [line.split(":", 1)[0] for line in out.splitlines() if line[:1].isalpha() and ":" in line]
    assert [s for s in described if s in ops.BY_SECTION] == [op.SECTION for op in ops.OPERATIONS
                                                               if op.SECTION in book.operations]
    assert f"OK: {len(book.operations)} operation" in out


def _images_operation(calls: list) -> types.ModuleType:
    """What a reviewer would write as fleet/hostside/ops/images.py: drop image attachments
    older than N days (here it only records that its pass ran, with which section)."""
    images = types.ModuleType("images")
    images.SECTION = "images"
    images.DEFAULTS = {"older_than_s": 30 * 86400}
    images.REWRITES = True

    def read(t):
        t.check_keys(("older_than",))
        return {"older_than_s": t.duration("older_than")}

    def describe(s, size, duration):
        return [f"images: drop image attachments older than {duration(s['older_than_s'])}"]

    def validate(s, where):
        if not isinstance(s["older_than_s"], int):
            raise PlanError(f"at '{where}.older_than_s': expected seconds")

    def backup_need(ctx, af, s, info):
        return info.kind == "transcript"

    def run(work, s):
        calls.append((work.af.agent, s))
        work.notes.append("images pass ran")

    images.read, images.describe, images.validate = read, describe, validate
    images.backup_need, images.run = backup_need, run
    return images


def test_a_new_operation_is_one_module_and_one_entry(tmp_path, monkeypatch, capsys):
    calls: list = []
    images = _images_operation(calls)
    # The one table entry (in ops/__init__.py: OPERATIONS and its place in PASSES).
    monkeypatch.setattr(ops, "OPERATIONS", ops.OPERATIONS + (images,))
    monkeypatch.setattr(ops, "PASSES", ops.PASSES + (images,))
    monkeypatch.setattr(ops, "BY_SECTION", {**ops.BY_SECTION, "images": images})

    book = tmp_path / "images.toml"
    book.write_text('description = "old pictures go"\n[images]\nolder_than = "7d"\n')
    code, out, err = run_cli(["playbook", "check", str(book)], capsys)
    assert code == 0, err
    assert "images: drop image attachments older than 7d" in out
    assert "OK: 1 operation" in out

    bad = tmp_path / "bad.toml"
    bad.write_text('[images]\nolder_then = "7d"\n')
    code, _, err = run_cli(["playbook", "check", str(bad)], capsys)
    assert code == 2 and "images.older_then" in err and 'did you mean "older_than"' in err

    compiled = load_playbook(str(book)).operations
    assert compiled == {"images": {"older_than_s": 7 * 86400}}
    sessions = tmp_path / "state" / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text("{}\n")
    plan = {"protocol": 1, "mode": "run", "run_id": "20261204T000000Z-images", "state_dir": str(tmp_path / "state"),
            "operations": compiled}
    out_stream = io.StringIO()
    code = host_main(["run", "--plan", "-"], stdin=io.StringIO(json.dumps(plan)), stdout=out_stream,
                     stderr=io.StringIO())
    doc = json.loads(out_stream.getvalue())
    assert code == 0, doc["agents"]
    assert calls == [("main", {"older_than_s": 7 * 86400})]
    assert doc["agents"][0]["notes"] == ["images pass ran"]
