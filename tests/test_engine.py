"""The engine's front door: a frozen Lens holding its lock, labels and one steerer owned by the Engine, one
unit of intensity for highlights and steering strength, one feature check."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from morph.errors import InputError
from morph.features.engine import Engine
from morph.features.intensity import FALLBACK_UNIT, unit_scales
from morph.features.steering import SteerRequest
from morph.models.lens import Lens

TEXT = "The harbour lamps were lit at dusk, and the sailors sang of the sea and the long voyage home.\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_lens_is_frozen_and_a_replaced_lens_shares_its_model_and_lock(tiny_lens):
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_lens.sae_dir = None  # type: ignore[misc]
    other = dataclasses.replace(tiny_lens, sae_dir=None)
    assert other.lock is tiny_lens.lock and other.model is tiny_lens.model
    with tiny_lens.lock, tiny_lens.lock:  # re-entrant: engine code holding it may call helpers that take it
        pass


def test_both_kinds_of_sae_are_saelike(tiny_dirs, tmp_path):
    """The native loader's SAE and SAE-Lens's both have every member Morph reads (morph.models.sae_like)."""
    from morph.models.lens import load_sae
    from morph.models.sae_like import SAEConfigLike, SAELike
    from morph.models.saes import NativeSAE
    from morph.models.tiny import build_sae

    native, _ = load_sae(str(tiny_dirs["sae"]), "cpu")
    assert isinstance(native, NativeSAE)
    sae_lens_sae = build_sae(tmp_path / "sae", d_in=16, hook_name="blocks.0.hook_resid_post", arch="jumprelu")
    for sae in (native, sae_lens_sae):
        assert isinstance(sae, SAELike) and isinstance(sae.cfg, SAEConfigLike)
        assert sae.cfg.metadata.get("hook_name")


def test_the_engine_owns_labels_and_one_steerer_and_stashes_nothing_on_the_lens(tiny_lens):
    engine = Engine(tiny_lens)
    steerer = engine.steerer()
    assert engine.steerer() is steerer
    assert steerer.labels is engine.labels and steerer.lens is tiny_lens
    engine.analyze(TEXT)
    steerer.concepts(TEXT, 4, 20, k=3)
    assert set(vars(tiny_lens)) == {f.name for f in dataclasses.fields(Lens)}


def test_feature_numbers_are_checked_by_one_rule(tiny_lens):
    engine = Engine(tiny_lens)
    d = tiny_lens.d_sae
    assert engine.check_feature(7) == 7 and engine.check_feature("7") == 7
    for bad in (-1, d, "seven", None, True):
        with pytest.raises(InputError):
            engine.check_feature(bad)
    messages = set()
    for check in (engine.check_feature, engine.labels.label, engine.steerer().label):
        with pytest.raises(InputError) as err:
            check(d)
        messages.add(str(err.value))
    assert messages == {f"feature {d} does not exist: this SAE has features 0 to {d - 1}"}


def test_the_unit_rule_statistics_then_the_text_then_the_median_then_one():
    known = np.array([2.0, 0.0, 0.0, 0.0, np.nan, -1.0], dtype=np.float32)
    observed = np.array([5.0, 3.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    # statistics win; else the max in the text; a silent feature gets the median of [5, 3, 1] = 3
    assert unit_scales(6, known, observed).tolist() == [2.0, 3.0, 3.0, 1.0, 3.0, 3.0]
    # an even count takes the lower middle value: [1, 3, 4, 5] -> 3
    assert unit_scales(5, None, np.array([5.0, 3.0, 0.0, 1.0, 4.0]))[2] == 3.0
    assert unit_scales(3, None, None).tolist() == [FALLBACK_UNIT] * 3
    assert unit_scales(2, np.array([4.0, 0.0]), np.zeros(2)).tolist() == [4.0, FALLBACK_UNIT]


def _units(engine: Engine, features: list[int]) -> tuple[list[float], list[float]]:
    """(highlight unit, steering unit) of each feature, the selection being the whole of TEXT."""
    scales = engine.feature_scales(engine.analyze(TEXT))
    steering = [engine.steerer()._plan(TEXT, 0, len(TEXT), SteerRequest.single(f, 4.0)).scales[0] for f in features]
    return [float(scales[f]) for f in features], steering


def test_highlights_and_steering_share_one_unit_without_statistics(tiny_lens):
    engine = Engine(tiny_lens)
    assert engine.labels.norms() is None  # the tiny SAE has no statistics file
    feature_max = engine.analyze(TEXT).feature_max()
    loudest = int(np.argmax(feature_max))
    silent = int(np.nonzero(feature_max == 0)[0][0])
    highlight, steering = _units(engine, [loudest, silent])
    assert highlight == pytest.approx(steering, rel=1e-3)
    assert highlight[0] == pytest.approx(float(feature_max[loudest]), rel=1e-6)
    active = np.sort(feature_max[feature_max > 0])
    assert highlight[1] == pytest.approx(float(active[(len(active) - 1) // 2]), rel=1e-6)  # the median


def test_highlights_and_steering_share_one_unit_with_statistics(tiny_dirs, tmp_path):
    from morph.models.lens import LensSpec, load_lens

    sae = tmp_path / "sae"
    shutil.copytree(tiny_dirs["sae"], sae)
    stats = [{"id": 3, "label": "three", "density": 0.01, "mean_act": 1.0, "max_act": 9.0,
              "quantiles": {"0.5": 2.0, "0.99": 7.5}},
             {"id": 5, "label": "five", "density": 0.01, "mean_act": 1.0, "max_act": 6.25}]
    (sae / "labels.json").write_text(json.dumps({"format": "morph-labels/2", "n_tokens": 100, "features": stats}))
    lens = load_lens(LensSpec(model=str(tiny_dirs["model"]), sae=str(sae), device="cpu"))
    highlight, steering = _units(Engine(lens), [3, 5])
    assert highlight == steering == [7.5, 6.25]  # the 0.99 quantile, else the max seen


def test_a_server_gets_what_it_needs_through_the_engine(tiny_lens):
    """morph serve keeps an analyzer per document, takes turns at the model's lock, and runs Neuronpedia-style
    prompts, all through the Engine (it never reaches the Lens)."""
    import numpy as np
    import torch

    from morph.models.hooks import capture

    engine = Engine(tiny_lens)
    text = "The harbour was quiet.\n\nThe boats came in at dusk."
    mine, theirs = engine.new_analyzer(), engine.new_analyzer()
    assert mine is not theirs and mine is not engine.analyzer
    a, b = mine.analyze(text), engine.analyze(text)
    assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values)
    assert engine.model_lock is tiny_lens.lock and engine.d_sae == tiny_lens.d_sae
    assert engine.hook_name and engine.d_model == tiny_lens.d_model
    run = engine.prompt_activations("The boats came in.", 64, fold=False)
    assert run.ids[0] == tiny_lens.bos_token_id and len(run.tokens) == len(run.ids) == len(run.special)
    with torch.inference_mode():
        acts = capture(tiny_lens.model, tiny_lens.hook, torch.tensor([run.ids]))[0]
        assert torch.allclose(run.features, tiny_lens.sae.encode(acts.to(tiny_lens.sae.dtype)).float())
    plain = list(engine.complete_stream("The boats", 5, temperature=0))
    assert plain and all(later.startswith(earlier) for earlier, later in zip(plain, plain[1:]))
    assert plain == list(engine.complete_stream("The boats", 5, temperature=0, edit=engine.steering([(0, 0.0)])))
    with pytest.raises(InputError, match="does not exist"):
        engine.steering([(tiny_lens.d_sae, 1.0)])
