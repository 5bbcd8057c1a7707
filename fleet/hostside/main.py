"""The agent's command line: `run`, `scan`, `version` (contract: docs/agent-protocol.md).

`main(argv)` returns the exit status: 0 every file handled, 1 some file or agent could not be
handled (the result says which), 2 the plan is unreadable/invalid/of another protocol version,
3 the state dir is missing or unreadable. Whenever the plan could be read, exactly one JSON
result document goes to stdout; progress and fatal errors go to stderr as JSON lines.
"""
import argparse
import json
import os
import sys
import time

from .terms import AGENT_VERSION, PROTOCOL_VERSION
from .context import RunContext
from .discover import StateDirError, discover, resolve_state_dir
from .protocol import PlanError, finish_result, has_file_errors, new_result, scan_plan, validate_plan

EXIT_OK, EXIT_FILES, EXIT_PLAN, EXIT_STATE_DIR = 0, 1, 2, 3

DESCRIPTION = """\
fleet's cleanup agent for OpenClaw hosts (protocol %d, agent %s). Stdlib only, Python >= 3.8.

It finds the OpenClaw state dir (~/.openclaw, $OPENCLAW_STATE_DIR, $OPENCLAW_HOME or a profile
~/.openclaw-NAME), its agents and every session file; `scan` reports sizes, record counts and
health read-only; `run` follows a JSON plan: verified backups first, then store prune, archiving,
transcript trims, trajectory caps, expiry. Nothing is changed without a verified backup, and a
dry run writes nothing at all.""" % (PROTOCOL_VERSION, AGENT_VERSION)

EPILOG = """\
exit status: 0 every file handled; 1 some file could not be handled (see the result);
2 bad plan or protocol mismatch (nothing touched); 3 state dir missing or unreadable.
The plan/result JSON contract is fleet's docs/agent-protocol.md. Example:
  python3 fleet-agent.pyz scan --state-dir ~/.openclaw-work
  python3 fleet-agent.pyz run --plan plan.json > result.json"""


class _Parser(argparse.ArgumentParser):
    """argparse, plus the usage error as a fatal JSON line (stderr stays machine-readable)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        _fatal(sys.stderr, "bad usage: %s" % message)
        raise SystemExit(EXIT_PLAN)


def build_parser():
    parser = _Parser(prog="fleet-agent", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{run,scan,version}")
    run = sub.add_parser("run", help="Run a JSON plan (from FILE, or - for stdin); result JSON on stdout.",
                         description="Run a JSON plan; one JSON result on stdout, progress on stderr.")
    run.add_argument("--plan", default="-", metavar="FILE|-", help="plan file, or - for stdin (default)")
    scan = sub.add_parser("scan", help="Read-only scan: sizes, records and health; no plan needed.",
                          description="Read-only scan of the state dir; one JSON result on stdout.")
    scan.add_argument("--state-dir", default=None, metavar="DIR",
                      help="OpenClaw state dir (default: $OPENCLAW_STATE_DIR, $OPENCLAW_HOME, ~/.openclaw)")
    scan.add_argument("--agent", action="append", default=None, metavar="A",
                      help="only this agent (repeatable; default: every agent under agents/)")
    scan.add_argument("--now-ms", type=int, default=None, metavar="N",
                      help="the scan's clock in epoch ms (ages of locks and temp files)")
    sub.add_parser("version", help='Print {"protocol": N, "agent_version": "..."}.')
    return parser


def _fatal(stderr, message):
    try:
        stderr.write(json.dumps({"event": "fatal", "error": message}) + "\n")
        stderr.flush()
    except (OSError, ValueError):
        pass


def read_plan(source, stdin):
    """Parse the plan JSON from a file or stdin; raise PlanError when unreadable."""
    try:
        if source == "-":
            text = stdin.read()
        else:
            with open(os.path.expanduser(source), "rb") as f:
                text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError("cannot read the plan %s: %s" % (source, exc))
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PlanError("the plan is not valid JSON: %s" % exc)


def execute(plan, stderr=None, environ=None):
    """Run a validated plan; return (result document, exit status). Never raises."""
    stderr = sys.stderr if stderr is None else stderr
    started = time.time()
    try:
        state_dir = resolve_state_dir(plan["state_dir"], environ)
    except StateDirError as exc:
        result = new_result(plan, None, started)
        _fatal(stderr, str(exc))
        return finish_result(result, started, error=str(exc)), EXIT_STATE_DIR
    result = new_result(plan, state_dir, started)
    ctx = RunContext(state_dir, plan["run_id"], plan["now_ms"], plan["dry_run"], None,
                     plan["operations"], progress_stream=stderr)
    try:
        if plan["mode"] == "scan":
            from .scan import scan_agents
            scan_agents(ctx, discover(state_dir, plan["agents"]), result)
        else:
            from . import runops
            runops.execute_plan(ctx, plan, result)
    except StateDirError as exc:
        _fatal(stderr, str(exc))
        return finish_result(result, started, error=str(exc)), EXIT_STATE_DIR
    except PlanError as exc:  # only visible once the state dir is known (a backup dir inside agents/)
        _fatal(stderr, str(exc))
        return finish_result(result, started, error=str(exc)), EXIT_PLAN
    except Exception as exc:  # the run cannot go on; the result still says why
        message = "internal error: %s: %s" % (type(exc).__name__, exc)
        _fatal(stderr, message)
        return finish_result(result, started, error=message), EXIT_FILES
    ctx.progress(event="done")
    finish_result(result, started)
    return result, (EXIT_FILES if has_file_errors(result) else EXIT_OK)


def main(argv=None, stdin=None, stdout=None, stderr=None, environ=None):
    """Entry point of `python3 -m fleet.hostside` and of the bundled .pyz; returns the exit status."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(stdout)
        return EXIT_OK
    if args.command == "version":
        stdout.write(json.dumps({"protocol": PROTOCOL_VERSION, "agent_version": AGENT_VERSION}) + "\n")
        return EXIT_OK
    doc = None
    try:
        if args.command == "scan":
            doc = {"mode": "scan"}
            plan = scan_plan(args.state_dir, args.agent, args.now_ms)
        else:
            doc = read_plan(args.plan, stdin)
            plan = validate_plan(doc)
    except PlanError as exc:
        _fatal(stderr, str(exc))
        if doc is not None:
            # The plan was read: answer with a result naming the problem (nothing was touched).
            started = time.time()
            partial = doc if isinstance(doc, dict) else {}
            result = new_result({"mode": partial.get("mode"), "run_id": partial.get("run_id"),
                                 "dry_run": partial.get("dry_run") is True}, None, started)
            _write(stdout, finish_result(result, started, error="bad plan: %s" % exc))
        return EXIT_PLAN
    result, code = execute(plan, stderr, environ)
    _write(stdout, result)
    return code


def _write(stdout, result):
    # default=str: a value an operation put in a record that JSON cannot hold must not lose the result.
    stdout.write(json.dumps(result, default=str) + "\n")
    stdout.flush()
