"""What the `fleet` command says about a mistyped command or option: the hint once, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, hint", [(["scna"], "Did you mean 'scan'?"),
                                        (["playbook", "chek"], "Did you mean 'check'?"),
                                        (["scan", "--lmit", "x"], "Did you mean '--limit'?")])
def test_a_typo_gets_one_did_you_mean(argv, hint):
    proc = subprocess.run([sys.executable, "-m", "fleet", *argv], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("Did you mean") == 1 and hint in proc.stderr
