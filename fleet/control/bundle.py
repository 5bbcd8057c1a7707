"""Build the self-contained agent: one zip application file from the stdlib-only fleet/hostside/ (with ops/).

The build is deterministic (sorted names, fixed timestamps), so its sha256 names the agent's
version on every host's cache (`~/.cache/fleet/agent-<sha256[:16]>.pyz`).
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path

AGENT_SRC = Path(__file__).resolve().parent.parent / "hostside"
PACKAGE_IN_ZIP = "fleet_agent"
_MAIN = (
    "import sys\n"
    "if sys.version_info < (3, 8):\n"
    "    sys.stderr.write('{\"event\": \"fatal\", \"error\": \"fleet agent needs Python >= 3.8, found %s\"}\\n'"
    " % sys.version.split()[0])\n"
    "    sys.exit(2)\n"
    "from fleet_agent.main import main\n"
    "sys.exit(main())\n"
)


@functools.lru_cache(maxsize=1)
def agent_bundle() -> bytes:
    """The agent as the bytes of one .pyz file (cached for the life of the process)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        add("__main__.py", _MAIN.encode())
        for src in sorted(AGENT_SRC.rglob("*.py")):
            if "__pycache__" not in src.parts:
                add(f"{PACKAGE_IN_ZIP}/{src.relative_to(AGENT_SRC).as_posix()}", src.read_bytes())
    return buf.getvalue()


def agent_digest() -> str:
    return hashlib.sha256(agent_bundle()).hexdigest()


def export_agent(path: Path) -> str:
    """Write the agent to `path` (atomically, mode 0755); return its sha256."""
    data = agent_bundle()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()
