"""Genuine OpenClaw session data: real `openclaw agent --local` turns against the mock model.

How OpenClaw is driven (found by reading `openclaw agent --help` and the 2026.7.1 dist code):
- `OPENCLAW_STATE_DIR=<scratch>` and `HOME=<scratch>/home` keep everything in the scratch dir;
  `<state>/openclaw.json` declares one provider `mock` (`api: "openai-completions"`, `baseUrl`
  = the mock's `http://127.0.0.1:<port>/v1`, a dummy loopback `apiKey` — OpenClaw accepts a
  non-secret marker for a loopback baseUrl) and makes `mock/mock-1` the default model, with the
  workspace inside the scratch dir. No gateway, onboarding or channel is needed for `--local`.
- `openclaw agent --local --session-key KEY --message TEXT --json` runs one embedded turn and
  prints `{payloads, meta}`; the openai-completions transport always streams (SSE).
- A message containing "run a command" makes the mock answer with an `exec` tool call of
  `echo hello`, which OpenClaw really runs; its result goes back to the mock in a second request.
- Turns are sequential: 2026.5–2026.7 have no file lock on sessions.json (one writer at a time).

Generated data is cached per OpenClaw version on disk (`$FLEET_INTEROP_CACHE/genuine-<version>-
<digest of this file and the mock>`, built under a file lock, so parallel test workers build it
once). `copy_state()` copies it for a test and moves the absolute `sessionFile` paths in JSON
files to the copy (exactly what generating at the copy's path would have written), so no test
ever reads or writes the cache through an old absolute path.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from mock_model import MODEL_ID, MockModel

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FLEET_INTEROP_CACHE", Path.home() / ".cache" / "fleet-interop"))
JSON_ERA, SQLITE_ERA = "2026.7.1", "2026.9.6"

MAIN_KEY = "agent:main:main"
# Fixed uuids so the keys are the same in every cache build (readable in failures).
CRON_RUN_KEY = "agent:main:cron:job1:run:6b1f7a52-3c0e-4d7e-9a55-1d2b1c9e0a01"
SUBAGENT_KEY = "agent:main:subagent:0c8e3d9a-5b7f-4e21-8f60-2a9d4e6b7c02"
HEARTBEAT_KEY = "agent:main:main:heartbeat"
TOPIC_KEY = "agent:main:telegram:group:-1001234567890:topic:7"
MAIN_TURNS = 8
# (key, message) in order: main gets MAIN_TURNS turns, every other kind one; 12 turns in all.
TURNS = ([(MAIN_KEY, "main turn %d: please run a command" % i if i % 4 == 1 else "main turn %d: status?" % i)
          for i in range(MAIN_TURNS)]
         + [(CRON_RUN_KEY, "cron job1 run: run a command"), (SUBAGENT_KEY, "subagent task: summarize"),
            (HEARTBEAT_KEY, "heartbeat check"), (TOPIC_KEY, "topic 7: hello group")])


def install(*versions):
    """(node binary, {version: package dir}); installs via scripts/install-openclaw.sh (cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(REPO / "scripts" / "install-openclaw.sh")] + list(versions),
                              capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, "installing openclaw %s failed:\n%s" % (versions, proc.stderr[-3000:])
    node = proc.stdout.strip().splitlines()[-1]
    pkgs = {v: CACHE / ("openclaw-%s" % v) / "node_modules" / "openclaw" for v in versions}
    assert Path(node).is_file(), node
    for v, pkg in pkgs.items():
        assert (pkg / "package.json").is_file(), "openclaw@%s not installed at %s" % (v, pkg)
    return node, pkgs


def write_config(state, base_url):
    """openclaw.json for the mock provider (rewritten when the mock's port changes)."""
    config = {
        "agents": {"defaults": {"model": {"primary": "mock/%s" % MODEL_ID},
                                "workspace": str(Path(state) / "workspace")}},
        "models": {"mode": "merge", "providers": {"mock": {
            "baseUrl": base_url, "apiKey": "mock-local", "api": "openai-completions",
            "models": [{"id": MODEL_ID, "name": "Mock", "reasoning": False, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000, "maxTokens": 4096}]}}},
    }
    path = Path(state) / "openclaw.json"
    path.write_text(json.dumps(config, indent=2))
    os.chmod(path, 0o600)


