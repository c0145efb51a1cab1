"""`morph analyze`, `morph models`, `morph features` through the real entry point; bad input is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from morph.cli import main

TEXT = "The river ran past the old mill.\r\nIn the evening the lamps were lit.\r\n\r\nMr. Holmes lit his pipe.\r\n"


@pytest.fixture
def lens_args(tiny_dirs) -> list[str]:
    return ["--model", str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"]), "--device", "cpu"]


def run_main(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_json_offsets_are_file_characters(tmp_path, lens_args, capsys):
    path = tmp_path / "doc.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())  # a BOM and CRLF line endings
    code, out, err = run_main(["analyze", str(path), "--json", "--top", "3", *lens_args], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"model", "sae", "paragraphs", "tokens"}
    file_text = path.read_bytes().decode("utf-8")  # BOM kept as a character, CRLF as is
    for token in report["tokens"]:
        assert file_text[token["start"]:token["end"]] == token["text"]
        assert len(token["top"]) <= 3 and all(isinstance(f, int) and act > 0 for f, act in token["top"])
    assert len(report["paragraphs"]) == 2
    first = report["paragraphs"][0]
    assert file_text[first["start"]:first["end"]].startswith("The river")
    assert set(first) >= {"start", "end", "features", "explained_variance"}
    assert all(set(f) == {"id", "label", "score", "max", "mean"} and f["label"] for f in first["features"])


@pytest.mark.parametrize("top", [1, 2, 5])
def test_analyze_top_k_gives_at_most_k_features(tmp_path, lens_args, capsys, top):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    code, out, err = run_main(["analyze", str(path), "--json", "--top", str(top), *lens_args], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert all(1 <= len(p["features"]) <= top for p in report["paragraphs"])
    assert all(len(t["top"]) <= top for t in report["tokens"])
    if top == 1:  # the single feature is the paragraph's strongest
        code, out, _ = run_main(["analyze", str(path), "--json", "--top", "5", *lens_args], capsys)
        wider = json.loads(out)
        assert [p["features"][0]["id"] for p in report["paragraphs"]] == [
            max(p["features"], key=lambda f: f["max"])["id"] for p in wider["paragraphs"]]


def test_analyze_table(tmp_path, lens_args, capsys):
    path = tmp_path / "doc.md"
    path.write_text(TEXT)
    code, out, _ = run_main(["analyze", str(path), "--tokens", *lens_args], capsys)
    assert code == 0
    assert "¶1" in out and "variance explained" in out and "tokens" in out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"\x00\x01binary", "binary"),
    (b"caf\xe9", "not valid UTF-8"),
])
def test_analyze_bad_files(tmp_path, lens_args, capsys, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_main(["analyze", str(path), *lens_args], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_analyze_bad_model_and_sae(tmp_path, tiny_dirs, capsys):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    code, _, err = run_main(["analyze", str(path), "--model", str(tmp_path / "nope"), "--sae", str(tiny_dirs["sae"])], capsys)
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    code, _, err = run_main(["analyze", str(path), "--model", str(tiny_dirs["model"]), "--sae", "not-a-release:x"], capsys)
    assert code == 2 and err.count("\n") == 1
    code, _, err = run_main(["analyze", str(path), "--top", "0", "--model", str(tiny_dirs["model"]),
                             "--sae", str(tiny_dirs["sae"])], capsys)
    assert code == 2 and "--top" in err


def test_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--nonsense"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_models_json_lists_default_and_presets(capsys):
    code, out, _ = run_main(["models", "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    names = [row["name"] for row in rows]
    assert names[0] == "default" and {"gpt2-small", "pythia-70m", "gemma-2-2b"} <= set(names)
    for row in rows:
        assert {"name", "model", "sae", "available"} <= set(row)
    default = rows[0]
    assert default["available"] is True
    # the model: a folder (converted or cached) or the GGUF file still to convert; the SAE ships with Morph
    assert os.path.exists(default["path"]) and default["source"] in ("converted", "hub-cache", "gguf")
    assert os.path.isfile(os.path.join(default["sae_path"], "cfg.json"))
    assert all(not row["available"] for row in rows[1:])  # nothing downloaded here


def test_features_search_and_detail(lens_args, capsys):
    code, out, _ = run_main(["features", "--id", "5", "--json", *lens_args], capsys)
    assert code == 0
    (feature,) = json.loads(out)
    assert feature["id"] == 5 and feature["label"] and feature["promoted"] and "says" in feature
    code, out, _ = run_main(["features", "--id", "5", *lens_args], capsys)
    assert code == 0 and "promotes (logit lens): " + " ".join(feature["promoted"][:3]) in " ".join(out.split())
    assert ("steered, the model says: " in out) == bool(feature["says"])
    word = feature["label"].split(" · ")[0]
    code, out, _ = run_main(["features", word, "--json", "--limit", "50", *lens_args], capsys)
    found = json.loads(out)
    assert code == 0 and found
    assert all(word.lower() in f["label"].lower() for f in found[:5])
    code, _, err = run_main(["features", "--id", "99999", *lens_args], capsys)
    assert code == 2 and "does not exist" in err


def test_real_subprocess_analyze_and_python_m(tmp_path, tiny_dirs):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "morph", "analyze", str(path), "--json", "--model",
                           str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tokens"]
    done = subprocess.run([sys.executable, "-m", "morph", "analyze", str(tmp_path / "missing.txt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
