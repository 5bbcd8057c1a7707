"""The least a weekly run must do to the files it rewrites, as plain stdlib passes (no fleet code).

    python3 bench/floor_pass.py hash FILE...    # read every byte once and sha256 it
    python3 bench/floor_pass.py json FILE...    # that, and check every line is one JSON value

`hash` is what a verified backup costs at least (the copy is checked against the original's sha256).
`json` adds what fleet's rule "a line that is not JSON makes a per-file error" costs at least in
stdlib Python: each line decoded from UTF-8 and run through the C JSON scanner, nothing else kept
(a `.json` store is parsed whole).
bench/agent_throughput.py runs both beside `cp -r` + `sync` and the agent's weekly run, so the
ratio a run can reach on a machine is measured, not guessed. Python >= 3.8, stdlib only.
"""
import hashlib
import json
import sys

LINE_MAX = 4 << 20      # as the agent: longer lines are read in pieces (and only hashed here)


def main(argv):
    mode, paths = argv[0], argv[1:]
    if mode not in ("hash", "json"):
        raise SystemExit("usage: floor_pass.py hash|json FILE...")
    scan = json.JSONDecoder().scan_once
    lines = 0
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            if mode == "hash":
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                continue
            if not path.endswith(".jsonl"):      # a store: one JSON document
                data = f.read()
                digest.update(data)
                json.loads(data)
                continue
            for raw in iter(lambda: f.readline(LINE_MAX), b""):
                digest.update(raw)
                lines += 1
                if len(raw) < LINE_MAX and raw.strip():
                    scan(raw.decode("utf-8"), 0)
    print(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