class OpenClaw(object):
    """One OpenClaw version's CLI, run against one state dir."""

    def __init__(self, node, pkg, state):
        self.node, self.pkg, self.state = str(node), Path(pkg), Path(state)

    @property
    def command(self):
        return [self.node, str(self.pkg / "openclaw.mjs")]

    def env(self):
        env = dict(os.environ)
        env.update(OPENCLAW_STATE_DIR=str(self.state), HOME=str(self.state / "home"), NO_COLOR="1",
                   FORCE_COLOR="0", NODE_COMPILE_CACHE=str(CACHE / "node-compile-cache"))
        env.pop("OPENCLAW_HOME", None)
        (self.state / "home").mkdir(parents=True, exist_ok=True)
        return env

    def run(self, *args, timeout=300, check=True):
        proc = subprocess.run(self.command + list(args), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, "openclaw %s failed (%d):\n%s\n%s" % (
                " ".join(args), proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc

    def json(self, *args, timeout=300, check=True):
        proc = self.run(*args, timeout=timeout, check=check)
        out = proc.stdout
        start = min([i for i in (out.find("{"), out.find("[")) if i >= 0] or [0])
        return json.loads(out[start:])

    def turn(self, key, message):
        """One real agent turn; returns OpenClaw's --json answer."""
        return self.json("agent", "--local", "--session-key", key, "--message", message, "--json", timeout=600)

    def sessions(self):
        return self.json("sessions", "--all-agents", "--limit", "all", "--json")

    def lint(self):
        """doctor --lint --json findings as a set of (checkId, severity, message) (exit 1 = findings)."""
        doc = self.json("doctor", "--lint", "--json", check=False)
        return {(f.get("checkId"), f.get("severity"), f.get("message")) for f in doc.get("findings") or []}


def _digest():
    h = hashlib.sha256()
    for name in ("genuine.py", "mock_model.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:12]


def genuine_state(version, node, pkg):
    """The cached genuine state dir for `version` (built on first use, under a file lock)."""
    target = CACHE / ("genuine-%s-%s" % (version, _digest()))
    with open(CACHE / (".genuine-%s.lock" % version), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").is_file():
            build = CACHE / ("genuine-%s.build-%d" % (version, os.getpid()))
            shutil.rmtree(build, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            build_state(OpenClaw(node, pkg, build))
            # Relocate what was written with the build path (same as building at the target).
            relocate(build, build, target)
            os.rename(build, target)
            (target / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return target


def build_state(openclaw):
    """Run TURNS against a fresh mock; returns the mock's recorded requests."""
    openclaw.state.mkdir(parents=True, mode=0o700)
    mock = MockModel.start()
    try:
        write_config(openclaw.state, mock.base_url)
        for key, message in TURNS:
            answer = openclaw.turn(key, message)
            assert answer.get("payloads"), "OpenClaw answered no payload for %s: %s" % (key, answer)
    finally:
        mock.stop()
    return mock.requests


def relocate(root, old, new):
    """Point absolute paths in the JSON files under `root` from `old` to `new`."""
    old_b, new_b = str(old).encode(), str(new).encode()
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in (".json", ".jsonl"):
            data = path.read_bytes()
            if old_b in data:
                path.write_bytes(data.replace(old_b, new_b))


def copy_state(cached, dest):
    """A private copy of a cached genuine state dir at `dest` (paths moved to `dest`)."""
    shutil.copytree(cached, dest, symlinks=True, ignore=shutil.ignore_patterns(".complete"))
    relocate(dest, cached, dest)
    return Path(dest)


def new_key_uuid():
    return str(uuid.uuid4())
