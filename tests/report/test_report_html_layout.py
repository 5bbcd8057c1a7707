"""The HTML report in a real browser window of 1400 px: no table needs its scrollbar, so the
health findings' detail column is on screen (headless Chromium lays the page out and measures)."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from fleet.report.html import render_html
from fleet.report.results import FileResult, HealthFinding, HostResult, RunResult, Stats
from helpers import ARTIFACTS, CHROMIUM, chromium

SID = "94aa8d41-b143-4fc5-b5c1-7a76dc8113e2"
# What the demo fleet's weekly run reports, at full length.
DETAILS = [
    "main session 'agent:techsfree-web:main' uses 191158 tokens (totalTokens) of a 200000-token context; "
    "warning above 150000",
    "peer 7123456789 has direct sessions in 3 agents: family (agent:family:telegram:direct:7123456789), "
    "main (agent:main:telegram:direct:7123456789), travel (agent:travel:telegram:direct:7123456789)",
]

# Run in the page: which table boxes are wider inside than on screen (hidden behind a scrollbar).
MEASURE = """<script>
addEventListener('load', () => {
  const hidden = [...document.querySelectorAll('.scroll')]
    .filter(box => box.scrollWidth > box.clientWidth + 1)
    .map(box => box.previousElementSibling ? box.previousElementSibling.textContent : '?');
  const detail = [...document.querySelectorAll('td')].filter(td => td.textContent.startsWith('main session'))
    .map(td => { const r = td.getBoundingClientRect(); return [Math.round(r.left), Math.round(r.right)]; });
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify({hidden, detail, width: innerWidth});
  document.body.appendChild(out);
});
</script>"""


def demo_like_run() -> RunResult:
    files = tuple(
        FileResult(agent, f"agents/{agent}/sessions/{SID}.trajectory.jsonl", "trajectory", "trim", ("trim",),
                   Stats(2_000_000 + i, 900, "a" * 64), Stats(900_000, 300, "b" * 64))
        for i, agent in enumerate(("main", "techsfree-web", "home-automation")))
    health = tuple(HealthFinding(agent, "warning", check, detail, f"agents/{agent}/sessions/sessions.json")
                   for agent, check, detail in (("techsfree-web", "tokens", DETAILS[0]),
                                                ("family", "peer-shared", DETAILS[1])))
    host = HostResult("t440", True, elapsed_s=1.0, files=files, health=health)
    return RunResult("20261121T101500Z-3fa2c1", "run", "weekly", False, "2026-11-21T10:15:00Z",
                     "2026-11-21T10:15:04Z", (host,))


def test_health_detail_is_on_screen_at_1400_px(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: run scripts/setup.sh test")
    html = render_html(demo_like_run())
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    # The measuring copy: the report's CSP forbids scripts, so this copy allows inline ones.
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(re.sub(r"default-src 'none'; style-src 'unsafe-inline'",
                                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
                                    html).replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = chromium(["--window-size=1400,1000", "--dump-dom", measured_page.as_uri()], tmp_path / "profile-dom")
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert measured["width"] == 1400
    assert measured["hidden"] == [], f"tables wider than the window: {measured['hidden']}"
    (left, right), = measured["detail"]
    assert 0 <= left < right <= 1400
    shot = tmp_path / "report-html-1400.png"
    chromium([f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()], tmp_path / "profile-shot")
    assert shot.exists() and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    part = ARTIFACTS / f".report-html-1400.{os.getpid()}.png"
    shutil.copyfile(shot, part)
    os.replace(part, ARTIFACTS / "report-html-1400.png")
