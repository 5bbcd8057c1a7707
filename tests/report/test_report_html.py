"""The HTML report in a real browser: headless Chromium renders both charts with their numbers;
the page loads nothing from anywhere; a screenshot is kept in test-artifacts/."""
from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from fleet.report.html import AFTER_COLOR, BEFORE_COLOR, render_html
from fleet.report.results import FileResult, HostResult, RunResult, Stats
from helpers import ARTIFACTS, CHROMIUM, chromium

REPO = Path(__file__).resolve().parents[2]


def sample_run() -> RunResult:
    def fr(agent, i, before, after):
        return FileResult(agent, f"agents/{agent}/sessions/s{i}.jsonl", "transcript", "trim", ("trim",),
                          Stats(before, 1000, "a" * 64), Stats(after, 100, "b" * 64))

    hosts = (
        HostResult("pc-a", True, elapsed_s=1.1,
                   files=(fr("main", 1, 9_646_899, 188_743), fr("work", 2, 3_000_000, 400_000))),
        HostResult("t440", True, elapsed_s=0.9, files=(fr("main", 3, 5_242_880, 262_144),)),
        HostResult.failed("nas", "ssh: connection refused (10.0.0.5:22): is sshd running?"),
    )
    return RunResult("20261121T101500Z-3fa2c1", "run", "weekly", False, "2026-11-21T10:15:00Z",
                     "2026-11-21T10:15:04Z", hosts)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) into rows of pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif ctype == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def count_color(rows: list[bytes], bpp: int, hex_color: str) -> int:
    target = bytes.fromhex(hex_color[1:])
    return sum(1 for row in rows for x in range(0, len(row), bpp) if row[x:x + 3] == target)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: run scripts/setup.sh test")
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "report.html"
    page.write_text(render_html(sample_run()), encoding="utf-8")
    dom = chromium(["--dump-dom", page.as_uri()], tmp / "profile-dom")
    ARTIFACTS.mkdir(exist_ok=True)
    shots = {}
    for name, size in (("phone", "412,1600"), ("desktop", "1280,1000")):
        shot = tmp / f"report-html-{name}.png"
        chromium([f"--screenshot={shot}", f"--window-size={size}", "--hide-scrollbars", page.as_uri()],
                 tmp / f"profile-{name}")
        shots[name] = shot
        if shot.exists():
            # Keep a copy for people to look at; replaced atomically (xdist workers may race).
            part = ARTIFACTS / f".report-html-{name}.{os.getpid()}.png"
            shutil.copyfile(shot, part)
            os.replace(part, ARTIFACTS / f"report-html-{name}.png")
    return page, dom, shots


def test_page_is_self_contained(rendered):
    page, _, _ = rendered
    html = page.read_text()
    assert '<meta name="viewport"' in html
    assert "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_browser_renders_both_charts_with_numbers(rendered):
    _, dom, _ = rendered
    for section in ("chart-hosts", "chart-agents"):
        chart = dom.split(f'id="{section}"')[1].split("</section>")[0]
        assert len(re.findall(r'<rect class="bar before"', chart)) >= 2, section
        assert len(re.findall(r'<rect class="bar after"', chart)) >= 2, section
    hosts_chart = dom.split('id="chart-hosts"')[1].split("</section>")[0]
    assert ">12 MB<" in hosts_chart and ">575 KB (−95 %)<" in hosts_chart  # pc-a before / after
    agents_chart = dom.split('id="chart-agents"')[1].split("</section>")[0]
    assert "pc-a/work" in agents_chart and ">2.9 MB<" in agents_chart
    assert "connection refused (10.0.0.5:22)" in dom


@pytest.mark.parametrize("name", ["phone", "desktop"])
def test_screenshot_shows_the_bars(rendered, name):
    _, _, shots = rendered
    shot = shots[name]
    assert shot.exists() and shot.stat().st_size > 10_000
    width, bpp, rows = png_pixels(shot)
    # Both bar colours are painted, each by a sizeable area (several bars of 13px height).
    assert count_color(rows, bpp, BEFORE_COLOR) > 2000
    assert count_color(rows, bpp, AFTER_COLOR) > 100


def test_names_from_hosts_are_escaped():
    """Paths, agent ids and errors come from the hosts: they must never become markup."""
    evil = "<script>alert(1)</script>"
    run = sample_run()
    pc_a = run.hosts[0]
    bad_file = FileResult(evil, f"agents/x/sessions/{evil}.jsonl", "transcript", "trim", ("trim",),
                          Stats(10_000_000, 10, "a" * 64), Stats(1, 1, "b" * 64))
    hosts = (HostResult(pc_a.host, True, files=pc_a.files + (bad_file,)),
             HostResult.failed("nas", f"ssh said {evil}"))
    page = render_html(RunResult(run.run_id, "run", "weekly", False, run.started_at, run.finished_at, hosts))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
