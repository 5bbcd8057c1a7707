"""Reports as a person sees them: tables that add up, dry runs marked, scans without an after
column, exit codes of `fleet report` / `fleet history` through the real CLI entry point."""
from __future__ import annotations

import json
import os
from dataclasses import replace


from fleet.report import history
from fleet.cli import main
from fleet.report.render import render_run
from fleet.report.tables import DRY_RUN_BANNER, change
from fleet.report.results import FileResult, HealthFinding, HostResult, RunResult, Stats
from helpers import assert_markdown_adds_up, markdown_tables

RUN_ID = "20261121T101500Z-3fa2c1"


def fr(agent, name, before, after, action="trim", kind="transcript", error=None):
    return FileResult(agent, f"agents/{agent}/sessions/{name}", kind, action, (action,) if action != "none" else (),
                      Stats(before, 100, "a" * 64), Stats(after, 10, "b" * 64), error=error,
                      backup=f"/h/.openclaw/fleet-backups/{RUN_ID}/{name}" if action != "none" else None)


def sample_run(kind="run", dry_run=False) -> RunResult:
    pc_a = HostResult("pc-a", True, elapsed_s=1.2, backup_bytes=9_947_000, files=(
        fr("main", "big.jsonl", 9_646_899, 188_743),
        fr("main", "sessions.json", 812_000, 40_100, action="prune", kind="store"),
        fr("work", "w.jsonl", 2_500_000, 2_500_000, action="none"),
        fr("work", "bad.jsonl", 3_000_000, 3_000_000, action="trim", error="not valid JSON at line 3; left alone"),
    ), health=(HealthFinding("main", "critical", "store-size", "sessions.json is 812KB"),
               HealthFinding("work", "info", "era", "json era")))
    t440 = HostResult("t440", True, elapsed_s=0.8, expired_backup_bytes=5_000_000, files=(
        fr("main", "x.jsonl", 6_000_000, 300_000),
        fr("ops", "y.jsonl", 1_000, 1_000, action="none"),
    ), health=(HealthFinding("main", "warning", "transcript-size", "x.jsonl is 5.7MB"),))
    nas = HostResult.failed("nas", "ssh: connection refused (10.0.0.5:22): is sshd running?")
    if kind == "scan":
        pc_a = HostResult("pc-a", True, files=tuple(
            FileResult(f.agent, f.path, f.kind, "none", (), f.before, f.before) for f in pc_a.files))
        return RunResult(RUN_ID, "scan", None, False, "2026-11-21T10:15:00Z", "2026-11-21T10:15:02Z", (pc_a, nas))
    return RunResult(RUN_ID, kind, "weekly", dry_run, "2026-11-21T10:15:00Z", "2026-11-21T10:15:09Z",
                     (pc_a, t440, nas))


