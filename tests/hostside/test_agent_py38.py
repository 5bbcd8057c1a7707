"""The host-side program keeps its promise of Python >= 3.8 on every machine, pyenv or not.

- Syntax, with no interpreter needed: every module of fleet/hostside/ (and the bundle's
  __main__) parses as Python 3.8 (`ast.parse(..., feature_version=(3, 8))`), its annotations are
  not evaluated with 3.9+ forms (`list[int]`, `X | None`) and it calls none of the stdlib's 3.9+
  names. The checker itself is shown to refuse planted 3.9+ code, so it can fail.
- Runtime, on every interpreter >= 3.8 this machine really has (tests/pythons.py: PATH, and
  pyenv's builds where there are some): the exported .pyz imports every module, scans and runs.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

import pythons
from fleet.control.bundle import _MAIN, export_agent

HOSTSIDE = Path(__file__).resolve().parents[2] / "fleet" / "hostside"
NOW_MS = 1795000000000
OLDEST = (3, 8)
# Evaluated at definition time without `from __future__ import annotations`: on 3.8 these raise.
BUILTIN_GENERICS = {"list", "dict", "set", "frozenset", "tuple", "type"}
# Stdlib names that appeared after 3.8 (attribute or module names the host-side code could call).
NEWER_NAMES = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9",
               "lcm": "3.9", "bit_count": "3.10", "pairwise": "3.10", "zoneinfo": "3.9",
               "graphlib": "3.9", "tomllib": "3.11", "batched": "3.12", "waitstatus_to_exitcode": "3.9",
               "pidfd_open": "3.9", "randbytes": "3.9", "to_thread": "3.9", "aiter": "3.10",
               "anext": "3.10"}


def py38_problems(source: str, name: str) -> list:
    """What in `source` would not run on Python 3.8; [] when nothing."""
    try:
        tree = ast.parse(source, name, feature_version=OLDEST)
    except SyntaxError as exc:
        return ["%s:%s: not Python 3.8 syntax: %s" % (name, exc.lineno, exc.msg)]
    problems = []
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body)
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations += [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                            + [args.vararg, args.kwarg] if a is not None and a.annotation is not None]
            annotations += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        if isinstance(node, ast.Attribute) and node.attr in NEWER_NAMES:
            problems.append("%s:%s: .%s is Python %s" % (name, node.lineno, node.attr, NEWER_NAMES[node.attr]))
        if isinstance(node, ast.Name) and node.id in NEWER_NAMES and node.id in ("aiter", "anext"):
            problems.append("%s:%s: %s() is Python %s" % (name, node.lineno, node.id, NEWER_NAMES[node.id]))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules += [a.name for a in node.names]     # from math import lcm
            for module in modules:
                if module.split(".")[0] in NEWER_NAMES:
                    problems.append("%s:%s: import of %s, which is Python %s" % (
                        name, node.lineno, module, NEWER_NAMES[module.split(".")[0]]))
    if not lazy:
        for annotation in annotations:
            for node in ast.walk(annotation):
                if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                        and node.value.id in BUILTIN_GENERICS:
                    problems.append("%s:%s: %s[...] in an annotation needs Python 3.9" % (name, node.lineno, node.value.id))
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
                    problems.append("%s:%s: X | Y in an annotation needs Python 3.10" % (name, node.lineno))
    return problems


def test_every_hostside_module_is_python38():
    sources = sorted(p for p in HOSTSIDE.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(sources) > 10, sources
    problems = [p for path in sources for p in py38_problems(path.read_text(), path.name)]
    problems += py38_problems(_MAIN, "__main__.py (bundle)")
    assert problems == []


@pytest.mark.parametrize("planted, says", [
    ("match x:\n    case 1:\n        pass\n", "not Python 3.8 syntax"),
    ("with (open('a') as f, open('b') as g):\n    pass\n", "not Python 3.8 syntax"),
    ("try:\n    pass\nexcept* ValueError:\n    pass\n", "not Python 3.8 syntax"),
    ("def f(x: list[int]) -> None:\n    pass\n", "list[...] in an annotation"),
    ("def f(x: 'int') -> dict[str, int]:\n    pass\n", "dict[...] in an annotation"),
    ("def f(x: int | None):\n    pass\n", "X | Y in an annotation"),
    ("y = 'fleet-x'.removeprefix('fleet-')\n", ".removeprefix is Python 3.9"),
    ("import zoneinfo\n", "import of zoneinfo, which is Python 3.9"),
    ("from math import lcm\n", "import of lcm, which is Python 3.9"),
], ids=["match", "parenthesized-with", "except-star", "list-annotation", "dict-annotation", "union-annotation",
        "removeprefix", "zoneinfo", "math-lcm"])
def test_the_checker_refuses_planted_newer_code(planted, says):
    problems = py38_problems(planted, "planted.py")
    assert problems and says in problems[0], problems


def test_annotations_left_unevaluated_are_fine_on_38():
    source = "from __future__ import annotations\ndef f(x: list[int]) -> dict[str, int] | None:\n    pass\n"
    assert py38_problems(source, "lazy.py") == []


SUPPORTED = pythons.supported()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostside") / "fleet-agent.pyz"
    export_agent(path)
    return path


def test_this_machine_has_a_supported_python_to_run_it_on():
    assert SUPPORTED, "no Python >= 3.8 found on PATH: the host-side program cannot be run here"


def make_state(state: Path) -> None:
    s = state / "agents" / "main" / "sessions"
    s.mkdir(parents=True)
    (s / "sessions.json").write_text(json.dumps({
        "agent:main:main": {"sessionId": "m", "updatedAt": NOW_MS, "skillsSnapshot": {"prompt": "x" * 500}},
        "agent:main:cron:j:run:c": {"sessionId": "c", "updatedAt": NOW_MS - 3 * 86400 * 1000},
    }, indent=2))
    lines = [{"type": "session", "version": 3, "id": "m"}]
    parent = None
    for i in range(40):
        role = "user" if i % 2 == 0 else "assistant"
        lines.append({"type": "message", "id": "%08x" % (i + 1), "parentId": parent,
                      "message": {"role": role, "content": [{"type": "text", "text": "t" * 300}]}})
        parent = "%08x" % (i + 1)
    (s / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (s / "c.jsonl").write_text('{"type":"session","version":3,"id":"c"}\n')


@pytest.mark.parametrize("python", SUPPORTED, ids=str)
def test_scan_and_run_on_every_supported_python_here(tmp_path, pyz, python):
    state = tmp_path / "state"
    make_state(state)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    scan = subprocess.run([python.path, str(pyz), "scan", "--state-dir", str(state)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert scan.returncode == 0, scan.stderr
    doc = json.loads(scan.stdout)
    assert doc["host"]["python"] == python.says
    assert doc["agents"][0]["sessions"] == 2
    assert {f["path"].rsplit("/", 1)[1]: f["before"]["records"] for f in doc["files"]} == \
        {"sessions.json": 2, "m.jsonl": 40, "c.jsonl": 0}

    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T120000Z-py38aa", "now_ms": NOW_MS,
            "state_dir": str(state),
            "operations": {"transcripts": {"tiers": [{"over_bytes": 1000, "keep_records": 10, "slim": "aggressive"}]},
                           "store": {"prune": {"cron_run": 86400}}}}
    run = subprocess.run([python.path, str(pyz), "run"], input=json.dumps(plan),
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    files = {f["path"].rsplit("/", 1)[1]: f for f in res["files"]}
    assert files["sessions.json"]["action"] == "prune"
    assert files["sessions.json"]["after"]["records"] == 1
    assert files["m.jsonl"]["action"] == "trim"
    assert files["m.jsonl"]["after"]["records"] <= 10
    assert files["c.jsonl"]["action"] == "archive"
    assert (state / "agents/main/sessions/m.jsonl").stat().st_size == files["m.jsonl"]["after"]["bytes"]
    assert Path(files["m.jsonl"]["backup"]).exists()


@pytest.mark.parametrize("python", SUPPORTED, ids=str)
def test_first_passes_made_ahead_by_workers_on_every_supported_python_here(tmp_path, pyz, python):
    """The worker pool (fleet/hostside/prescan.py: fork, a process per core) runs from the .pyz on
    every interpreter: two agents' transcripts are scanned ahead, the run uses both scans, and
    nothing is said on stderr but progress (no warning, no traceback)."""
    state = tmp_path / "state"
    make_state(state)
    os.rename(state / "agents" / "main", tmp_path / "one")
    for agent in ("a1", "a2"):
        (state / "agents" / agent).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(tmp_path / "one"), str(state / "agents" / agent)], check=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", FLEET_AGENT_WORKERS="2")
    plan = {"protocol": 1, "mode": "run", "run_id": "20261121T120000Z-py38ab", "now_ms": NOW_MS,
            "state_dir": str(state),
            "operations": {"transcripts": {"tiers": [{"over_bytes": 1000, "keep_records": 10, "slim": None}]}}}
    run = subprocess.run([python.path, str(pyz), "run"], input=json.dumps(plan),
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    assert res["prescan"] == {"workers": 2, "made": 2, "used": 2}, res.get("prescan")
    assert sorted(f["agent"] for f in res["files"] if f["action"] == "trim") == ["a1", "a2"]
    said = [line for line in run.stderr.splitlines() if not line.startswith("{")]
    assert said == [], said


@pytest.mark.parametrize("python", SUPPORTED, ids=str)
def test_every_hostside_module_imports_on_every_supported_python_here(pyz, python):
    """Modules a scan or run does not reach still load (a 3.9+ name at import time shows here)."""
    names = sorted(".".join(p.relative_to(HOSTSIDE).with_suffix("").parts) for p in HOSTSIDE.rglob("*.py")
                   if p.stem != "__main__" and "__pycache__" not in p.parts)
    assert "ops.store" in names
    code = ("import importlib, sys; sys.path.insert(0, %r)\n"
            "for n in %r: importlib.import_module('fleet_agent.' + n)\nprint('ok')") % (str(pyz), names)
    proc = subprocess.run([python.path, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
