"""docs/compatibility.md is resumable: measured rows survive a rewrite, the rest is listed as not measured."""
import compat_table

OLD = """# Compatibility

| version | storage | schema | scan | dry run | run (weekly) | restore | openclaw cleanup |
| --- | --- | --- | --- | --- | --- | --- | --- |
| 2026.7.1 | JSON | sessions.json | ok | exact | ok; 3 of 5 sessions pruned | ok | 0 sessions removed |
"""


def test_rows_of_the_old_table_are_kept_and_pending_releases_listed_with_the_command(tmp_path):
    doc = tmp_path / "compatibility.md"
    doc.write_text(OLD)
    rows = compat_table.read_rows(doc)
    assert rows["2026.7.1"]["turns"] == "26" and rows["2026.7.1"]["run"] == "ok; 3 of 5 sessions pruned"
    rows["2026.9.5"] = {"version": "2026.9.5", "format": "SQLite", "schema": "21", "turns": "26", "scan": "ok",
                        "dry run": "exact", "run": "ok / odd", "restore": "FAILED: x", "openclaw cleanup": "-"}
    pending = {"2026.2.1": "", "2026.10.2": "measurement could not start: boom"}
    doc.write_text(compat_table.render("# Compatibility", rows, pending, "scripts/compat-matrix.sh"))
    text = doc.read_text()
    again = compat_table.read_rows(doc)
    assert set(again) == {"2026.7.1", "2026.9.5"}
    assert again["2026.9.5"]["restore"] == "FAILED: x" and again["2026.9.5"]["run"] == "ok / odd"
    assert text.index("| 2026.9.5 |") < text.index("| 2026.7.1 |")  # newest first, by number
    assert "2 stable release(s) have no row yet" in text and "    scripts/compat-matrix.sh\n" in text
    assert text.index("- 2026.10.2: measurement could not start: boom") < text.index("- 2026.2.1\n")