def test_markdown_tables_add_up_to_the_json(capsys):
    history.record_run(sample_run())
    assert _cli(["report", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert _cli(["report", RUN_ID, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert_markdown_adds_up(md, doc)
    assert markdown_tables(md)["Fleet"][0]["failed"] == "1"
    assert "## fleet run " + RUN_ID in md


def test_table_report_has_every_section_and_failed_hosts_last():
    text = render_run(sample_run(), "table", top=3)
    for heading in ("Fleet", "Per host", "Per host and agent", "Largest 3 files before", "Largest 3 files after",
                    "Health findings", "File errors", "Failed hosts"):
        assert f"\n{heading}\n" in text, heading
    assert text.index("Failed hosts") > text.index("File errors") > text.index("Health findings")
    assert "connection refused (10.0.0.5:22)" in text.split("Failed hosts")[1]
    assert "not valid JSON at line 3" in text
    assert change(9_646_899, 188_743) == "9.2MB → 0.18MB (−98 %)"
    # Health: critical before warning, info left out.
    health = text.split("Health findings")[1].split("File errors")[0]
    assert health.index("critical") < health.index("warning") and "json era" not in health
    # Largest files before: the 9.2MB transcript first; only 3 rows.
    largest = text.split("Largest 3 files before")[1].split("Largest 3 files after")[0]
    assert largest.strip().splitlines()[2].split()[2] == "agents/main/sessions/big.jsonl"
    assert len(largest.strip().splitlines()) == 2 + 3
    assert DRY_RUN_BANNER not in text
    assert f"undo with: fleet restore {RUN_ID}" in text
    assert "undo with" not in render_run(sample_run(dry_run=True), "table")
    assert "undo with" not in render_run(sample_run(kind="scan"), "table")


def test_multi_line_and_pipe_errors_keep_tables_intact():
    error = "agent failed (exit 127):\nsh: python3: not found\n| x"
    run = replace(sample_run(), hosts=(HostResult.failed("nas", error),))
    md = render_run(run, "markdown")
    row = [line for line in md.splitlines() if line.startswith("| nas")][0]
    assert row.count(" | ") == 1 and "sh: python3: not found / \\| x" in row
    table = render_run(run, "table")
    assert "agent failed (exit 127): / sh: python3: not found / | x" in table


def test_dry_run_is_marked_in_every_human_format():
    run = sample_run(dry_run=True)
    for fmt in ("table", "markdown", "html"):
        assert DRY_RUN_BANNER in render_run(run, fmt), fmt
    assert "would free" in render_run(run, "table")
    assert json.loads(render_run(run, "json"))["dry_run"] is True


def test_scan_report_shows_sizes_without_after():
    text = render_run(sample_run(kind="scan"), "table")
    per_host = text.split("\nPer host\n")[1].split("\n\n")[0].strip()
    header = per_host.splitlines()[0].split()
    assert "size" in header and "after" not in header and "freed" not in header
    assert "fleet scan " + RUN_ID in text


def test_json_report_is_the_recorded_document(capsys):
    run = sample_run()
    history.record_run(run)
    assert _cli(["report", RUN_ID[:12], "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == run.to_json()


def test_report_to_file_is_private(tmp_path, capsys):
    history.record_run(sample_run())
    out = tmp_path / "report.md"
    assert _cli(["report", "--format", "markdown", "-o", str(out)]) == 0
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert "### Per host and agent" in out.read_text()


def test_host_and_agent_filters(capsys):
    history.record_run(sample_run())
    assert _cli(["report", "--host", "t440", "--agent", "main", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["host"] for h in doc["hosts"]] == ["t440"]
    assert {f["agent"] for f in doc["hosts"][0]["files"]} == {"main"}
    assert _cli(["report", "--host", "nope"]) == 2


def test_unknown_run_id_and_bad_format_exit_2(capsys):
    assert _cli(["report", "nope"]) == 2
    assert "no runs recorded yet" in capsys.readouterr().err
    history.record_run(sample_run())
    assert _cli(["report", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown run id 'nope'" in err and RUN_ID in err
    assert _cli(["report", "--format", "pdf"]) == 2


def test_history_lists_runs_in_table_and_json(capsys):
    history.record_run(sample_run(dry_run=True), {"controller": "op@desk"})
    history.record_run(replace(sample_run(kind="scan"), run_id="20261122T000000Z-scan00"))
    history.record_run(replace(sample_run(kind="restore"), run_id="20261123T000000Z-rest00",
                               extra={"restored_run": RUN_ID}))
    assert _cli(["history"]) == 0
    text = capsys.readouterr().out
    assert "run (dry run)" in text and "op@desk" in text and "scan" in text
    assert f"undo {RUN_ID}" in text
    assert _cli(["history", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in doc["runs"]] == ["20261123T000000Z-rest00", "20261122T000000Z-scan00", RUN_ID]
    assert doc["runs"][2]["dry_run"] is True and doc["runs"][0]["restored_run"] == RUN_ID


def _cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
