"""docs/compatibility.md as a resumable table: read the rows already measured, write them back with new ones.

Used by compat_matrix.py. The table is the only state: a row that is in it was measured (its cells
say what happened, failures included) and is not measured again; a release the run was asked for
and that has no row yet is listed under "Not measured yet" with the command that measures it.
A release whose measurement could not start (install or data generation failed) gets no row: it stays
in that list with the reason.
"""
import re
import time

COLUMNS = ("version", "storage", "schema", "main turns", "scan", "dry run", "run (weekly)", "restore",
           "openclaw cleanup")
# Row keys used by compat_matrix.measure, in COLUMNS order.
KEYS = ("version", "format", "schema", "turns", "scan", "dry run", "run", "restore", "openclaw cleanup")
# Tables written before the "main turns" column: every row there was measured with 26 main turns.
OLD_KEYS = ("version", "format", "schema", "scan", "dry run", "run", "restore", "openclaw cleanup")
OLD_TURNS = "26"
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def version_key(version):
    return tuple(int(x) for x in version.split("."))


def read_rows(path):
    """{version: row} of the rows in an existing table (none when the file is missing)."""
    rows = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if not cells or not VERSION.match(cells[0]):
            continue
        if len(cells) == len(KEYS):
            rows[cells[0]] = dict(zip(KEYS, cells))
        elif len(cells) == len(OLD_KEYS):
            row = dict(zip(OLD_KEYS, cells))
            row["turns"] = OLD_TURNS
            rows[cells[0]] = row
    return rows


def render(header, rows, pending, command):
    """The whole document: header, one row per measured release (newest first), then what is not measured."""
    text = header.rstrip("\n") + "\n\nLast written %s.\n\n" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text += "| %s |\n| %s |\n" % (" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS))
    for version in sorted(rows, key=version_key, reverse=True):
        text += "| %s |\n" % " | ".join(str(rows[version].get(k, "-")).replace("|", "/") for k in KEYS)
    text += "\n## Not measured yet\n\n"
    if not pending:
        text += "Every release this table was asked for is measured.\n"
        return text
    text += ("%d stable release(s) have no row yet. To measure them (rows already in the table are kept and "
             "not measured again):\n\n    %s\n\n" % (len(pending), command))
    for version in sorted(pending, key=version_key, reverse=True):
        reason = pending[version]
        text += "- %s%s\n" % (version, ": %s" % reason if reason else "")
    return text
