"""The steering engine: mechanics on the tiny random model, efficacy on the shipped default model."""

from __future__ import annotations

import copy
import dataclasses
import threading

import pytest
import torch

from morph.errors import InputError
from morph.features.concepts import (RELATED_WEIGHT, concepts_in_span, more_like_this, related_words,
                                     search_concepts, span_features, unlabelled, word_family)
from morph.features.labels import load_labels
from morph.features.steering import (
    PRESETS,
    CandidateReady,
    SteerDone,
    Steerer,
    SteerProgress,
    SteerRequest,
    rank_candidates,
    strength_value,
    word_similarity,
)

TEXT = ("The river ran past the old mill, and the miller's daughter watched the water turn the wheel.\n"
        "In the evening the lamps were lit along the harbour. Sailors sang and the gulls were quiet.\n")
SPAN = "In the evening the lamps were lit along the harbour."
START = TEXT.index(SPAN)
END = START + len(SPAN)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def steerer(tiny_lens):
    return Steerer(tiny_lens)


def texts(result):
    return sorted((c.index, c.text) for c in result.candidates)


# ----- requests and validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,message", [
    (5, 5, "empty"),
    (-1, 4, "outside"),
    (4, len(TEXT) + 1, "outside"),
    (9, 4, "outside"),
    (TEXT.index("\n"), TEXT.index("\n") + 1, "whitespace"),
])
def test_bad_spans_raise_one_line(steerer, start, end, message):
    with pytest.raises(InputError, match=message) as info:
        steerer.stream(TEXT, start, end, SteerRequest.single(1))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("feature", [-1, 512, 10**6])
def test_unknown_feature(steerer, feature):
    with pytest.raises(InputError, match="does not exist"):
        steerer.stream(TEXT, START, END, SteerRequest.single(feature))


@pytest.mark.parametrize("request_", [
    SteerRequest(features=((1, 4.0),), mode="sideways"),
    SteerRequest(features=()),
    SteerRequest(features=((1, 4.0),), n=0),
    SteerRequest(features=((1, 4.0),), top_p=0),
])
def test_bad_requests(steerer, request_):
    with pytest.raises(InputError):
        steerer.stream(TEXT, START, END, request_)


def test_strength_presets():
    assert strength_value("Strong") == PRESETS["strong"] > strength_value("medium") > strength_value("subtle") > 0
    assert strength_value("-2.5") == -2.5
    with pytest.raises(InputError):
        strength_value("very")
    with pytest.raises(InputError):
        strength_value(float("nan"))


def test_concept_text_matching_nothing(tiny_lens):
    with pytest.raises(InputError, match="no feature label matches"):
        search_concepts(load_labels(tiny_lens), "qqqzzzxxyy")
    with pytest.raises(InputError):
        search_concepts(load_labels(tiny_lens), "   ")
    assert search_concepts(load_labels(tiny_lens), "7")[0].id == 7


# ----- concept choice --------------------------------------------------------------------------------------------

def test_concepts_in_span_are_the_top_mean_features(tiny_lens):
    feats = span_features(tiny_lens, TEXT, START, END)
    concepts = concepts_in_span(tiny_lens, load_labels(tiny_lens), TEXT, START, END, k=5)
    assert len(concepts) == 5
    acts = [c.activation for c in concepts]
    assert acts == sorted(acts, reverse=True)
    mean = feats.span.mean(dim=0)
    assert concepts[0].id == int(mean.argmax())
    assert concepts[0].label


def test_more_like_this_picks_features_stronger_in_the_example(tiny_lens):
    example = "Numbers like 1789, 1865 and 2020 appear in speeches about the nation."
    found = more_like_this(tiny_lens, load_labels(tiny_lens), example, TEXT, START, END, k=3)
    assert 1 <= len(found) <= 3
    assert all(c.activation > 0 for c in found)
    request = SteerRequest.from_concepts(found, "medium")
    assert len(request.features) == len(found)
    assert max(s for _, s in request.features) == pytest.approx(PRESETS["medium"])
    with pytest.raises(InputError):
        more_like_this(tiny_lens, load_labels(tiny_lens), "  ", TEXT, START, END)


