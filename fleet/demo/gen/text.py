"""Pre-generated text for the generator: prose (English, Japanese, emoji), tool output, images.

Big payloads are slices of a few pools built once per process from a fixed seed, so a 100 MB fleet
costs string slicing, not per-character work, and the same seed always gives the same bytes.
"""
from __future__ import annotations

import base64
import json
import random
import struct
import zlib
from functools import lru_cache

_POOL_SEED = 20261121

_WORDS = (
    "the disk cron job session gateway agent memory check log error retry backup telegram topic "
    "deploy server config token model context file path update status report quota build test "
    "queue worker restart nginx docker volume cache index query schema migrate rollback latency "
    "review commit branch merge release note summary user request reply tool result output "
    "please could you also then after before when because while maybe actually done ok next"
).split()
_JAPANESE = [
    "ディスク使用量を確認してください。", "了解しました、すぐに対応します。", "ログを見たところエラーはありません。",
    "明日の会議の資料をまとめてください。", "サーバーの再起動が完了しました。", "バックアップは正常に終了しました。",
    "この件は後で確認します。", "ドコモのプロジェクトの進捗はどうですか？", "健康診断の予約を入れておきました。",
    "ウェブサイトの更新をお願いします。", "エラーの原因はメモリ不足のようです。", "ありがとうございます！",
]
_EMOJI = ["🚀", "✅", "🔥", "📦", "🙂", "⚠️", "🐛", "📈", "🧹", "💾", "🤖", "🎉"]
_LOG_LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
_CODE = [
    "def handle(request):\n    data = json.loads(request.body)\n    return respond(data[\"id\"], status=200)\n",
    "for path in sorted(root.rglob(\"*.jsonl\")):\n    print(path, path.stat().st_size)\n",
    "const res = await fetch(url, {method: \"POST\", body: JSON.stringify(payload)});\n",
    "SELECT id, updated_at FROM sessions WHERE updated_at < now() - interval '30 days';\n",
    "server {\n    listen 443 ssl;\n    server_name techsfree.example;\n    root /var/www/html;\n}\n",
]


def _prose(rng: random.Random, n_sentences: int) -> str:
    parts = []
    for _ in range(n_sentences):
        roll = rng.random()
        if roll < 0.22:
            parts.append(rng.choice(_JAPANESE))
        else:
            words = rng.choices(_WORDS, k=rng.randint(6, 18))
            sentence = " ".join(words).capitalize() + rng.choice([".", ".", "?", "!"])
            if roll > 0.9:
                sentence += " " + rng.choice(_EMOJI)
            parts.append(sentence)
        if rng.random() < 0.12:
            parts.append("\n\n")
    return " ".join(parts)


def _tool_output(rng: random.Random, n_lines: int) -> str:
    out = []
    for i in range(n_lines):
        roll = rng.random()
        if roll < 0.35:
            out.append(f"2026-11-{rng.randint(1, 20):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                       f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z {rng.choice(_LOG_LEVELS)} "
                       f"[{rng.choice(_WORDS)}] " + " ".join(rng.choices(_WORDS, k=rng.randint(4, 12))))
        elif roll < 0.55:
            out.append(f"-rw-r--r-- 1 linou linou {rng.randint(100, 9_999_999):>9} Nov {rng.randint(1, 20):2d} "
                       f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} {rng.choice(_WORDS)}_{i}.{rng.choice(['log', 'json', 'py', 'md'])}")
        elif roll < 0.7:
            out.append(f"{rng.randint(1, 999)}M\t/home/linou/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}")
        elif roll < 0.85:
            out.append(rng.choice(_CODE).rstrip("\n"))
        elif roll < 0.93:
            out.append(json.dumps({"id": rng.randint(1, 10**6), "status": rng.choice(_WORDS), "ok": rng.random() < 0.8}))
        else:
            out.append(rng.choice(_JAPANESE) + " " + rng.choice(_EMOJI))
    return "\n".join(out) + "\n"


class Pool:
    """A long string to cut payloads from, and how many JSON bytes one of its characters costs."""

    def __init__(self, text: str):
        self.text = text
        self.bytes_per_char = (len(json.dumps(text, ensure_ascii=False).encode()) - 2) / len(text)

    def take(self, rng: random.Random, n_bytes: int) -> str:
        """About `n_bytes` of JSON-encoded text, starting at a random place (wrapping around)."""
        if n_bytes <= 0:
            return ""
        n_chars = max(1, int(n_bytes / self.bytes_per_char))
        start = rng.randrange(len(self.text))
        end = start + n_chars
        if end <= len(self.text):
            return self.text[start:end]
        whole, rest = divmod(end - len(self.text), len(self.text))
        return self.text[start:] + self.text * whole + self.text[:rest]


@lru_cache(maxsize=None)
def pools() -> dict:
    """{"prose", "tool", "think"}: the three pools (built once per process)."""
    rng = random.Random(_POOL_SEED)
    return {
        "prose": Pool(_prose(rng, 3000)),
        "tool": Pool(_tool_output(rng, 9000)),
        "think": Pool(" ".join(_prose(rng, 1) for _ in range(1500))),
    }


def png_base64(rng: random.Random, n_bytes: int) -> str:
    """A valid PNG of noise whose base64 text is about `n_bytes` long (a screenshot stand-in)."""
    raw_target = max(64, n_bytes * 3 // 4 - 80)
    side = max(4, int((raw_target / 3) ** 0.5))
    row = 1 + side * 3
    noise = rng.randbytes(row * side)
    pixels = bytearray(noise)
    for y in range(side):
        pixels[y * row] = 0  # filter type "none" for every scanline
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(pixels), 0)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode("ascii")
