"""`morph train`: a tiny end-to-end run of every stage through the CLI, on a text the test writes itself."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from morph.cli import main
from morph.models.training.stats import (START_POSITIONS, make_label, marks_fired_on, relabel, word_families,
                                        word_stem)

WORDS = ("the river ran past old mill and the miller's daughter watched water turn wheel in evening lamps were "
         "lit along harbour sailors sang gulls quiet she said I shall not go to London tomorrow for weather is "
         "cold roads are bad Holmes lit his pipe Watson opened window fog drifted from Baker Street 1789 1865 "
         "liberty justice citizens nation people war").split()

TINY = ["--vocab", "300", "--layers", "2", "--width", "32", "--heads", "2", "--context", "32", "--batch-size", "4",
        "--grad-accum", "1", "--max-iters", "12", "--warmup-iters", "3", "--eval-interval", "6", "--eval-batches", "2",
        "--sae-expansion", "4", "--sae-k", "4", "--sae-batch", "128", "--sae-tokens", "2560", "--sae-minutes", "1",
        "--stats-tokens", "1500", "--eval-tokens", "1500", "--ce-tokens", "600", "--val-fraction", "0.15",
        "--eval-batch", "4", "--threads", "1"]


def write_corpus(folder: Path, n_docs: int = 24, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.txt", "b.txt"):
        lines = []
        for _ in range(n_docs // 2):
            for _ in range(rng.randint(3, 7)):
                lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))).capitalize() + ".")
            lines.append("<|endoftext|>")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_corpus(root / "corpus")
    out = root / "run"
    assert main(["train", "all", "--corpus", str(root / "corpus"), "--out", str(out), *TINY]) == 0
    return out


def test_all_stages_write_their_outputs(run_dir):
    for path in ("config.json", "train.log", "state.json", "tokenizer/tokenizer.json", "data/train.bin",
                 "data/val.bin", "lm/checkpoint.safetensors", "lm/final/config.json", "lm/final/model.safetensors",
                 "sae/final/cfg.json", "sae/final/sae_weights.safetensors", "sae/final/labels.json", "metrics.json",
                 "MODEL_CARD.md"):
        assert (run_dir / path).is_file(), path
    state = json.loads((run_dir / "state.json").read_text())
    assert set(state) >= {"tokenizer", "data", "lm", "sae", "stats", "eval", "card"}
    assert state["lm"]["iterations"] == 12
    assert state["lm"]["tokens_seen"] == 12 * 4 * 32
    assert "== card done" in (run_dir / "train.log").read_text()


def test_tokenizer_is_byte_level_bpe_with_eot_as_bos(run_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(run_dir / "lm" / "final"))
    assert tok.is_fast and len(tok) == 300
    assert tok.bos_token == tok.eos_token == "<|endoftext|>"
    text = "Café — naïve 😀 text\n\nnew paragraph"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: nothing is unknown


def test_lm_weights_are_fp16_and_load_through_load_lens(run_dir):
    from safetensors import safe_open

    from morph.models.lens import LensSpec, load_lens

    with safe_open(str(run_dir / "lm" / "final" / "model.safetensors"), "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.float16"}
    lens = load_lens(LensSpec(model=str(run_dir / "lm" / "final"), sae=str(run_dir / "sae" / "final"), device="cpu"))
    assert lens.hook.name == "blocks.1.hook_resid_pre" and lens.hook.centre is False
    assert lens.prepend_bos and lens.bos_token_id == lens.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert lens.d_sae == 128 and lens.d_model == 32


def test_sae_is_an_inference_topk_sae_in_sae_lens_format(run_dir):
    from sae_lens import SAE, TopKSAE

    sae = SAE.load_from_disk(str(run_dir / "sae" / "final"), device="cpu")
    assert isinstance(sae, TopKSAE) and sae.cfg.k == 4 and sae.cfg.d_sae == 128
    meta = sae.cfg.metadata
    assert meta.hook_name == "blocks.1.hook_resid_pre"
    assert meta.prepend_bos is True
    assert meta.model_class_name == "AutoModelForCausalLM"
    assert meta.context_size == 32 and meta.model_name == "morph-default"
    assert sae.cfg.normalize_activations == "none"  # the scaling was folded into the weights


def test_labels_cover_every_feature_in_the_editor_format(run_dir):
    labels = json.loads((run_dir / "sae" / "final" / "labels.json").read_text())
    assert labels["format"] == "morph-labels/2"
    assert isinstance(labels["n_tokens"], int) and labels["n_tokens"] >= 1000
    features = labels["features"]
    assert [f["id"] for f in features] == list(range(128))
    for f in features:
        assert set(f) == {"id", "label", "density", "mean_act", "max_act", "quantiles", "words", "contexts",
                          "top_tokens", "promoted", "says"}
        assert isinstance(f["label"], str) and f["label"].strip()
        assert 0.0 <= f["density"] <= 1.0
        assert len(f["top_tokens"]) <= 10 and len(f["promoted"]) <= 10 and f["promoted"]
        assert len(f["says"]) <= 10 and all(re.fullmatch(r"[A-Za-z]{3,}", w) for w in f["says"])
        assert all(isinstance(t, str) and isinstance(c, int) and c > 0 for t, c in f["top_tokens"])
        assert len(f["words"]) <= 10 and all(w.isalpha() or "'" in w for w, _, _ in f["words"])
        assert [s for _, s, _ in f["words"]] == sorted((s for _, s, _ in f["words"]), reverse=True)
        if f["density"] == 0:
            assert f["label"].startswith("(dead)") and not f["top_tokens"] and not f["contexts"]
        else:
            assert f["top_tokens"] and f["max_act"] >= f["mean_act"] > 0
            q = [f["quantiles"][k] for k in ("0.5", "0.9", "0.99")]
            assert 0 < q[0] <= q[1] <= q[2] <= f["max_act"]
            if f["words"]:
                assert f["label"] == " · ".join(word_families([w for w, _, _ in f["words"]])[:3])
    assert any(f["density"] > 0 for f in features)
    assert sum(bool(f["says"]) for f in features) > 64  # the tiny vocabulary has few whole words, but some
    start = labels["start_means"]  # each feature's mean at a text's first positions, shrunk toward its average
    assert start["runs"] > 0 and 0 < len(start["values"]) <= START_POSITIONS  # no more than the model's context
    assert all(len(row) == 128 and min(row) >= 0 for row in start["values"])
    # the most active feature's counts add up to no more than its active tokens
    busiest = max(features, key=lambda f: f["density"])
    assert sum(c for _, c in busiest["top_tokens"]) <= round(busiest["density"] * labels["n_tokens"]) + 1


def test_labels_hold_no_passage_of_the_corpus(run_dir):
    """The test corpus has no README, so no file allows quoting: no contexts at all; tokens are single tokens."""
    text = (run_dir / "sae" / "final" / "labels.json").read_text()
    labels = json.loads(text)
    for f in labels["features"]:
        assert f["contexts"] == []
        for tok in [t for t, _ in f["top_tokens"]] + f["promoted"]:
            assert len(tok) <= 24 and " " not in tok.strip()


def test_contexts_come_only_from_files_whose_readme_row_allows_quoting(run_dir, tmp_path):
    """With a README marking a.txt quotable and b.txt not, every context is a short span of a.txt."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    corpus = Path(json.loads((out / "config.json").read_text())["corpus"])
    quoted = tmp_path / "corpus"
    shutil.copytree(corpus, quoted)
    (quoted / "README.md").write_text("| file | what | snippets in labels |\n| --- | --- | --- |\n"
                                      "| a.txt | words | yes |\n| b.txt | words | no |\n")
    config = json.loads((out / "config.json").read_text())
    config["corpus"] = str(quoted)
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "data", "--out", str(out)]) == 0
    assert main(["train", "stats", "--out", str(out)]) == 0
    labels = json.loads((out / "sae" / "final" / "labels.json").read_text())
    a_text = " ".join((quoted / "a.txt").read_text().split())
    b_only = set((quoted / "b.txt").read_text().split()) - set((quoted / "a.txt").read_text().split())
    contexts = [c for f in labels["features"] for c in f["contexts"]]
    assert contexts
    for c in contexts:
        quote = " ".join((c["before"] + c["token"] + c["after"]).split())
        assert quote in a_text and not (set(quote.split()) & b_only)
        assert c["token"] and c["act"] > 0


