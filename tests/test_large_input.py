"""`morph analyze` on long files, through the real entry point: memory follows the window analysed, not the file
(peak resident memory of the process, measured), the windows together report the whole file, and bad input
of every kind (missing, a folder, a FIFO, binary, too large, out of memory) is one line and exit 2."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from morph.cli import main
from morph.features.analysis import find_paragraphs

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the river ran past the old mill and the miller's daughter watched the water turn the wheel while "
         "lamps were lit along the harbour").split()

# Runs a command and prints its peak resident memory (KB) and exit code. Started fresh, so the child's peak
# starts from this small process, not from pytest's (Linux carries a process's peak across fork and exec).
PEAK = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    code = subprocess.run(sys.argv[3:], stdout=out, stderr=err).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def prose(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    paragraphs, total = [], 0
    while total < n_chars:
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18))).capitalize() + "."
                     for _ in range(rng.randint(1, 6))]
        paragraphs.append(" ".join(sentences))
        total += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs) + "\n"


def analyze(tmp_path: Path, file: Path, lens_args: list[str], *extra: str) -> tuple[int, int, str, str]:
    """(peak RSS in MB, exit code, stdout, stderr) of `python -m morph analyze FILE --json ...`."""
    out, err = tmp_path / f"{file.name}.out", tmp_path / f"{file.name}.err"
    command = [sys.executable, "-m", "morph", "analyze", str(file), "--json", *extra, *lens_args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MORPH_CONFIG_DIR": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-c", PEAK, str(out), str(err), *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=True)
    peak_kb, code = map(int, done.stdout.split())
    return peak_kb // 1024, code, out.read_text(), err.read_text()


@pytest.fixture
def lens_args(tiny_dirs) -> list[str]:
    return ["--model", str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"]), "--device", "cpu"]


def test_memory_follows_the_window_not_the_file(tmp_path, lens_args):
    """A file 30 windows long peaks within a few tens of MB of a file of one window (measured: +27 MB when
    written; +35 MB before and +66 MB after the analyzer's batches dropped their attention mask on 2026-12-03,
    which lowered the one-window file's peak by 24 MB (430 -> 406 MB) and left the long file's about where it
    was, 465 -> 472 MB). Analysed in one window, as every file was before, it peaks ~100 MB higher than that,
    and the old report, every token's at once, higher still (a 0.5 MB file: 1.1 GB)."""
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(prose(3_000, seed=1))
    large.write_text(prose(120_000, seed=2))
    small_mb, code, _, err = analyze(tmp_path, small, lens_args, "--window", "4000")
    assert code == 0, err
    large_mb, code, out, err = analyze(tmp_path, large, lens_args, "--window", "4000")
    assert code == 0, err
    assert large_mb - small_mb < 90, (small_mb, large_mb)
    report = json.loads(out)
    text = large.read_text()
    assert "".join(token["text"] for token in report["tokens"]) == text  # every character once, in order
    assert [(p["start"], p["end"]) for p in report["paragraphs"]] == find_paragraphs(text)


def test_windows_report_what_one_window_reports(tmp_path, lens_args, capsys):
    """The same tokens and paragraphs, a window at a time or all at once; the features differ only where a
    window's first segment was cut otherwise than in the whole text (morph.features.windows): here under 1
    token in 20."""
    path = tmp_path / "doc.txt"
    path.write_text(prose(12_000, seed=3).replace("\n\n", "\r\n\r\n", 5))
    reports = []
    for window in ("2000", "1000000"):
        assert main(["analyze", str(path), "--json", "--window", window, *lens_args]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    windowed, whole = reports
    assert [(t["start"], t["end"], t["text"]) for t in windowed["tokens"]] == \
        [(t["start"], t["end"], t["text"]) for t in whole["tokens"]]
    assert [(p["start"], p["end"], p["n_tokens"]) for p in windowed["paragraphs"]] == \
        [(p["start"], p["end"], p["n_tokens"]) for p in whole["paragraphs"]]
    differ = sum(a["top"] != b["top"] for a, b in zip(windowed["tokens"], whole["tokens"]))
    assert differ < len(whole["tokens"]) / 20


def test_a_paragraph_longer_than_a_window_is_reported_in_parts(tmp_path, lens_args, capsys):
    path = tmp_path / "line.txt"
    text = prose(9_000, seed=4).replace("\n", " ").strip() + "\n"  # one line, no paragraph break
    path.write_text(text)
    assert main(["analyze", str(path), "--json", "--window", "2000", *lens_args]) == 0
    report = json.loads(capsys.readouterr().out)
    parts = [(p["start"], p["end"]) for p in report["paragraphs"]]
    assert len(parts) >= 5 and parts[0][0] == 0 and parts[-1][1] == len(text) - 1
    assert all(a[1] == b[0] or text[a[1]:b[0]].isspace() for a, b in zip(parts, parts[1:]))
    assert "".join(token["text"] for token in report["tokens"]) == text


def test_an_empty_file_is_an_empty_report(tmp_path, lens_args, capsys):
    path = tmp_path / "empty.txt"
    path.write_text("")
    assert main(["analyze", str(path), "--json", *lens_args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] == [] and report["paragraphs"] == []


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _over_the_limit(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(51 * 1024 * 1024)  # sparse: 51 MB without writing them
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "folder"),
    (_fifo, "not a regular file"),
    (_over_the_limit, "over the 50.0 MB limit"),
    (lambda p: (p.write_bytes(b"text\x00\x01" * 100), p)[1], "binary"),
])
def test_bad_input_is_one_line(tmp_path, lens_args, make, message):
    path = make(tmp_path / "input.txt")
    done = subprocess.run([sys.executable, "-m", "morph", "analyze", str(path), *lens_args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_running_out_of_memory_is_one_line(tmp_path, lens_args, capsys, monkeypatch):
    from morph.features.engine import Engine

    def no_memory(self, text, window_chars=None, context_chars=None):
        raise MemoryError
        yield  # a generator, as the real one

    monkeypatch.setattr(Engine, "analyze_windows", no_memory)
    path = tmp_path / "doc.txt"
    path.write_text(prose(500))
    assert main(["analyze", str(path), *lens_args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not enough memory" in err


def test_a_window_too_small_is_refused(tmp_path, lens_args, capsys):
    path = tmp_path / "doc.txt"
    path.write_text("text\n")
    assert main(["analyze", str(path), "--window", "10", *lens_args]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("make, message", [
    (_fifo, "not a regular file"),
    (_over_the_limit, "over the 50.0 MB limit"),
    pytest.param(lambda p: (p.write_text("secret"), p.chmod(0), p)[2], "permission denied",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")),
])
def test_the_editor_refuses_bad_files_with_one_line(dirs, capsys, make, message):
    path = make(dirs / "input.md")
    assert main([str(path), "--no-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("morph: ") and err.count("\n") == 1 and message in err
