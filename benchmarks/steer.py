"""5. Steering: time to the first candidate, steered vs plain generation speed, and efficacy.

- Time to first candidate: `Steerer.stream` on a one-sentence selection (two paragraphs of context before
  it), toward the selection's strongest concept at the default strength, 4 candidates; from the call to
  the first CandidateReady (planning, prefix cache, scoring of the original, sampling, scoring of that
  candidate). Median over selections and repeats.
- Steered / plain tokens/s: the same request with the concept's strength vs strength 0 (no hook
  installed: the plain sampling loop), both forced to a fixed length (the stop rule is patched on this
  Steerer instance so every row runs to the cap) so both loops do identical work apart from steering;
  tokens/s is counted over the token steps only (from the first to the last SteerProgress: forward,
  steering hook, sampling, decoding), the scoring passes excluded. Pairs alternate; ratio per pair.
- Efficacy over a fixed set of selections x features (each selection's top concept, and a concept strong
  in another selection but not this one's top): the share of runs whose top-ranked candidate raises the
  target feature (Candidate.raises_concept), and the mean fluency drop (original's mean log-prob per
  token minus the top candidate's, nats/token; positive = less fluent).
"""

from __future__ import annotations

import time

from benchmarks.common import Context, Figure, figure, mean_figure, median, ratio_figure
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
    from morph.features.steering import SteerRequest, Steerer

    lens = ctx.load()
    n_passages = ctx.pick(4, 2, 2)
    reps = ctx.pick(3, 2, 1)
    steps = ctx.pick(32, 12, 4)
    passages = [_fit(lens, p) for p in steering_passages(n_passages)]
    steerer = Steerer(lens)
    concept_lists = [[c.id for c in steerer.concepts(text, start, end, k=5)] or [0] for text, start, end in passages]
    tops = [ids[0] for ids in concept_lists]

    # time to the first candidate
    first: list[float] = []
    text, start, end = passages[0]
    _first_candidate(steerer, text, start, end, SteerRequest.single(tops[0], seed=99))  # warm-up
    for rep in range(reps):
        for i, (text, start, end) in enumerate(passages):
            first.append(_first_candidate(steerer, text, start, end, SteerRequest.single(tops[i], seed=rep)))

    # steered vs plain speed, fixed length
    fixed = Steerer(lens)
    fixed._check_stop = lambda plan, row, piece, hit: (row.text.lstrip() if len(row.tokens) >= plan.cap else None)
    steered, plain = [], []
    for rep in range(reps + 1):
        for i, (text, start, end) in enumerate(passages[:2]):
            # at least the selection's length: a cap below it makes the steerer's prompt room too small for
            # scoring the original (steering.py sizes the room by the cap alone)
            length = len(lens.tokenizer(" " + text[start:end], add_special_tokens=False)["input_ids"])
            kw = dict(seed=rep, max_tokens=max(steps, length + 2))
            pair = [("steered", SteerRequest.single(tops[i], **kw)), ("plain", SteerRequest.single(tops[i], 0.0, **kw))]
            for name, request in (pair if (rep + i) % 2 == 0 else pair[::-1]):
                rate = _token_rate(fixed, text, start, end, request)
                if rep > 0:  # the first round warms up
                    (steered if name == "steered" else plain).append(rate)

    # efficacy
    raised, drops, gains = [], [], []
    for i, (text, start, end) in enumerate(passages):
        # its own strongest concept, and one that is strong elsewhere but not its own top
        others = [f for j, ids in enumerate(concept_lists) if j != i for f in ids if f != tops[i]]
        for feature in [tops[i]] + others[:1]:
            result = steerer.run(text, start, end, SteerRequest.single(feature, n=ctx.pick(4, 2, 2), seed=i))
            if not result.candidates:
                continue
            top = result.candidates[0]
            raised.append(1.0 if top.raises_concept else 0.0)
            drops.append(result.original.fluency - top.fluency)
            gains.append(top.gain)

    figures = [
        figure("steer_first_candidate_s", "steering: time to first candidate (1 sentence)", first, unit="s",
               target=("<", 2.0), candidates=4, selections=n_passages),
        ratio_figure("steer_speed_ratio", "steered ÷ plain generation tokens/s", steered, plain, median,
                     target=(">=", 0.9), steered_tokens_per_s=round(median(steered), 1),
                     plain_tokens_per_s=round(median(plain), 1), min_tokens_per_row=steps, rows=4),
    ]
    figures.append(mean_figure("steer_top_raises_share", "steering: top candidate raises the feature",
                               [100 * r for r in raised], unit="%", runs=len(raised), median_gain=median(gains)))
    figures.append(mean_figure("steer_fluency_drop", "steering: mean fluency drop of the top candidate", drops,
                               unit="nats/tok"))
    for fig in figures:
        fig.benchmark = NAME
    return figures
