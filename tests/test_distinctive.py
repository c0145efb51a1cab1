"""Ranking by what is distinctive, end to end on the tiny model with a morph-labels/2 file beside its SAE:
the panel's lists, the highlight legend, and the feature details with corpus contexts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.panel import FeatureList
from morph.features.engine import Engine
from morph.features.ranking import FeatureNorms, distinctiveness
from tests.pilot import wait_for

TEXT = ("The river ran past the old mill, and the miller's daughter watched the water.\n\n"
        "In the evening the lamps were lit along the harbour. Sailors sang.\n")


def test_a_feature_on_every_token_scores_zero_and_a_rare_one_stands_out():
    norms = FeatureNorms(density=np.array([0.9, 0.001], dtype=np.float32), mean=np.array([2.0, 3.0], dtype=np.float32),
                         typical=np.array([4.0, 4.0], dtype=np.float32))
    n = 50
    common = 0.9 * n * 2.0  # exactly the mass its density predicts
    rare = 3 * 3.0  # three firings at a typical strength
    scores = distinctiveness(np.array([0, 1]), np.array([common, rare]), n, norms, np.ones(2))
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and scores[1] > 2


def test_a_feature_that_fires_at_a_texts_start_is_expected_there():
    """start_means: feature 0 fires at a text's first positions whatever the words (5.0 there, 0.05 on an
    average token); feature 1 fires less there than on average, which must not make it stand out."""
    start = np.array([[5.0, 0.0], [2.0, 0.0], [0.5, 0.0]], dtype=np.float32)
    norms = FeatureNorms(density=np.array([0.01, 0.1], dtype=np.float32), mean=np.array([5.0, 2.0], dtype=np.float32),
                         typical=np.array([8.0, 4.0], dtype=np.float32), start=start)
    ids = np.array([0, 1])
    assert norms.expected_mass(ids, 0, 2).tolist() == pytest.approx([7.0, 0.4])  # feature 1: never below average
    assert norms.expected_mass(ids, 2, 3).tolist() == pytest.approx([0.6, 0.6])  # past the rows: average tokens
    assert norms.expected_mass(ids, None, 2).tolist() == pytest.approx([0.1, 0.4])
    mass = np.array([5.0, 0.0])  # what it does at the first token
    at_start = distinctiveness(ids, mass, 1, norms, np.ones(2), first=0)
    later = distinctiveness(ids, mass, 1, norms, np.ones(2), first=40)
    assert at_start[0] == pytest.approx(0.0, abs=1e-6) and later[0] > 2


def test_a_feature_of_function_words_is_weighed_below_one_of_content_words():
    """Two features as unusual for a span, one whose distinctive words are function words ("into · upon ·
    over"), one of content words ("rain · weather · wind"): the first keeps GRAMMAR_FLOOR of its score; a
    feature without words counts as grammar; without content shares nothing is weighed."""
    from morph.features.ranking import GRAMMAR_FLOOR, content_share

    assert content_share(["into", "upon", "over"]) == 0 and content_share(["rain", "weather", "wind"]) == 1
    assert content_share(["rain", "into", "Weather", "of"]) == 0.5 and content_share([]) == 0
    same = dict(density=np.full(3, 0.001, dtype=np.float32), mean=np.full(3, 3.0, dtype=np.float32),
                typical=np.full(3, 4.0, dtype=np.float32))
    ids, mass = np.arange(3), np.full(3, 9.0)
    plain = distinctiveness(ids, mass, 20, FeatureNorms(**same), np.ones(3))
    weighed = distinctiveness(ids, mass, 20, FeatureNorms(**same, content=np.array([0.0, 1.0, 0.5])), np.ones(3))
    assert weighed.tolist() == pytest.approx((plain * [GRAMMAR_FLOOR, 1.0, (1 + GRAMMAR_FLOOR) / 2]).tolist())


@pytest.fixture
def labelled_lens(tiny_dirs, tmp_path):
    """The tiny lens with a labels file: feature density measured on TEXT itself, except that the features
    firing on the most tokens are declared to fire everywhere (density 1)."""
    from morph.models.lens import LensSpec, load_lens

    sae = tmp_path / "sae"
    shutil.copytree(tiny_dirs["sae"], sae)
    lens = load_lens(LensSpec(model=str(tiny_dirs["model"]), sae=str(sae), device="cpu"))
    analysis = Engine(lens).analyze(TEXT)
    counts = np.bincount(analysis.indices, minlength=lens.d_sae)
    common = set(np.argsort(-counts)[:3].tolist())
    features = []
    for f in range(lens.d_sae):
        values = analysis.feature_values(f)
        active = values[values > 0]
        density = 1.0 if f in common else max(len(active), 1) / (10 * analysis.n_tokens)
        typical = float(active.max()) if len(active) else 1.0
        features.append({"id": f, "label": f"word{f} · other{f}", "density": density,
                         "mean_act": float(active.mean()) if len(active) else 1.0, "max_act": typical,
                         "quantiles": {"0.5": typical / 2, "0.9": typical * 0.9, "0.99": typical},
                         "words": [[f"word{f}", 0.5, 4], [f"other{f}", 0.1, 3]],
                         "contexts": [{"before": "the old ", "token": "mill", "after": " by the river", "act": typical}],
                         "top_tokens": [["mill", 3]], "promoted": ["water"]})
    (sae / "labels.json").write_text(json.dumps({"format": "morph-labels/2", "n_tokens": 1000,
                                                 "quantiles": [0.5, 0.9, 0.99], "features": features}))
    return load_lens(LensSpec(model=str(tiny_dirs["model"]), sae=str(sae), device="cpu")), common


def test_lists_leave_out_features_that_fire_everywhere(labelled_lens):
    lens, common = labelled_lens
    engine = Engine(lens)
    analysis = engine.analyze(TEXT)
    summary = analysis.summary(0, 8)
    assert summary.features and not {f.id for f in summary.features} & common
    scores = [f.score for f in summary.features]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    token = analysis.token_features(3, 8, distinctive=True)
    assert not {f for f, _ in token} & common
    assert [s for _, s in token] == sorted((s for _, s in token), reverse=True)  # shown as ranked: by score
    raw = analysis.token_features(3, 64)  # the JSON's per-token lists stay by activation
    assert [a for _, a in raw] == sorted((a for _, a in raw), reverse=True)


async def test_legend_lists_the_highlighted_features_and_details_show_corpus_contexts(labelled_lens, tmp_path,
                                                                                       monkeypatch):
    from morph.editor.feature_screen import FeatureDetailScreen
    from morph.features.highlights import MAX_COLOURS

    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    lens, common = labelled_lens
    app = MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: Engine(lens))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: app.analysis is not None and app.analysis.stats.complete
                       and app.status.state.state == "idle")
        legend = app.query_one("#legend-features", FeatureList)
        await wait_for(pilot, lambda: bool(legend.rows))
        assert 1 <= len(legend.rows) <= MAX_COLOURS
        assert all(row.colour for row in legend.rows) and not {r.feature for r in legend.rows} & common
        coloured = {int(f) for f in app.view.overlay.features.tolist()}
        assert coloured <= {row.feature for row in legend.rows}
        for section in ("token", "paragraph"):  # every list shows the number it is ranked by
            rows = app.query_one(f"#{section}-features", FeatureList).rows
            assert rows and [r.value for r in rows] == sorted((r.value for r in rows), reverse=True)
        legend.focus()
        legend.highlighted = 0
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen))
        facts = str(app.screen.query_one("#facts").render())
        contexts = str(app.screen.query_one("#contexts").render())
        assert "fires on words: word" in facts and "typical max" in facts
        assert "mill" in contexts and "the old" in contexts
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FeatureDetailScreen))


async def test_a_first_conversion_is_shown_in_the_status_bar(tiny_lens, tmp_path, monkeypatch):
    """While the engine factory reports progress (the default's first conversion), the status bar says so."""
    import threading

    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    go_on = threading.Event()

    def factory(progress):
        progress("dequantizing the weights", 0.3)
        go_on.wait(10)
        return Engine(tiny_lens)

    app = MorphApp(None, TEXT, Settings(debounce_ms=30), factory)
    async with app.run_test(size=(130, 30)) as pilot:
        await wait_for(pilot, lambda: "preparing the model" in str(app.status.render_state()))
        assert "dequantizing the weights 30%" in str(app.status.render_state())
        await pilot.press("a")  # the editor types meanwhile
        assert app.view.text.startswith("a")
        go_on.set()
        await wait_for(pilot, lambda: app.engine is not None and app.status.state.state == "idle")
