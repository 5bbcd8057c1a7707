"""Running the real `fleet` CLI in-process, and the `# expect:` lines of bad-config fixtures."""
from __future__ import annotations

from pathlib import Path

from fleet.cli import main


def run_cli(argv, capsys):
    """Run the real `fleet` entry point in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    out, err = capsys.readouterr()
    return code, out, err


def expectations(path: Path) -> list[str]:
    """What a fixture says the user must read: its `# expect: …` lines."""
    return [line.split("# expect:", 1)[1].strip() for line in path.read_text().splitlines()
            if line.startswith("# expect:")]
