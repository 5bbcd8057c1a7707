"""What the bench scripts share: the machine line and the markdown tables they print."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Optional

from tabulate import tabulate


def machine() -> str:
    """"2 CPUs, 24 GB RAM, Linux 6.18.44": printed above every result table."""
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{os.cpu_count()} CPUs, {mem_kb / 1048576:.0f} GB RAM, Linux {platform.release()}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table of already formatted cells (kept as they are)."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def emit(text: str, markdown: Optional[Path]) -> None:
    """Print the result, and write it to `markdown` too when asked."""
    print(text)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text + "\n")


def compile_fleet(repo: Path) -> None:
    """Byte-compile fleet's own modules, as `pip install` does at install time.

    Benches run fleet from the checkout (PYTHONPATH). In a shell with PYTHONDONTWRITEBYTECODE set
    Python would then compile every fleet module from source on every run (~80 ms of CPU per
    command on this machine, ~1.6 ms per host at N = 50), a cost no installed fleet pays and no
    peer pays either (their packages come from pip, compiled). Existing .pyc files are read even
    with that variable set."""
    import compileall
    compileall.compile_dir(str(repo / "fleet"), quiet=1)