def test_distinctive_words_weigh_against_common_words():
    """A feature firing on every 'the' and on each rarer 'storm' and 'rain' is named by those, never by 'the';
    'storm' (rarer, same firings) ranks before 'rain'."""
    import numpy as np

    from morph.models.training.stats import Collected, distinctive_words

    words = ["the", "storm", "rain"]
    n_tokens = 10_000
    word_freq = np.array([2000.0, 20.0, 24.0])
    keys = np.array([0 * 3 + 0, 0 * 3 + 1, 0 * 3 + 2])
    c = Collected(n_tokens, np.array([2040]), np.array([2040.0]), np.array([1.0], dtype=np.float32),
                  np.zeros((1, 2)), keys, np.array([2000.0, 20.0, 20.0]), np.array([2000, 20, 20]),
                  np.zeros((1, 1)), np.zeros((1, 1)), {})
    ranked = [w for w, _, _ in distinctive_words(c, words, word_freq)[0]]
    assert ranked == ["storm", "rain"]


def test_metrics_and_card(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("loss_clean", "perplexity", "loss_spliced", "loss_zero_ablation", "ce_loss_recovered", "tokens"):
        assert key in metrics["lm"]
    for key in ("l0", "fraction_variance_explained", "dead_fraction", "dead_features", "tokens"):
        assert key in metrics["sae"]
    assert 0 < metrics["sae"]["l0"] <= 4
    card = (run_dir / "MODEL_CARD.md").read_text()
    for needle in ("Tokens seen", "perplexity", "variance explained", "CE loss recovered", "dead features",
                   "morph train eval --out OUT", "morph train all --corpus"):
        assert needle in card, needle


def test_lm_resumes_from_its_checkpoint(run_dir, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    assert main(["train", "lm", "--out", str(out), "--max-iters", "18"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["lm"]["iterations"] == 18  # 12 done before, 6 more
    assert "resumed from" in (out / "train.log").read_text()
    assert json.loads((out / "config.json").read_text())["max_iters"] == 18


class _Planted:
    """Unpickling this writes a canary file: what a malicious pickle checkpoint would do."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (Path.write_text, (self.canary, "checkpoint code ran"))


def _lm_run_without_checkpoint(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    (out / "lm" / "checkpoint.safetensors").unlink()
    return out


def test_a_planted_pickle_checkpoint_runs_nothing(run_dir, tmp_path, capsys):
    import torch

    out = _lm_run_without_checkpoint(run_dir, tmp_path)
    canary = tmp_path / "canary.txt"
    torch.save({"model": {}, "payload": _Planted(canary)}, out / "lm" / "ckpt.pt")
    assert main(["train", "lm", "--out", str(out), "--max-iters", "18"]) == 2
    assert not canary.exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("morph: cannot resume from checkpoint") and "--fresh" in last


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_a_corrupt_checkpoint_is_one_line(run_dir, tmp_path, capsys, content):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    (out / "lm" / "checkpoint.safetensors").write_bytes(content)
    assert main(["train", "lm", "--out", str(out), "--max-iters", "18"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("morph: cannot resume from checkpoint") and "--fresh" in last


def test_a_checkpoint_of_the_earlier_format_is_resumed_with_the_weights_only_reader(run_dir, tmp_path):
    import torch

    from morph.models.training import checkpoint

    out = _lm_run_without_checkpoint(run_dir, tmp_path)
    current = checkpoint.load(run_dir / "lm" / "checkpoint.safetensors")
    torch.save({"model": current.model, "optimizer": current.optimizer, **current.state}, out / "lm" / "ckpt.pt")
    assert main(["train", "lm", "--out", str(out), "--max-iters", "18"]) == 0
    assert json.loads((out / "state.json").read_text())["lm"]["iterations"] == 18


def test_checkpoint_round_trip_keeps_every_tensor_and_value(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from morph.models.training import checkpoint

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    state = {"iter": 7, "rng": {"state": {"state": 2**100 + 1}}, "history": [{"val_loss": 1.5}]}
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save(path, checkpoint.Checkpoint(model.state_dict(), optimizer.state_dict(), state))
    back = checkpoint.load(path)
    assert back.state == state
    assert set(back.model) == set(model.state_dict())
    assert all(torch.equal(back.model[k], v) for k, v in model.state_dict().items())
    fresh = torch.optim.AdamW(model.parameters(), lr=5.0)
    fresh.load_state_dict(back.optimizer)
    original = optimizer.state_dict()
    assert fresh.state_dict()["param_groups"][0]["lr"] == 1e-3
    for index, values in original["state"].items():
        for name, value in values.items():
            assert torch.equal(fresh.state_dict()["state"][index][name], value), (index, name)
    assert not list(tmp_path.glob("*.tmp"))


def test_export_copies_the_artifacts(run_dir, tmp_path):
    from sae_lens import SAE

    from morph.models.lens import LensSpec, load_lens

    dest = tmp_path / "default"
    assert main(["train", "export", "--out", str(run_dir), "--dest", str(dest)]) == 0
    assert (dest / "MODEL_CARD.md").is_file() and (dest / "sae" / "labels.json").is_file()
    assert (dest / "model" / "tokenizer.json").is_file()
    SAE.load_from_disk(str(dest / "sae"))
    load_lens(LensSpec(model=str(dest / "model"), sae=str(dest / "sae"), device="cpu"))
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) < 40e6


def test_corpus_documents_and_split(tmp_path):
    from morph.models.training.config import TrainConfig
    from morph.models.training.data import read_documents, split_documents

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.txt").write_text("one\ntwo\n<|endoftext|>\nthree\n\n<|endoftext|>\n<|endoftext|>\nfour\n")
    (tmp_path / "c" / "notes.md").write_text("ignored")
    docs = read_documents(str(tmp_path / "c"))
    assert [d.split("\x00") for d in docs] == [["one", "two"], ["three"], ["four"]]
    train, val = split_documents(TrainConfig(corpus=str(tmp_path / "c"), val_fraction=0.3))
    assert len(train) + len(val) == 3 and val and train
    assert "one\n\ntwo" in train + val


def test_max_file_mb_caps_each_file_and_mixes_the_split(tmp_path):
    """--max-file-mb: a large file gives at most the cap, a small one all it has, and the held-out documents
    come from both (the capped file's documents are not all at the front of the shuffled list)."""
    from morph.models.training.config import TrainConfig
    from morph.models.training.data import split_sourced_documents

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "big.txt").write_text(("a" * 100 + "\n<|endoftext|>\n") * 200)  # 20,000 characters
    (tmp_path / "c" / "small.txt").write_text(("b" * 100 + "\n<|endoftext|>\n") * 30)  # 3,000
    train, val = split_sourced_documents(TrainConfig(corpus=str(tmp_path / "c"), max_file_mb=0.005, val_fraction=0.2))
    size = {name: sum(len(d) for source, d in train + val if source == name) for name in ("big.txt", "small.txt")}
    assert size == {"big.txt": 5000, "small.txt": 3000}
    assert {source for source, _ in val} == {"big.txt", "small.txt"}


def test_readable_tokens():
    from morph.models.training.stats import readable

    assert readable(" the") == "the"
    assert readable("\n") == "\\n"
    assert readable("\n\n") == "\\n\\n"
    assert readable(" ") == "␣"
    assert readable("\x00") == "\\x00"


@pytest.mark.parametrize("argv, message", [
    (["train", "all", "--out", "OUT", "--corpus", "/nonexistent/corpus"], "does not exist"),
    (["train", "bogus", "--out", "OUT"], "unknown stage"),
    (["train", "all", "--out", "OUT"], "--corpus"),
    (["train", "lm", "--out", "OUT"], "no tokenizer"),
    (["train", "all", "--out", "OUT", "--corpus", "C", "--sae-layer", "9"], "--sae-layer"),
])
def test_user_errors_are_one_line(argv, message, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("C", str(tmp_path)) if a in ("OUT", "C") else a
            for a in argv]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the log's stage header, if any
    assert last.startswith("morph: ") and message in last


def test_an_sae_on_a_model_morph_loads(tiny_dirs, tmp_path):
    """`morph train all --model FOLDER --hook H`: no tokenizer or LM stage; data with the model's tokenizer,
    an SAE at that hook, labels, metrics and a card; the SAE loads through SAE-Lens and Morph's lens."""
    from sae_lens import SAE

    from morph.features.engine import Engine
    from morph.models.lens import LensSpec, load_lens

    write_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    lm_only = {"--vocab", "--layers", "--width", "--heads"}
    pairs = list(zip(TINY[::2], TINY[1::2]))
    sae_options = [a for option, value in pairs if option not in lm_only for a in (option, value)]
    assert main(["train", "all", "--corpus", str(tmp_path / "corpus"), "--out", str(out), "--model",
                 str(tiny_dirs["model"]), "--hook", "blocks.2.hook_resid_pre", *sae_options]) == 0
    state = json.loads((out / "state.json").read_text())
    assert set(state) >= {"data", "sae", "stats", "eval", "card"} and not {"tokenizer", "lm"} & set(state)
    assert not (out / "lm").exists() and not (out / "tokenizer").exists()
    sae = SAE.load_from_disk(str(out / "sae" / "final"), device="cpu")
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_pre" and sae.cfg.d_in == 64
    assert sae.cfg.metadata.model_name == str(tiny_dirs["model"])
    lens = load_lens(LensSpec(model=str(tiny_dirs["model"]), sae=str(out / "sae" / "final"), device="cpu"))
    assert lens.d_sae == 4 * 64
    labels = json.loads((out / "sae" / "final" / "labels.json").read_text())
    assert labels["format"] == "morph-labels/2" and len(labels["features"]) == 256
    # `starts` renews the start means alone; the rest of the file stays as it was
    before = {k: v for k, v in labels.items() if k != "start_means"}
    (out / "sae" / "final" / "labels.json").write_text(json.dumps(before))
    assert main(["train", "starts", "--out", str(out)]) == 0
    labels = json.loads((out / "sae" / "final" / "labels.json").read_text())
    assert {k: v for k, v in labels.items() if k != "start_means"} == before
    positions = len(labels["start_means"]["values"])
    assert 0 < positions <= START_POSITIONS
    assert Engine(lens).labels.norms().start.shape == (positions, 256)
    card = (out / "MODEL_CARD.md").read_text()
    assert "variance explained" in card and f"--model {tiny_dirs['model']}" in card
    dest = tmp_path / "shipped"
    assert main(["train", "export", "--out", str(out), "--dest", str(dest)]) == 0
    assert (dest / "sae" / "labels.json").is_file() and not (dest / "model").exists()


def test_lm_stages_are_refused_for_a_loaded_model(tiny_dirs, tmp_path, capsys):
    assert main(["train", "lm", "--out", str(tmp_path / "run"), "--model", str(tiny_dirs["model"])]) == 2
    assert "trains Morph's own LM" in capsys.readouterr().err


def test_a_label_names_three_word_families_not_one_word_three_times():
    assert word_families(["play", "played", "playing", "game", "plays", "drawing"]) == ["play", "game", "drawing"]
    assert word_families(["peace", "peaceful", "silence", "calm"]) == ["peace", "silence", "calm"]
    assert word_families(["tried", "trying", "try", "effort"]) == ["tried", "effort"]
    assert word_families(["glass", "glasses", "business", "busy", "this", "is"]) == ["glass", "business", "busy", "this", "is"]
    assert word_stem("running") == word_stem("run") and word_stem("made") != word_stem("make")


def test_a_feature_that_fires_on_marks_is_labelled_by_them():
    """Punctuation, digits and line breaks holding half of a feature's firings or more lead its label, before two
    of its words; otherwise the label is its three words, and a relabelled document follows the rule."""
    marks = [[".", 50], [",", 30], ["\\n", 10], ["then", 20]]
    assert marks_fired_on(marks) == [".", ",", "⏎"]
    assert marks_fired_on([["storm", 9], [".", 2]]) == []
    # two tokens that read the same (one with a space before it) are one mark: "on “ “" said nothing twice
    assert marks_fired_on([["“", 50], ["“", 40], ['"', 30], ["content", 10]]) == ["“", '"']
    assert make_label(["confirm", "then", "special"], [], False, marks) == "on . , · confirm · then"
    assert make_label(["storm", "rain", "wind"], [], False, [["storm", 9], [".", 2]]) == "storm · rain · wind"
    assert make_label([], ["x", "y"], True, marks) == "(dead) → x, y"
    doc = {"features": [{"id": 0, "label": "old", "density": 0.1, "words": [["confirm", 0.1, 3], ["then", 0.1, 2]],
                         "top_tokens": marks, "promoted": ["a"]},
                        {"id": 1, "label": "old", "density": 0.0, "words": [], "top_tokens": [], "promoted": ["b"]}]}
    assert [f["label"] for f in relabel(doc)["features"]] == ["on . , · confirm · then", "(dead) → b"]
