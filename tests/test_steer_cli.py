"""`morph steer` through the real entry point, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from morph.cli import main
from morph.commands.steer import print_report

TEXT = "The river ran past the old mill.\nIn the evening the lamps were lit along the harbour. Sailors sang.\n"
SPAN = "In the evening the lamps were lit along the harbour."
START = TEXT.index(SPAN)
END = START + len(SPAN)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("steer") / "doc.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lens_args(tiny_dirs) -> list[str]:
    return ["--model", str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"]), "--device", "cpu"]


def steer(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["steer", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output(doc, lens_args, capsys):
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "5", "-n", "3",
                            "--seed", "2", "--json", *lens_args], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["feature"] == 5 and report["mode"] == "toward"
    assert report["model"] and report["sae"]
    assert report["original"]["text"] == SPAN
    assert isinstance(report["original"]["target_activation"], float)
    # on the tiny model nothing passes: a second round of three more (`--one-round` stops after the first)
    assert report["rounds"] == 2 and [c["rank"] for c in report["candidates"]] == [1, 2, 3, 4, 5, 6]
    for c in report["candidates"]:
        assert {"text", "target_activation", "fluency", "similarity", "rank", "raises_concept"} <= set(c)
        assert isinstance(c["raises_concept"], bool)
    code, again, _ = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "5", "-n", "3",
                            "--seed", "2", "--json", *lens_args], capsys)
    assert [c["text"] for c in json.loads(again)["candidates"]] == [c["text"] for c in report["candidates"]]
    code, once, _ = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "5", "-n", "3",
                           "--seed", "2", "--one-round", "--json", *lens_args], capsys)
    assert json.loads(once)["rounds"] == 1 and len(json.loads(once)["candidates"]) == 3
    code, out, _ = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "5", "-n", "3",
                          "--seed", "2", *lens_args], capsys)
    assert code == 0 and "6 candidates in two rounds (none of the first 3 moved the concept unmarked)" in " ".join(
        out.split())
    # a base model's second round draws again; an instruct model's keeps the sentence and adds to it, and says so
    assert not any(c["adds"] for c in report["candidates"])
    report["candidates"][-1]["adds"] = True
    print_report(report)
    assert "unmarked: the second kept the sentence and added to it)" in " ".join(capsys.readouterr().out.split())


def test_table_output_concept_and_modes(doc, lens_args, capsys, monkeypatch):
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--concept", "3", "-n", "2",
                            "--suppress", *lens_args], capsys)
    assert code == 0, err
    assert "suppressing:" in out and "feature 3" in out and "orig" in out and "candidates in" in out
    # 80 columns: each candidate's text on its own lines, the score and its parts below it, no table
    assert "┃" not in out and out.count("score ") >= 2 and "  1  " in out and "  2  " in out
    monkeypatch.setenv("COLUMNS", "140")  # wide enough for the table
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--concept", "3", "-n", "2",
                            "--suppress", *lens_args], capsys)
    assert code == 0, err
    assert "┃ rank" in out and "orig" in out
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "3", "-n", "1",
                            "--away", "--strength", "strong", "--json", *lens_args], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "away" and report["strength"] == -8.0


def test_concept_in_words_like_this_and_methods(doc, lens_args, capsys):
    """Words map to features with both scores and why; --like is "more like this"; a base model runs the
    continuation method, and the instruct methods say they need a chat template."""
    from morph.features.labels import load_labels
    from morph.models.lens import LensSpec, load_lens

    lens = load_lens(LensSpec(model=lens_args[1], sae=lens_args[3], device="cpu"))
    labels = load_labels(lens)
    word = next(w for w in (labels.label(i).split(" · ")[0].strip() for i in range(lens.d_sae))
                if w.isalpha() and len(w) >= 3)
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--concept", f"more {word}",
                            "-n", "2", "--features", "2", "--json", *lens_args], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "continuation" and report["concept"] == f"more {word}"
    assert report["note"] is None  # a label holds the word
    assert report["auto_strength"] and report["strength"] is None and len(report["ladder"]) == 2 * report["rounds"]
    assert 1 <= len(report["features"]) <= 2
    for f in report["features"]:
        assert {"id", "label", "label_score", "output_score", "why"} <= set(f)
    for c in report["candidates"]:
        assert set(c["parts"]) == {"concept", "fluency", "meaning", "length"}
        assert isinstance(c["marks"], list) and 0 <= c["score"] <= 1
        assert c["strength"] in report["ladder"]
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--like",
                            "Ships and gulls on the grey sea.", "-n", "1", *lens_args], capsys)
    assert code == 0, err
    assert "fires more on the example" in " ".join(out.split())
    code, out, err = steer([str(doc), "--start", str(START), "--end", str(END), "--feature", "3",
                            "--method", "hybrid", *lens_args], capsys)
    assert code == 2 and "chat template" in err and err.count("\n") == 1


@pytest.mark.parametrize("extra,message", [
    (["--start", "5", "--end", "5", "--feature", "1"], "empty"),
    (["--start", "0", "--end", "100000", "--feature", "1"], "outside"),
    (["--start", "0", "--end", "5", "--feature", "100000"], "does not exist"),
    (["--start", "0", "--end", "5", "--feature", "-3"], "does not exist"),
    (["--start", "0", "--end", "5", "--concept", "qqqzzzxxyy"], "no feature matches"),
    (["--start", "0", "--end", "5", "--concept", "the more"], "no content word"),
    (["--start", "0", "--end", "5", "--like", "  "], "empty"),
    (["--start", "0", "--end", "5", "--feature", "1", "--features", "0"], "--features"),
    (["--start", "0", "--end", "5", "--feature", "1", "--strength", "huge"], "strength"),
    (["--start", "0", "--end", "5", "--feature", "1", "-n", "0"], "-n"),
    (["--start", "0", "--end", "5"], "--feature"),
    (["--start", "0", "--end", "5", "--feature", "3", "--by-words"], "--by-words needs --concept"),
    (["--start", "0", "--end", "5", "--concept", "mill", "--by-words"], "needs an instruct model"),
])
def test_bad_requests_exit_2_with_one_line(doc, lens_args, capsys, extra, message):
    code = None
    try:
        code, out, err = steer([str(doc), *extra, *lens_args], capsys)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
        out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("morph: ") and message in err
    assert out == ""


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    (b"\x00\x01\x02binary", "binary"),
    (b"caf\xe9 au lait", "UTF-8"),
])
def test_bad_files_exit_2(tmp_path, lens_args, capsys, content, message):
    path = tmp_path / "doc.txt"
    if content is not None:
        path.write_bytes(content)
    code, out, err = steer([str(path), "--start", "0", "--end", "3", "--feature", "1", *lens_args], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err and out == ""


def test_subprocess_json(doc, lens_args):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "morph", "steer", str(doc), "--start", str(START), "--end", str(END),
         "--feature", "2", "-n", "2", "--json", *lens_args],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["candidates"]) == 2 * report["rounds"] and report["feature"] == 2


@pytest.mark.slow
def test_words_no_feature_matches_are_rewritten_by_themselves_on_the_default(tmp_path, capsys):
    """On the shipped default no feature matches "scarier": `morph steer` says so and rewrites by the words
    alone (the instruction, and with hybrid, the default, the words' own direction swept over the candidates;
    prompt: the instruction alone), each candidate measured by how much more the model expects the words after
    it; steering by features refuses them with the one line that says what to try."""
    from morph.models.presets import default_available

    if not default_available():
        pytest.skip("the default model is not installed")
    path = tmp_path / "night.txt"
    path.write_text("We walked home along the river after dinner. The path was dark and the trees were quiet.\n",
                    encoding="utf-8")
    start = path.read_text().index("The path")
    span_text = "The path was dark and the trees were quiet."
    span = ["--start", str(start), "--end", str(start + len(span_text))]
    code, out, err = steer([str(path), *span, "--concept", "scarier", "-n", "3", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["by_words"] and report["method"] == "hybrid" and report["feature"] is None
    assert report["auto_strength"] and report["ladder"][:3] == [0.0, 1.5, 4.0]
    assert sorted(c["strength"] for c in report["candidates"]) == sorted(report["ladder"])
    assert report["features"] == [] and "no feature matches 'scarier'" in report["note"]
    assert "scarier" in report["instruction"] and len(report["candidates"]) == 3 * report["rounds"]
    for c in report["candidates"]:
        assert c["raises_concept"] == ("concept did not move" not in c["marks"])
        assert not c["adds"] or c["text"].startswith(span_text[:-1])  # a second round's keep the sentence
    code, out, err = steer([str(path), *span, "--concept", "scarier", "--method", "steer", "-n", "1"], capsys)
    assert code == 2 and "no feature matches 'scarier'" in err and err.count("\n") == 1
    # words whose features no label shows them on ("kinder": they only fire on the word) go alone too, and
    # steering by those features says why they are unlabelled
    code, out, err = steer([str(path), *span, "--concept", "kinder", "-n", "1", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["by_words"] and report["features"] == [] and report["method"] == "hybrid"
    assert report["note"].startswith("no feature's label holds 'kinder': rewritten by your words")
    code, out, err = steer([str(path), *span, "--concept", "kinder", "--method", "prompt", "-n", "2", "--strength",
                            "2", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)  # the instruction alone: nothing steered
    assert report["method"] == "prompt" and report["ladder"] == [] and report["strength"] is None
    assert all(c["strength"] is None for c in report["candidates"])
    code, out, err = steer([str(path), *span, "--concept", "kinder", "--method", "steer", "-n", "1", "--json"],
                           capsys)
    assert code == 0, err
    report = json.loads(out)
    assert not report["by_words"] and report["features"] and "words alone are the default" in report["note"]
    # words features do match go alone when asked (--by-words)
    code, out, err = steer([str(path), *span, "--concept", "calmer", "--by-words", "-n", "2", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["by_words"] and report["features"] == [] and report["note"].startswith("rewritten by your words")
    assert all(c["words_gain"] == c["gain"] for c in report["candidates"])
