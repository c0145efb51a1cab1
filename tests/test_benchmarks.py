"""The benchmark suite runs end to end in its quickest mode on the tiny test model and writes every figure.

No timing is asserted here (the figures of a smoke run on a random model mean nothing): only that each
benchmark ran and reported each of its figures with a value, a spread and, where there is one, a target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FIGURES = [
    # 1. keystroke latency
    *(f"keystroke_p{q}_{c}_ms" for c in ("off", "on") for q in (50, 95, 99)),
    "keystroke_p99_ratio", "keystroke_p50_stock_textarea_ms", "keystroke_p99_stock_textarea_ms",
    # 2. pause to highlight
    "debounce_ms",
    *(f"pause_to_highlight_{n}_{w}_ms" for w in ("end", "middle") for n in (500, 2000, 8000)),
    "pause_8000_vs_500_end", "pause_8000_vs_500_middle",
    # 3. incremental vs from scratch
    "incremental_vs_scratch", "incremental_ms",
    # 4. analysis overhead
    "analysis_vs_forward", "analysis_vs_truncated_forward", "analysis_tokens_per_s", "analysis_vs_peer", "edit_vs_peer",
    # 5. steering
    "steer_first_candidate_s", "steer_first_candidate_prepared_s", "steer_speed_ratio", "steer_top_raises_share",
    "steer_fluency_drop", *(f"steer_{m}_{what}" for m in ("hybrid", "prompt", "steer")
      for what in ("raises_share", "clean_share", "words_share", "fluency_change", "similarity", "score")),
    "steer_hybrid_lead",
    # 6. start-up
    "startup_first_paint_s", "startup_model_ready_s", "startup_first_analysis_s",
    # 7. memory
    "memory_peak_rss_mb",
    # 8. labels
    "topic_named", "features_specific",
    # 9. size
    *(f"large_{f}_{d}{u}" for d in ("line", "document")
      for f, u in (("open", "_s"), ("keystroke_p50", "_ms"), ("keystroke_p99", "_ms"), ("keystroke_p50_ratio", ""))),
    # 10. through a server
    "serve_vs_local_300", "serve_vs_local_900", "serve_900_vs_300", "serve_batched_prompts", "serve_shared_passes",
]
WITH_TARGET = {
    "keystroke_p50_off_ms", "keystroke_p50_on_ms", "keystroke_p99_ratio", "pause_8000_vs_500_end",
    "pause_8000_vs_500_middle", "analysis_vs_truncated_forward", "steer_first_candidate_s",
    "steer_first_candidate_prepared_s", "steer_speed_ratio", "steer_hybrid_lead", "steer_top_raises_share", "steer_fluency_drop",
    "startup_first_paint_s", "startup_model_ready_s", "memory_peak_rss_mb", "topic_named", "features_specific",
    "analysis_vs_peer",
    *(f"large_{f}_{d}{u}" for d in ("line", "document") for f, u in (("open", "_s"), ("keystroke_p50_ratio", ""))),
    "large_keystroke_p50_document_ms",
    *(f"pause_to_highlight_{n}_{w}_ms" for w in ("end", "middle") for n in (500, 2000, 8000)),
}


@pytest.mark.slow
def test_suite_smoke_run_reports_every_figure(tiny_dirs, tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, MORPH_CONFIG_DIR=str(tmp_path / "config"), MORPH_STATE_DIR=str(tmp_path / "state"),
               HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--no-default", "--model", str(tiny_dirs["model"]),
         "--sae", str(tiny_dirs["sae"]), "--out", str(out), "--markdown"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    [model] = payload["models"]
    assert model["errors"] == {}
    figures = {f["name"]: f for f in model["figures"]}
    missing = [name for name in FIGURES if name not in figures]
    assert not missing, missing
    for name in FIGURES:
        fig = figures[name]
        assert isinstance(fig["value"], (int, float)), name
        assert fig["lo"] is not None and fig["hi"] is not None and fig["spread"], name
        assert fig["n"] >= 1, name
        if name in WITH_TARGET:
            assert fig["target"] and fig["met"] in (True, False), name
    # the Markdown table for the README has a row per figure
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(FIGURES)


def test_a_pair_whose_words_no_feature_matches_counts_against_every_method(tiny_lens, monkeypatch):
    """Words that no feature matches, and that no one-token word of the vocabulary spells, can be measured by
    nothing: the method comparison counts that pair as a top that raises nothing and scores 0, for every
    method, instead of leaving it out (which would flatter the shares on a concept Morph cannot say)."""
    import benchmarks.steer as steer
    from benchmarks.common import Context

    text = "The kettle clicked off. The first grey light reached the window.\n"
    start = text.index("The first")
    pairs = [(text, start, len(text) - 1, "3"), (text, start, len(text) - 1, "qzxv")]  # a feature id; no word
    monkeypatch.setattr(steer, "steer_pairs", lambda n=None: pairs[:n])
    ctx = Context(mode="quick", model=None, sae=None, label="tiny", lens=tiny_lens, log=lambda _: None)
    figures = {f.name: f for f in steer.compare_methods(ctx, tiny_lens)}
    for method in ("hybrid", "prompt", "steer"):
        raised = figures[f"steer_{method}_raises_share"]
        assert raised.n == 2 and raised.details["refused"] == ["1: qzxv"] and raised.value <= 50.0
        assert figures[f"steer_{method}_score"].n == 2
        assert figures[f"steer_{method}_fluency_change"].n == 1  # measured on rewrites only
        assert figures[f"steer_{method}_words_share"].n == 2  # the second reading: the refused pair reads as nothing
    assert figures["steer_top_raises_share"].n == 2 and figures["steer_top_raises_share"].details["pairs"] == 2


def test_a_pair_whose_features_no_label_holds_the_words_goes_by_the_words_as_the_editor_does(tiny_lens, monkeypatch):
    """Where no chosen feature's label holds the words (concepts.unlabelled), the editor and `morph steer` rewrite
    by the words alone with hybrid or prompt, and so does the comparison: those two methods run the
    instruction alone, measured by the words; steer-only, which needs a feature, steers by the feature found."""
    import benchmarks.steer as steer
    import morph.features.concepts as concepts
    from benchmarks.common import Context
    from morph.features.steering import Steerer

    text = "The kettle clicked off. The first grey light reached the window.\n"
    start = text.index("The first")
    # " mill" is one token of the tiny model's 400, so the words can measure a rewrite
    monkeypatch.setattr(steer, "steer_pairs", lambda n=None: [(text, start, len(text) - 1, "mill")][:n])
    monkeypatch.setattr(concepts, "unlabelled", lambda words, matches: True)
    found = Steerer.concepts_for  # the tiny model's labels hold no real words: feature 3 stands for them
    monkeypatch.setattr(Steerer, "concepts_for", lambda self, words, *a, **kw: found(self, "3", *a, **kw))
    requests = []
    run = Steerer.run
    monkeypatch.setattr(Steerer, "run", lambda self, *a, **kw: requests.append(a[3]) or run(self, *a, **kw))
    logs: list[str] = []
    ctx = Context(mode="quick", model=None, sae=None, label="tiny", lens=tiny_lens, log=logs.append)
    figures = {f.name: f for f in steer.compare_methods(ctx, tiny_lens)}
    assert [(r.method, bool(r.features)) for r in requests] == [("hybrid", False), ("prompt", False), ("steer", True)]
    assert not logs, logs
    for method in ("hybrid", "prompt", "steer"):
        raised = figures[f"steer_{method}_raises_share"]
        assert raised.n == 1 and raised.details["refused"] == []
        assert raised.details["by_words"] == ([] if method == "steer" else ["0: mill"])
