"""5. Steering: time to the first candidate, steered vs plain generation speed, and rewrites compared by method.

- Time to first candidate: `Steerer.stream` on a one-sentence selection (two paragraphs of context before
  it), toward the selection's strongest concept at the default strength, the default number of candidates
  (steering.DEFAULT_CANDIDATES, 12); from the call to
  the first CandidateReady. Median over selections and repeats. (The default model runs the hybrid method
  here.) Two ways, on the one Steerer (as the engine keeps one): cold, as `morph steer` runs (planning, the text before run
  once, the original read, the chat prompt, sampling, the first candidate's re-read) with torch's own
  thread count (the CLI sets none: the cores), and prepared, as the steering pane runs (`Steerer.prepare`
  on the selection first, as the pane does while the writer chooses a concept; the clock starts at the
  request) with the editor's analysis threads (cores - 1), as every other editor figure.
- Steered / plain tokens/s: the same request with the concept's strength vs strength 0 (no hook
  installed: the plain sampling loop), both forced to a fixed length (the stop rule is patched on this
  Steerer instance so every row runs to the cap) so both loops do identical work apart from steering;
  tokens/s is counted over the token steps only (from the first to the last SteerProgress: forward,
  steering hook, sampling, decoding), the scoring passes excluded. Pairs alternate; ratio per pair.
- Methods compared, in the AxBench manner (Wu et al. 2025): on the passage x concept pairs of
  benchmarks/data/steer_pairs.json (short modern prose written for Morph; the concept is the writer's
  words), the concept is mapped to features once (`Steerer.concepts_for`, the best feature by label match
  and output score), then each method (hybrid, prompt-only, steer-only) makes the default number of
  candidates (12) from the same
  seed, automatic strength where it steers, and a second round of 12 where none of the first passes (as the
  pane and `morph steer` run: SteerRequest.second_round); each is re-read and scored by the plain model. Per
  method,
  over the top-ranked candidate of each pair: the share that raises the concept (Candidate.raises_concept),
  the share that raises it with no mark (as fluent as the threshold asks, meaning kept, length in range:
  what a writer could accept as it stands), the share that reads as the words (a second reading that no
  feature choice enters: the plain model expects the concept's words more after " It felt" than after the
  original, by over steering.WORDS_EPS nats; Candidate.words_gain),
  the mean fluency change against the original (nats/token; negative = less fluent), the mean meaning
  similarity, and the mean combined score (0..1, the harmonic mean of concept, fluency, meaning, length);
  spreads are bootstrap 95% intervals. Each method runs as the editor and `morph steer` run it: where no
  chosen feature's label holds the words (concepts.unlabelled: "calmer", "sadder" on the shipped SAE) or no
  feature matches them, hybrid and prompt-only rewrite by the words alone (SteerRequest.by_words: the
  instruction, measured by the words; `by_words` in the figures' details names those pairs), and steer-only
  steers by the feature found. A pair a method cannot run (steer-only with no feature; words no one-token
  form of which the vocabulary holds) counts as a top that does not raise the concept, with a combined score
  of 0 (`refused` in the details), instead of being left out, which would flatter the shares.
  `steer_hybrid_lead` is hybrid's mean combined score minus the better of the two baselines.
  `steer_top_raises_share` and `steer_fluency_drop` are hybrid's (the drop = minus the change). A model
  without a chat template (the tiny test model) gets a minimal generic one for this comparison, so that the
  three methods run everywhere; the figures then mean nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import Context, Figure, figure, mean_figure, median, ratio_figure, torch_threads
from benchmarks.corpus import steering_passages

NAME = "steer"


def _first_candidate(steerer, text, start, end, request) -> float:
    from morph.features.steering import CandidateReady

    t0 = time.perf_counter()
    stream = steerer.stream(text, start, end, request)
    try:
        for event in stream:
            if isinstance(event, CandidateReady):
                return time.perf_counter() - t0
    finally:
        stream.close()
    return float("nan")


def _token_rate(steerer, text, start, end, request) -> float:
    """Generated tokens per second over the token steps (see the module docstring)."""
    from morph.features.steering import SteerProgress

    marks: list[tuple[float, int]] = []
    for event in steerer.stream(text, start, end, request):
        if isinstance(event, SteerProgress):
            marks.append((time.perf_counter(), event.n - event.finished))
    if len(marks) < 2:
        return float("nan")
    tokens = sum(active for _, active in marks[1:])
    return tokens / (marks[-1][0] - marks[0][0])


def _fit(lens, passage: tuple[str, int, int]) -> tuple[str, int, int]:
    """Drop leading paragraphs until the text before the selection fills at most half the model's context:
    the steerer's scoring passes overflow the context when the prompt fills all the room it leaves
    (see the report: steering.py sizes that room by the token cap alone)."""
    text, start, end = passage
    while True:
        before = len(lens.tokenizer(text[:start], add_special_tokens=False)["input_ids"])
        cut = text.find("\n\n")
        if before <= lens.context_size // 2 or cut < 0 or cut + 2 >= start:
            return text, start, end
        text, start, end = text[cut + 2:], start - cut - 2, end - cut - 2


def run(ctx: Context) -> list[Figure]:
    from morph.features.steering import DEFAULT_CANDIDATES, SteerRequest, Steerer

    lens = ctx.load()
    n_passages = ctx.pick(4, 2, 2)
    reps = ctx.pick(3, 2, 1)
    steps = ctx.pick(32, 12, 4)
    passages = [_fit(lens, p) for p in steering_passages(n_passages)]
    steerer = Steerer(lens)
    concept_lists = [[c.id for c in steerer.concepts(text, start, end, k=5)] or [0] for text, start, end in passages]
    tops = [ids[0] for ids in concept_lists]

    # time to the first candidate, cold and prepared (what the steerer read ahead is forgotten before each)
    first: list[float] = []
    prepared: list[float] = []
    text, start, end = passages[0]
    warm_up = SteerRequest.single(tops[0], "auto", n=DEFAULT_CANDIDATES, seed=99)
    _first_candidate(steerer, text, start, end, warm_up)
    for rep in range(reps):
        for i, (text, start, end) in enumerate(passages):
            request = SteerRequest.single(tops[i], "auto", n=DEFAULT_CANDIDATES, seed=rep)
            steerer.forget()
            with torch_threads(ctx.cli_threads):  # as `morph steer` runs: torch's own thread count
                first.append(_first_candidate(steerer, text, start, end, request))
            steerer.forget()
            steerer.prepare(text, start, end)
            prepared.append(_first_candidate(steerer, text, start, end, request))

    # steered vs plain speed, fixed length
    fixed = Steerer(lens)
    fixed._check_stop = lambda plan, row, piece, hit: (row.text.lstrip() if len(row.tokens) >= plan.cap else None)
    steered, plain = [], []
    for rep in range(reps + 1):
        for i, (text, start, end) in enumerate(passages[:2]):
            # at least the selection's length: a cap below it makes the steerer's prompt room too small for
            # scoring the original (steering.py sizes the room by the cap alone)
            length = len(lens.tokenizer(" " + text[start:end], add_special_tokens=False)["input_ids"])
            kw = dict(seed=rep, max_tokens=max(steps, length + 2), second_round=False)  # one batch of rows
            pair = [("steered", SteerRequest.single(tops[i], **kw)), ("plain", SteerRequest.single(tops[i], 0.0, **kw))]
            for name, request in (pair if (rep + i) % 2 == 0 else pair[::-1]):
                rate = _token_rate(fixed, text, start, end, request)
                if rep > 0:  # the first round warms up
                    (steered if name == "steered" else plain).append(rate)

    figures = [
        figure("steer_first_candidate_s", "steering: time to first candidate (1 sentence, cold: morph steer, "
               f"{ctx.cli_threads} threads)", first, unit="s", target=("<", 2.0), candidates=DEFAULT_CANDIDATES,
               selections=n_passages, torch_threads=ctx.cli_threads),
        figure("steer_first_candidate_prepared_s", "steering: time to first candidate (1 sentence, prepared: the "
               f"pane, {ctx.threads} thread{'s' if ctx.threads > 1 else ''})", prepared, unit="s", target=("<", 2.0),
               candidates=DEFAULT_CANDIDATES, selections=n_passages, torch_threads=ctx.threads),
        ratio_figure("steer_speed_ratio", "steered ÷ plain generation tokens/s", steered, plain, median,
                     target=(">=", 0.9), steered_tokens_per_s=round(median(steered), 1),
                     plain_tokens_per_s=round(median(plain), 1), min_tokens_per_row=steps,
                     rows=DEFAULT_CANDIDATES),
    ]
    figures += compare_methods(ctx, lens)
    for fig in figures:
        fig.benchmark = NAME
    return figures


COMPARED = ("hybrid", "prompt", "steer")
PAIRS_FILE = Path(__file__).resolve().parent / "data" / "steer_pairs.json"
GENERIC_TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}assistant:{% endif %}")


def steer_pairs(n: int | None = None) -> list[tuple[str, int, int, str]]:
    """(text, start, end, concept words) per pair of benchmarks/data/steer_pairs.json, the first `n`."""
    data = json.loads(PAIRS_FILE.read_text(encoding="utf-8"))
    out = []
    for index, words in data["pairs"][:n]:
        passage = data["passages"][index]
        before = passage["before"] + " "
        text = before + passage["sentence"] + "\n"
        out.append((text, len(before), len(before) + len(passage["sentence"]), words))
    return out


def _with_chat_template(lens):
    if getattr(lens.tokenizer, "chat_template", None):
        return lens
    tokenizer = copy.deepcopy(lens.tokenizer)
    tokenizer.chat_template = GENERIC_TEMPLATE
    return dataclasses.replace(lens, tokenizer=tokenizer)


def compare_methods(ctx: Context, lens) -> list[Figure]:
    """Hybrid vs prompt-only vs steer-only on the pairs (see the module docstring)."""
    from morph.errors import InputError, NoFeatureMatches
    from morph.features.concepts import direction_of, unlabelled
    from morph.features.steering import DEFAULT_CANDIDATES, WORDS_EPS, SteerRequest, Steerer

    lens = _with_chat_template(lens)
    steerer = Steerer(lens)
    pairs = steer_pairs(ctx.pick(None, 12, 2))
    n = ctx.pick(DEFAULT_CANDIDATES, DEFAULT_CANDIDATES, 2)
    tops: dict[str, list] = {m: [] for m in COMPARED}
    rows = []
    refused: dict[str, list[str]] = {m: [] for m in COMPARED}  # per method, "k: words" of the pairs it cannot run
    by_words: list[str] = []  # "k: words" of the pairs hybrid and prompt-only rewrite by the words alone
    for k, (text, start, end, words) in enumerate(pairs):
        try:
            matches = steerer.concepts_for(words, text, start, end)[:1]
        except NoFeatureMatches:
            matches = []
        except InputError as err:
            ctx.log(f"  steer: no concept for {words!r}: {err}")
            matches = None
        if matches is not None and ctx.mode == "smoke" and not matches:
            # the tiny random model's labels hold no real words: its strongest feature on the passage
            matches = steerer.concepts_for(str(steerer.concepts(text, start, end, 1)[0].id), text, start, end)
        alone = matches is not None and (not matches or unlabelled(words, matches))
        if alone:
            by_words.append(f"{k}: {words}")
        for method in COMPARED:
            options = dict(mode=direction_of(words), n=n, seed=k, method=method)
            if matches is None or (method == "steer" and not matches):
                refused[method].append(f"{k}: {words}")
                continue
            request = (SteerRequest.by_words(words, **options) if alone and method != "steer" else
                       SteerRequest.for_matches(matches, words, "auto", **options))
            try:
                result = steerer.run(text, start, end, request)
            except InputError as err:  # words with no one-token form measure nothing
                ctx.log(f"  steer: {method} cannot rewrite {words!r}: {err}")
                refused[method].append(f"{k}: {words}")
                continue
            if result.candidates:
                top = result.candidates[0]
                tops[method].append(top)
                rows.append({"pair": k, "concept": words, "method": method,
                             "feature": result.features[0][0] if result.features else None,
                             "original": text[start:end], "top": top.text, "score": round(top.score, 3),
                             "gain": round(top.gain, 4), "fluency_change": round(top.fluency_change, 3),
                             "words_gain": None if top.words_gain is None else round(top.words_gain, 3),
                             "similarity": round(top.similarity, 3), "marks": list(top.marks),
                             "strength": top.strength, "rounds": result.rounds, "adds": top.adds})
    if ctx.mode == "full":
        (PAIRS_FILE.parent.parent / "steer_candidates.json").write_text(json.dumps(rows, indent=1,
                                                                                    ensure_ascii=False))
    # a pair a method cannot run: nothing measures a rewrite, so nothing raised and no score
    nothing = {m: [0.0] * len(refused[m]) for m in COMPARED}
    raised = {m: [100.0 * c.raises_concept for c in tops[m]] + nothing[m] for m in COMPARED}
    scores = {m: [c.score for c in tops[m]] + nothing[m] for m in COMPARED}
    figures = []
    for method in COMPARED:
        got = tops[method]
        figures += [
            mean_figure(f"steer_{method}_raises_share", f"steering {method}: top candidate raises the concept",
                        raised[method], unit="%", pairs=len(raised[method]), refused=refused[method],
                        by_words=by_words if method != "steer" else []),
            mean_figure(f"steer_{method}_clean_share", f"steering {method}: top candidate raises it with no mark",
                        [100.0 * c.passes for c in got] + nothing[method], unit="%"),
            mean_figure(f"steer_{method}_words_share", f"steering {method}: top candidate reads as the words "
                        "(second reading)",
                        [100.0 * ((c.words_gain or 0.0) > WORDS_EPS) for c in got] + nothing[method], unit="%"),
            mean_figure(f"steer_{method}_fluency_change", f"steering {method}: fluency change of the top",
                        [c.fluency_change for c in got], unit="nats/tok"),
            mean_figure(f"steer_{method}_similarity", f"steering {method}: meaning similarity of the top",
                        [c.similarity for c in got]),
            mean_figure(f"steer_{method}_score", f"steering {method}: combined score of the top", scores[method]),
        ]
    best_other = max((statistics.fmean(scores[m]) if tops[m] else 0.0) for m in COMPARED[1:])
    figures.append(figure("steer_hybrid_lead", "steering: hybrid's combined score minus the best baseline's",
                          [statistics.fmean(scores["hybrid"]) - best_other] if tops["hybrid"] else [],
                          target=(">", 0.0)))
    figures.append(mean_figure("steer_top_raises_share", "steering: top candidate raises the concept (hybrid)",
                               raised["hybrid"], unit="%", target=(">=", 80.0), pairs=len(raised["hybrid"]),
                               refused=refused["hybrid"], by_words=by_words))
    figures.append(mean_figure("steer_fluency_drop", "steering: fluency drop of the top candidate (hybrid)",
                               [-c.fluency_change for c in tops["hybrid"]], unit="nats/tok", target=("<=", 0.5)))
    return figures