# ----- the activation edits ------------------------------------------------------------------------------------

def _plan(steerer, mode, strength=4.0, ratio=1.0):
    request = SteerRequest(features=((3, strength),), mode=mode, max_norm_ratio=ratio)
    return steerer._plan(TEXT, START, END, request)


def test_toward_adds_the_decoder_direction_capped_by_the_residual_norm(steerer, tiny_lens):
    x = torch.randn(2, 5, tiny_lens.d_model)
    plan = _plan(steerer, "toward", strength=1000.0, ratio=0.5)
    out = steerer._edit_fn(plan)(x)
    added = (out - x).norm(dim=-1)
    assert torch.all(added <= 0.5 * x.norm(dim=-1) + 1e-4)
    direction = tiny_lens.sae.W_dec[3] / tiny_lens.sae.W_dec[3].norm()
    cosine = torch.nn.functional.cosine_similarity(out - x, direction.expand_as(x), dim=-1)
    assert torch.all(cosine > 0.999)
    plan = _plan(steerer, "away", strength=1000.0, ratio=0.5)
    cosine = torch.nn.functional.cosine_similarity(steerer._edit_fn(plan)(x) - x, direction.expand_as(x), dim=-1)
    assert torch.all(cosine < -0.999)


def test_toward_raises_and_suppress_zeroes_the_feature_in_the_sae(steerer, tiny_lens):
    sae = tiny_lens.sae
    feats = span_features(tiny_lens, TEXT, START, END)
    feature = int(feats.span.mean(dim=0).argmax())
    from morph.models.hooks import capture

    ids = tiny_lens.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    x = capture(tiny_lens.model, tiny_lens.hook, ids)[0]
    before = sae.encode(x)[:, feature]
    request = SteerRequest(features=((feature, 4.0),), mode="suppress")
    out = steerer._edit_fn(steerer._plan(TEXT, START, END, request))(x)
    # Exactly acts - f_i * W_dec[i]: the SAE's error term is kept.
    assert torch.allclose(out, x - before[:, None] * sae.W_dec[feature][None], atol=1e-5)
    request = SteerRequest(features=((feature, 4.0),), mode="toward")
    raised = sae.encode(steerer._edit_fn(steerer._plan(TEXT, START, END, request))(x))[:, feature]
    assert raised.mean() > 2 * before.mean() > 0


def test_zero_strength_is_plain_sampling(steerer):
    plan = steerer._plan(TEXT, START, END, SteerRequest(features=((3, 0.0),)))
    assert steerer._edit_fn(plan) is None


# ----- generation ------------------------------------------------------------------------------------------------

def test_stream_yields_progress_candidates_then_the_ranked_result(steerer):
    events = list(steerer.stream(TEXT, START, END, SteerRequest.single(3, "strong", n=3, seed=1,
                                                                   second_round=False)))
    assert isinstance(events[-1], SteerDone)
    ready = [e for e in events if isinstance(e, CandidateReady)]
    assert len(ready) == 3 and [e.finished for e in ready] == [1, 2, 3]
    assert any(isinstance(e, SteerProgress) for e in events[: events.index(ready[0])])
    result = events[-1].result
    assert not result.cancelled and result.first_candidate_s is not None and result.rounds == 1
    assert [c.rank for c in result.candidates] == [1, 2, 3]
    assert sorted(c.index for c in result.candidates) == [0, 1, 2]
    assert result.original.text == SPAN
    for c in result.candidates:
        assert c.text.strip() and c.text == c.text.strip()
        assert 0 <= c.similarity <= 1 and c.fluency < 0
    moved = [c for c in result.candidates if c.raises_concept]
    assert list(result.candidates[: len(moved)]) == moved  # concept movers rank first


def test_same_seed_same_candidates_other_seed_other_candidates(steerer):
    request = SteerRequest.single(3, "medium", n=2, seed=7)
    first = steerer.run(TEXT, START, END, request)
    again = steerer.run(TEXT, START, END, request)
    assert texts(first) == texts(again)
    other = steerer.run(TEXT, START, END, dataclasses.replace(request, seed=8))
    assert texts(other) != texts(first)


