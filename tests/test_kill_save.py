"""A writer killed mid-save never finds a torn file: it is always exactly the old or the new text."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from morph.textio import LoadedText, encode_text

REPO = Path(__file__).resolve().parents[1]

# Two contents of different lengths and patterns, so that any mix of them is detectable.
TEXT_A = "".join(f"line {i} of the first version, with some words\n" for i in range(30_000))
TEXT_B = "".join(f"B{i}: the second, shorter version\n" for i in range(20_000))

CHILD = r"""
import sys
from pathlib import Path
from morph.textio import LoadedText, write_document
from tests.test_kill_save import TEXT_A, TEXT_B
path = Path(sys.argv[1])
like = LoadedText(path=path, text="", newline="\r\n", had_bom=True)
write_document(path, TEXT_A, like)
print("ready", flush=True)
n = 0
while True:
    write_document(path, TEXT_B if n % 2 == 0 else TEXT_A, like)
    n += 1
"""


def test_sigkill_during_saves_never_tears_the_file(tmp_path: Path) -> None:
    target = tmp_path / "novel.txt"
    like = LoadedText(path=target, text="", newline="\r\n", had_bom=True)
    allowed = {encode_text(TEXT_A, like), encode_text(TEXT_B, like)}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(1234)
    kills = 0
    seen: set[bytes] = set()
    deadline = time.monotonic() + 20
    while kills < 40 and time.monotonic() < deadline:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(target)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.04))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        data = target.read_bytes()
        assert data in allowed, f"torn file after kill {kills}: {len(data)} bytes"
        seen.add(data)
    assert kills >= 20
    assert len(seen) == 2, "the kills never landed between two saves"
    # Leftover temporary files from killed saves are hidden and never replace the document.
    for p in tmp_path.iterdir():
        assert p == target or (p.name.startswith(".novel.txt.") and p.name.endswith(".morph-tmp"))
    # Each save removes those of the saves killed before it: at most the last one's is left.
    assert len([p for p in tmp_path.iterdir() if p != target]) <= 1