def test_cancel_stops_between_tokens(steerer):
    cancel = threading.Event()
    steps = []

    def on_event(event):
        if isinstance(event, SteerProgress):
            steps.append(event.step)
            if event.step == 2:
                cancel.set()

    request = SteerRequest.single(3, n=2, max_tokens=40)
    result = steerer.run(TEXT, START, END, request, cancel=cancel, on_event=on_event)
    assert result.cancelled
    assert max(steps) == 2
    assert len(result.candidates) < 2 or all(c.n_tokens <= 3 for c in result.candidates)


def test_whitespace_of_the_span_is_kept(steerer):
    text = "She walked home.\nThe lamps were lit.\nIt was late."
    start = text.index("\nThe")
    end = text.index("It was")
    result = steerer.run(text, start, end, SteerRequest.single(3, n=2, seed=3))
    for c in result.candidates:
        assert c.text.startswith("\n") and c.text.endswith("\n") and "\n" not in c.text.strip()
    start = text.index(" home")
    result = steerer.run(text, start, start + len(" home"), SteerRequest.single(3, n=2, seed=3))
    for c in result.candidates:
        assert c.text.startswith(" ") and not c.text.startswith("  ")


def test_candidates_stop_like_the_original_ends(steerer):
    from morph.features.steering import _Row

    def stop(span, pieces):
        """Feed `pieces(plan)` as tokens; (body without leading space, tokens fed, plan) at the stop."""
        text = "Before it. " + span + " After."
        start = text.index(span)
        plan = steerer._plan(text, start, start + len(span), SteerRequest.single(3))
        row = _Row(0, None)
        for k, piece in enumerate(pieces(plan)):
            row.tokens.append(k)
            row.text += piece
            body = steerer._check_stop(plan, row, piece, False)
            if body is not None:
                return body, k + 1, plan
        return None, len(row.tokens), plan

    # A sentence ends a sentence, once the candidate is past 60% of the original's length.
    body, n, plan = stop("The lamps were lit along the harbour.",
                         lambda p: [" Lights", "."] + [" sea"] * p.min_tokens + [".", " More"])
    assert plan.kind == "sentence" and n == plan.min_tokens + 3
    assert body == "Lights." + " sea" * plan.min_tokens + "."
    # A fragment ends at the word boundary after the original's token count.
    body, n, plan = stop("the old mill", lambda p: [" the"] + ["o"] * p.length + [" wheel"] * 3)
    assert plan.kind == "word" and body == "the" + "o" * plan.length and n == plan.length + 2
    # A clause mark ends a clause.
    body, n, plan = stop("the old mill,", lambda p: [" wheel"] * p.min_tokens + [",", " and"])
    assert plan.kind == "clause" and body.endswith("wheel,")
    # A line break ends a one-line span.
    body, n, _ = stop("The lamps were lit along the harbour.", lambda p: [" Lamps", " lit", "\n", "More"])
    assert body == "Lamps lit"
    # The hard cap (2x the original's tokens for a sentence) cuts back to a word boundary.
    body, n, plan = stop("It rained.", lambda p: [" rain"] * (3 * p.cap) + ["ing"])
    assert n == plan.cap == max(2 * plan.length, plan.length + 6)
    assert body == "rain" + " rain" * (plan.cap - 2)


def test_span_at_the_very_start(steerer):
    result = steerer.run(TEXT, 0, 9, SteerRequest.single(3, n=2, seed=0))
    assert len(result.candidates) == 2 * result.rounds


def test_chat_models_get_a_rewrite_instruction(tiny_lens):
    tokenizer = copy.deepcopy(tiny_lens.tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    lens = dataclasses.replace(tiny_lens, tokenizer=tokenizer)
    steerer = Steerer(lens)
    plan = steerer._plan(TEXT, START, END, SteerRequest.single(3))
    assert plan.chat and plan.gen_prefix != plan.score_prefix
    assert "Rewrite" in tokenizer.decode(plan.gen_prefix) and SPAN in tokenizer.decode(plan.gen_prefix)
    result = steerer.run(TEXT, START, END, SteerRequest.single(3, n=2, seed=0))
    assert result.chat and len(result.candidates) == 2 * result.rounds


def test_ranking_and_similarity():
    from morph.features.steering import Candidate

    def cand(i, score, raises):
        return Candidate(i, "x", 0.0, -3.0, 0.5, 0.0, score, raises, 3)

    ranked = rank_candidates([cand(0, 5.0, False), cand(1, 0.1, True), cand(2, 0.3, True)])
    assert [c.index for c in ranked] == [2, 1, 0] and [c.rank for c in ranked] == [1, 2, 3]
    assert word_similarity("The lamps were lit.", "the lamps were lit.") == 1.0
    assert word_similarity("The lamps were lit.", "Dogs bark loudly!") < 0.3


# ----- efficacy on the shipped default model -----------------------------------------------------------------

EFFICACY_TEXT = (
    "The morning was grey and the streets were empty. She walked to the station with her coat buttoned "
    "to the chin. The train was late again, and the platform smelled of rain and diesel.\n"
)
EFFICACY_SPAN = "The train was late again, and the platform smelled of rain and diesel."
SEEDS = range(3)


@pytest.fixture(scope="module")
def default_steerer():
    from morph.models.presets import default_available

    if not default_available():
        pytest.skip("the default model is not in morph/default yet")
    from morph.models.lens import LensSpec, load_lens

    return Steerer(load_lens(LensSpec(device="cpu")))


@pytest.mark.slow
def test_default_model_steering_toward_raises_the_concept(default_steerer):
    """Continuation (the base mechanism under every steering method): steered vs plain sampling from the
    same seeds, over several features, every candidate counted.

    Features: a seeded sample of the SAE's live features (no choosing the ones that work). The plain
    candidates do not depend on the feature, so they are generated once and read for every feature.
    (Kept cheap: 12 features x 2 seeds x 4 candidates.)
    """
    import random

    steerer = default_steerer
    labels = steerer.labels
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    live = [i for i in range(steerer.lens.d_sae) if labels.typical_max(i)]
    features = random.Random(0).sample(live, 12)
    plain_texts = []
    for seed in SEEDS[:2]:
        request = SteerRequest(features=((features[0], 0.0),), n=4, seed=seed, method="continuation")
        plain_texts += [c.text for c in steerer.run(EFFICACY_TEXT, start, end, request).candidates]
    plain = torch.stack([feats for feats, _ in steerer.measure(EFFICACY_TEXT, start, end, plain_texts)]).mean(0)
    gains = []
    for feature in features:
        values = []
        for seed in SEEDS[:2]:
            request = SteerRequest.single(feature, "strong", n=4, seed=seed, method="continuation")
            values += [c.target_activation for c in steerer.run(EFFICACY_TEXT, start, end, request).candidates]
        gains.append((sum(values) / len(values) - float(plain[feature])) / labels.typical_max(feature))
    raised, lowered = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    # The effect of a random feature on continuation is real but small, and some features fire in neither
    # the steered nor the plain texts (gain 0: no evidence either way). On the first shipped SAE 5 of 8 were
    # raised (mean gain +0.55% of the typical max); on the second (2026-12-03, with 3 seeds) 7 raised,
    # 3 lowered, 2 silent of these 12, mean +1.1%. More raised than lowered, and a positive mean, are asked.
    assert raised > lowered and sum(gains) / len(gains) > 0, gains


@pytest.mark.slow
def test_default_model_suppress_takes_out_the_features_share(default_steerer):
    """Suppress = acts - decode(f) + decode(f with the feature zeroed): the SAE's error term and the other
    features' shares stay; tokens where the feature is silent are untouched.

    (Re-encoding the result does not read ~0 for the feature: the SAE is not idempotent; its encoder
    and decoder rows for a feature are not inverse. The concept is measured on the text instead.)
    """
    from morph.models.hooks import capture

    lens = default_steerer.lens
    sae = lens.sae
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    feature = concepts_in_span(lens, default_steerer.labels, EFFICACY_TEXT, start, end, k=1)[0].id
    ids = torch.tensor([[lens.bos_token_id] + lens.tokenizer(EFFICACY_TEXT)["input_ids"]])
    with torch.inference_mode():
        x = capture(lens.model, lens.hook, ids)[0, 1:]
        f = sae.encode(x)
        zeroed = f.clone()
        zeroed[:, feature] = 0
        expected = x - sae.decode(f) + sae.decode(zeroed)
        plan = default_steerer._plan(EFFICACY_TEXT, start, end, SteerRequest.single(feature, mode="suppress"))
        out = default_steerer._edit_fn(plan)(x)
    fired = f[:, feature] > 0
    assert 2 <= int(fired.sum()) < len(fired)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(out[~fired], x[~fired])
    assert torch.all((out[fired] - x[fired]).norm(dim=-1) > 0)


def test_a_prepared_selection_gives_what_a_cold_one_gives_without_reading_it_again(tiny_lens):
    """prepare() (the pane, while the writer chooses a concept) reads the text before and the original once;
    a request then starts from that reading: same candidates, same scores, no pass over the text before."""
    cold = Steerer(tiny_lens)
    warm = Steerer(tiny_lens)
    warm.prepare(TEXT, START, END)
    passes = []
    forward = warm._forward
    warm._forward = lambda ids, *a, **k: (passes.append(ids.shape[1]), forward(ids, *a, **k))[1]
    request = SteerRequest.single(3, "medium", n=2, seed=7, method="continuation", second_round=False)
    a, b = cold.run(TEXT, START, END, request), warm.run(TEXT, START, END, request)
    assert texts(a) == texts(b) and [c.score for c in a.candidates] == [c.score for c in b.candidates]
    assert a.original == b.original
    # one token a step, and one re-read per candidate: neither the text before nor the original again
    assert len([width for width in passes if width > 1]) == 2 and passes.count(1) == len(passes) - 2
    for shift in range(1, 4):  # other selections push the oldest reading out
        warm.prepare(TEXT, START - 4 * shift, END)
    assert len(warm._readings) == 2


def test_a_long_text_before_and_a_cap_below_the_selection_stay_inside_the_context(steerer, tiny_lens):
    """The prefix is cut so that the original (longer than the cap here) and every candidate fit."""
    before = "The lamps were lit along the harbour and the sailors sang. " * 200  # far beyond 512 positions
    text = before + SPAN + "\n"
    start = len(before)
    request = dataclasses.replace(SteerRequest.single(3, n=2, seed=0), max_tokens=3)
    result = steerer.run(text, start, start + len(SPAN), request)
    assert len(result.candidates) == 2 * result.rounds
    assert result.original.n_tokens > 3


@pytest.mark.slow
def test_default_model_hybrid_rewrite_toward_words(default_steerer):
    """On the shipped instruct default: "about the sea" maps to a feature whose labels hold 'sea' and whose
    decoder direction moves the model toward the word (positive output score); the hybrid rewrite asks in
    words, sweeps the strength over the candidates, and every candidate comes back scored and ranked.
    (One run of 4 candidates: the benchmark measures how often the top one moves the concept.)"""
    steerer = default_steerer
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    matches = steerer.concepts_for("about the sea", EFFICACY_TEXT, start, end)
    assert "sea" in matches[0].label and matches[0].output_score > 0 and matches[0].label_score > 0
    request = SteerRequest.for_matches(matches[:1], "about the sea", "auto", n=4, seed=0)
    result = steerer.run(EFFICACY_TEXT, start, end, request)
    assert result.method == "hybrid" and "about the sea" in result.instruction
    assert len(result.candidates) == 4 and sorted(c.strength for c in result.candidates) == list(result.ladder)
    for c in result.candidates:
        assert c.text.strip() and c.text == c.text.strip()
        assert len(c.parts) == 4 and 0 <= c.score <= 1
    unmarked = [c for c in result.candidates if not c.marks]
    assert list(result.candidates[: len(unmarked)]) == unmarked


@pytest.mark.slow
def test_default_model_words_are_not_read_as_any_short_text(default_steerer):
    """A word read alone lights features of "a short text after BOS" (on the default, "want · would" and
    the like fire on any one word, and their directions raise every unlikely token): they once stood
    first for "calmer" and made its rewrites non-English. The words are read against neutral control
    words, and output scores against the controls' tokens, so no feature common to unrelated words
    (found here with words that are not among the controls) is chosen."""
    steerer = default_steerer
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    generic = set.intersection(*({c.id for c in more_like_this(steerer.lens, steerer.labels, word, EFFICACY_TEXT,
                                                               start, end, k=6)} for word in ("Monday", "chair", "yellow")))
    assert generic  # the short-text features exist on this SAE: the test would read nothing otherwise
    for words in ("calmer", "more formal", "about the sea"):
        chosen = {m.id for m in steerer.concepts_for(words, EFFICACY_TEXT, start, end)}
        assert not chosen & generic, words


@pytest.mark.slow
def test_default_model_related_words_widen_the_label_search(default_steerer):
    """A concept word's nearest whole words in the model's own embeddings are its near-synonyms, not its
    own forms or negations; a feature whose labels hold one of them (and not the word) is offered for
    the word, its why naming the related word."""
    lens = default_steerer.lens
    calm = related_words(lens, "calm")
    assert {"serene", "tranquil", "peaceful", "soothing"} & set(calm)
    assert not [w for w in calm if w.startswith("calm") or w.startswith("uncalm")]
    assert "ocean" in related_words(lens, "sea")
    assert related_words(lens, "zzqx") == []  # not one token: nothing
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    # "animals": fewer than FEW_LABELLED labels hold it (or "animal"), so its related words are searched too
    related = set(related_words(lens, "animals")) | set(related_words(lens, "animal"))
    widened = [m for m in default_steerer.concepts_for("about animals", EFFICACY_TEXT, start, end, k=16)
               if m.source == "related"]
    assert widened
    for m in widened:
        assert 0 < m.label_score <= RELATED_WEIGHT and any(f"'{w}' (near your words)" in m.why for w in related), m
    # "calmer": no label holds calm itself, only near words ("peaceful"), so the words go alone by default
    calmer = default_steerer.concepts_for("calmer", EFFICACY_TEXT, start, end)
    assert any(m.near_only for m in calmer) and unlabelled("calmer", calmer)
    assert not unlabelled("about the sea", default_steerer.concepts_for("about the sea", EFFICACY_TEXT, start, end))
    # the sea has features of its own: no widening
    assert all(m.source != "related" for m in default_steerer.concepts_for("about the sea", EFFICACY_TEXT, start, end))


@pytest.mark.slow
def test_default_model_word_forms_are_one_word_and_labels_that_show_them_come_first(default_steerer):
    """A word's forms are those the model reads as the same word (its own embeddings say so: "summer" is
    not "sum", "corner" not "corn"); "angrier" finds the feature whose label shows "angrily", and a
    feature whose label shows the writer's word ranks above ones that only fire on it."""
    lens = default_steerer.lens
    assert word_family(lens, "calmer")[:3] == ("calmer", "calm", "calmly")
    assert "angrily" in word_family(lens, "angrier") and "angry" in word_family(lens, "angrier")
    assert "sum" not in word_family(lens, "summer") and "corn" not in word_family(lens, "corner")
    # a comparative whose stem kept an "e": gentle, not "gentl"; nice, not the token " nic"; wide, not " wid"
    assert word_family(lens, "gentler")[:3] == ("gentler", "gentle", "gently")
    assert word_family(lens, "nicer")[1] == "nice" and word_family(lens, "wider")[1] == "wide"
    start = EFFICACY_TEXT.index(EFFICACY_SPAN)
    end = start + len(EFFICACY_SPAN)
    top = default_steerer.concepts_for("angrier", EFFICACY_TEXT, start, end)[0]
    assert "angrily" in top.label.split(" · ")[:3] and "'angrily'" in top.why and top.output_score > 0
    top = default_steerer.concepts_for("about winter", EFFICACY_TEXT, start, end)[0]
    assert top.label_score >= 0.8 and "winter" in top.label.split(" · ")[:3], top


# ----- generating in bfloat16 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_lens(tmp_path_factory):
    """A tiny random Llama (Morph's own, morph.models.llama) with a TopK SAE."""
    from morph.models.lens import LensSpec, load_lens
    from morph.models.tiny import build_model, build_sae

    root = tmp_path_factory.mktemp("tiny-llama")
    build_model(root / "model", "llama", d_model=64, n_layers=3, spread=True)
    build_sae(root / "sae", d_in=64, hook_name="blocks.1.hook_resid_post", arch="topk")
    return load_lens(LensSpec(model=str(root / "model"), sae=str(root / "sae"), device="cpu"))


def test_candidates_generated_in_bfloat16_are_scored_by_the_full_precision_model(llama_lens, monkeypatch):
    from morph.models import device

    monkeypatch.setattr(device, "generation_dtype", lambda _device: torch.bfloat16)
    tokenizer = copy.deepcopy(llama_lens.tokenizer)  # a chat template, so that hybrid runs its own prompt
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    steerer = Steerer(dataclasses.replace(llama_lens, tokenizer=tokenizer))
    for method in ("continuation", "hybrid"):  # the text before's reading cast; a prompt run in bfloat16
        result = steerer.run(TEXT, START, END, SteerRequest.single(3, "medium", n=2, seed=0, method=method))
        assert len(result.candidates) == 2 * result.rounds
        assert steerer._generator is not None and steerer._generator.dtype == torch.bfloat16
        assert llama_lens.model.dtype == torch.float32  # the lens's model is left as it was
        measured = steerer.measure(TEXT, START, END, [c.text for c in result.candidates])
        for candidate, (_, fluency) in zip(result.candidates, measured):
            assert candidate.fluency == pytest.approx(fluency, abs=1e-5)


def test_without_bfloat16_in_hardware_candidates_come_from_the_lens_model(llama_lens, monkeypatch):
    from morph.models import device

    monkeypatch.setattr(device, "generation_dtype", lambda _device: None)
    steerer = Steerer(llama_lens)
    steerer.prepare(TEXT, START, END)
    assert steerer._generation_model() is llama_lens.model and steerer._generator is None


def test_bfloat16_in_hardware_is_read_from_the_cpu_flags(tmp_path):
    from morph.models.device import native_bf16_cpu

    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert native_bf16_cpu(str(amx)) is True
    assert native_bf16_cpu(str(plain)) is False
    assert native_bf16_cpu(str(tmp_path / "missing")) is False


def test_a_chat_prompt_reuses_the_kept_start_of_the_last_one(llama_lens, monkeypatch):
    """After `prepare`, a request runs only the part of its chat prompt that differs from the prepared one
    (from the instruction on), and its candidates are those of a steerer that ran the whole prompt."""
    from morph.models import device

    monkeypatch.setattr(device, "generation_dtype", lambda _device: None)  # float32: equal numbers
    tokenizer = copy.deepcopy(llama_lens.tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    lens = dataclasses.replace(llama_lens, tokenizer=tokenizer)
    request = SteerRequest.single(3, "medium", n=2, seed=1, method="hybrid", concept="about the sea",
                                  temperature=0)
    whole = Steerer(lens).run(TEXT, START, END, request)

    steerer = Steerer(lens)
    steerer.prepare(TEXT, START, END)
    runs: list[int] = []
    forward = steerer._forward
    monkeypatch.setattr(steerer, "_forward", lambda ids, cache, **kw: runs.append(ids.shape[1]) or forward(ids, cache, **kw))
    reused = steerer.run(TEXT, START, END, request)
    prompt = steerer._plan(TEXT, START, END, request).gen_prefix
    assert runs[0] < len(prompt) - 1 - 10  # the system line and the text before were not run again
    assert [c.text for c in reused.candidates] == [c.text for c in whole.candidates]
    for a, b in zip(reused.candidates, whole.candidates):
        assert a.score == pytest.approx(b.score, abs=1e-5)
