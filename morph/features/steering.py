"""Steered rewrites: candidate replacements for a selection, generated with SAE feature directions added,
re-read by the plain model and ranked by one combined score.

How a request runs
------------------
1. Method (`SteerRequest.method`; "auto" = hybrid for a model with a chat template, else continuation):
   - hybrid: the instruct model is asked through its chat template to rewrite the passage toward the
     writer's words ("Rewrite this sentence so that it is calmer:"), with the sentence or two before it as
     context in the system line and one worked rewrite before the request (`chat_messages`), while the
     concept's feature directions are added at the hook;
   - prompt: the same instruction, no vector (the features only measure the concept);
   - steer: a plain rewrite instruction without the words, with the vector;
   - continuation: base models: the text before the selection is the prompt and the model continues it,
     with the vector. Trailing spaces of the prompt move into the generation, so a GPT-2-style tokenizer
     writes " word" tokens as it would in running text.
   Without the writer's words (a feature chosen from a list), the instruction names the feature's label.
   Your words alone (`SteerRequest.by_words`: no feature, for words no feature's label holds, "scarier"):
   hybrid steers by the words' own contrastive direction (`concepts.words_direction`: the words read in
   short carriers less control words, in the unit of a typical feature at its typical max) while the
   instruction asks for them; prompt runs the instruction alone; the concept is measured by the words
   instead of features (5.).
2. The text before the selection (its last READ_CONTEXT_TOKENS tokens, the left context the analyzer gives a
   block) minus its last token is run once, unsteered, and its key/value cache is
   shared by the scoring passes (and by the N candidates, a batch, for continuation; the chat methods
   have their own prompt cache). Every position that predicts a candidate token is steered; the prompt
   itself is not (unless `steer_context`).
3. Steering, at the SAE's hook point (in the SAE's frame, via `edit_activations`):
   - toward/away: add sum_i s_i * m_i * d_i, where d_i is feature i's decoder direction (what the SAE's
     decoder adds per unit of the feature), m_i its unit of intensity (its typical max: the statistics',
     else its max on the text read; morph.features.intensity) and s_i the signed strength (away =
     negative); by your words alone, s * v for the words' direction v (1.). The added vector is capped per
     token at `max_norm_ratio` times that token's residual norm.
   - automatic strength (`auto_strength`, the default of the CLI and the pane): the features' strengths
     are relative weights summing to 1, and candidate j is steered at the j-th of n strengths: one of
     them 0 (the instruction alone), the others spread evenly over AUTO_RANGE (`auto_ladder`): a short sweep
     in one batch, judged by the re-read below, so the strength is chosen per passage and feature by the
     candidates that came out best, none at all where steering only hurt. A number overrides.
   - a second round (`second_round`, on by default): when no candidate of the first n passes (moves the
     concept with no mark), n more are sampled with new seeds. Through the chat template, for a selection
     that ends a sentence, they keep the sentence and add to it (`Steerer._adding`: the reply starts with the
     original less its final stop), steered as the first round was; otherwise (a base model, a fragment)
     they are swept by `second_ladder` (half unsteered, half over half the band) where the strength is
     automatic, else as the first. SteerProgress carries the round and whether it adds; the result says how
     many ran, and each added candidate says so (`Candidate.adds`).
   - suppress: the feature is set to zero through the SAE, keeping the SAE's error term:
     acts - (decode(f) - decode(f with the features zeroed)) = acts - f_i * d_i.
4. Sampling: temperature + top-p, one `torch.Generator` per candidate seeded from (seed, candidate index),
   so a seed reproduces the same candidates. A candidate stops at the model's end of turn (chat) or near
   the original's token length L at a place like the original's end: a sentence end if the original ends
   one, a clause mark (, ; :) if it ends with one, else a word boundary; it stops at a line break unless
   the original spans lines; hard cap 2L (sentences) or 1.5L (fragments), at least L + 6 / L + 3 tokens.
   A sentence cut at the cap ends at its last stop, else at its last clause mark with the original's stop
   (`Steerer._cut_at_cap`); one that cannot is marked MARK_UNFINISHED.
   A chat reply loses a "Here is the rewritten sentence:" preamble, a first line that only announces the
   rewrite, and wrapping quotes (`clean_reply`, `drop_announcement`). A candidate that has copied the
   original sentence up to its final stop may not end there (`_copy_stem`): it goes on, which is where a
   small instruct model that kept the sentence adds what was asked ("..., a beautiful sight in winter.").
   The original's leading and trailing whitespace is kept around the candidate's words.
5. Verification, by the UNSTEERED model reading (text before + candidate), for every candidate:
   - concept: target_activation = the mean over the candidate's tokens of sum_i w_i * f_i (w_i = |s_i| /
     sum|s|; equal weights for suppress and prompt-only); gain = direction * (target - original's) / m in
     units of the typical max; raises_concept = gain > RAISE_EPS. By your words alone (no feature): the
     plain model reads WORDS_PROBE (" It felt") after the candidate, and the level is the log-probability
     mass it puts on the words' one-token forms next minus the mass on control words (table, number...;
     `concepts.word_measure_tokens`); gain = direction * (level - original's) in nats, raised above
     WORDS_EPS. ("The path was peaceful and the trees stood still" against "The path was dark and the trees
     were quiet": +2.7 nats toward "calmer"; "the trees screamed in the gale": -1.3.)
     A request with both features and words gets the words gain as well (`Candidate.words_gain`): a second
     reading of the concept, shown beside the features' and not part of the score.
   - fluency: the mean log-probability (nats per token) of its tokens given the text before; the change
     against the original's is what counts.
   - meaning kept: `meaning_similarity` (the share of the original's content words the candidate keeps, 0..1).
   - length: the ratio of word counts.
   - combined score (`combined_score`): the harmonic mean of the four parts mapped to 0..1, in the
     AxBench manner; marks for a concept that did not move, a fluency loss past FLUENCY_LOSS_MAX nats per
     token, a similarity under SIMILARITY_MIN, a length outside LENGTH_RANGE, and MARK_UNCHANGED for the
     original given back word for word (a small instruct model often copies it) or MARK_META for a comment
     on the text instead of a rewrite (`talks_about_the_text`), MARK_REPEATS for a candidate that says
     the same words twice over where the original does not (`repeats_itself`), MARK_UNFINISHED for one that
     stops mid-sentence where the original ends one. Ranking
     (`rank_candidates`): fluent candidates that move the concept first, then the other fluent ones, then
     the less fluent, unchanged and comments last; within each, fewer marks, then those the words' second
     reading agrees with, then the combined score; marked candidates are shown, never hidden.
6. Streaming: `Steerer.stream` yields SteerProgress after every token step, CandidateReady as each
   candidate finishes (already scored), and SteerDone with the ranked result last. A cancel token (anything
   with `is_set()`, e.g. threading.Event) is checked between tokens; a cancelled run still ends with a
   SteerDone (cancelled=True) holding the candidates finished so far.

Concepts: `Steerer.concepts` (features active in the selection), `Steerer.concepts_for` (the writer's
words, or an example for "more like this", mapped to features by label match and output score, see
`morph.features.concepts.concepts_for_words`).
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Protocol, Union

from morph.errors import InputError
from morph.features.checks import check_feature
from morph.features.concepts import (
    Concept,
    ConceptMatch,
    check_span,
    concepts_for_words,
    concepts_in_span,
    feature_units,
    more_like_this,
    search_concepts,
    span_features,
    span_window,
    token_ids,
    word_measure_tokens,
    words_direction,
)
from morph.features.tokens import common_prefix

if TYPE_CHECKING:
    import torch
    from transformers import Cache

    from morph.features.labels import FeatureLabels
    from morph.models.lens import Lens

MODES = ("toward", "away", "suppress")
# How a rewrite is generated (see the module docstring, 1.): "auto" is hybrid for a model with a chat
# template, continuation for one without.
METHODS = ("hybrid", "prompt", "steer", "continuation")
CHAT_METHODS = ("hybrid", "prompt", "steer")
# Strength presets, in units of the feature's typical max activation.
PRESETS: dict[str, float] = {"subtle": 2.0, "medium": 4.0, "strong": 8.0}
AUTO = "auto"
# The automatic strength sweep: the n candidates are steered at n strengths, 0 and the others spread evenly
# over AUTO_RANGE (x each feature's relative weight, the weights summing to 1, x its typical max); the
# re-read's combined score then picks among them. On the default model the usable band is narrow: below ~1.5 the rewrite
# copies the original, above ~5 it stops being English, and since the worked example rewrites well unsteered
# the rungs above 4 rarely win (hybrid alone, 36 pairs, two seeds: combined 0.380 / 0.395 over 1.5-4 against
# 0.363 / 0.346 over 1.5-5).
AUTO_RANGE: tuple[float, float] = (1.5, 4.0)


def _spread(lo: float, hi: float, k: int) -> tuple[float, ...]:
    """k strengths evenly over lo..hi (its ends included); one: its middle."""
    if k <= 1:
        return (round((lo + hi) / 2, 3),)
    return tuple(round(lo + (hi - lo) * j / (k - 1), 3) for j in range(k))


def auto_ladder(n: int) -> tuple[float, ...]:
    """The strengths swept for n candidates: from three candidates on, one unsteered (0: the instruction
    alone, which wins where every steered rung loses fluency or meaning) and the others evenly spaced over
    AUTO_RANGE; two: its ends; one: its middle."""
    if n < 3:
        return _spread(*AUTO_RANGE, n)
    return (0.0,) + _spread(*AUTO_RANGE, n - 1)


def second_ladder(n: int) -> tuple[float, ...]:
    """The strengths of a second round that rewrites again (`SteerRequest.second_round` where
    `Steerer._adding` does not apply: a base model, a fragment): half of the n at 0 (the instruction alone)
    and the others evenly over half of AUTO_RANGE. When no candidate of the first sweep passed, its
    steered rungs tend to fail together on that passage (the feature moves the words but drifts the meaning,
    or does not move), while fresh unsteered samples differ from each other: over the steering benchmark's
    36 pairs, the 16 the first round left without a passing candidate got one in 4 either with this ladder
    or with twelve more unsteered, and in none with the first ladder again (new seeds)."""
    lo, hi = AUTO_RANGE
    zeros = n // 2
    return (0.0,) * zeros + _spread(lo / 2, hi / 2, n - zeros)


DEFAULT_STRENGTH = "medium"
# Candidates per request. The automatic strength sweeps n strengths (one 0) in one batch, and on a 135M model
# the band between "no change" and "not English" is narrow, so more rungs find it more often: over the
# benchmark's 36 pairs, two seeds, the top candidate raised the concept in 58-67% of pairs with four, 67-69%
# with eight and 69-78% with twelve (combined 0.376/0.379 -> 0.422/0.421), at a little more time to the first
# candidate (a step of twelve rows costs little more than one of eight on a CPU, and one of twelve rows ends
# sooner: 1.48 -> 1.58 s and 1.28 -> 1.54 s). Sixteen added little more (78%, 0.428, 1.65 s).
DEFAULT_CANDIDATES = 12
MAX_CANDIDATES = 16
RAISE_EPS = 0.01  # typical-max units; a neutral rewrite passes it on a concept's feature in 13% of cases (WORDS_EPS)
SAMPLE_HEAD = 1024  # tokens top-p sampling looks at first (Steerer._sample)
# Stated thresholds: a candidate is marked (not hidden) when it loses more fluency than this against the
# original (nats per token), keeps less of its meaning than this (similarity 0..1: it keeps no more than half
# of the original's content words), or is off in length.
FLUENCY_LOSS_MAX = 0.5
SIMILARITY_MIN = 0.55
LENGTH_RANGE = (0.5, 2.0)
CONCEPT_HALF = 0.05  # the concept gain (typical-max units) that scores 0.5 on the concept part
# The concept measured by your words alone (module docstring, 5.): what is read after a candidate, the gain
# (nats) above which it raised the concept, and the gain that scores 0.5 on the concept part. The words
# level moves with any rewording: neutral rewrites ("Rewrite this sentence:", no concept; the steering
# benchmark's 12 passages, 8 each, its 12 concepts) passed 0.1 nats in 43% of cases, 1.0 in 14%, about as
# often as they pass RAISE_EPS on the concepts' features (13%), so both thresholds let a rewrite that was
# not asked for the concept pass about one time in seven.
WORDS_PROBE = " It felt"
WORDS_EPS = 1.0
WORDS_HALF = 2.0
MARK_CONCEPT = "concept did not move"
MARK_FLUENCY = "less fluent"
MARK_MEANING = "meaning drifted"
MARK_LENGTH = "length off"
MARK_UNCHANGED = "unchanged"  # the original again, word for word: no rewrite at all, ranked last
MARK_REPEATS = "repeats itself"  # the same run of words twice (a generation caught in a loop)
MARK_UNFINISHED = "unfinished"  # stops mid-sentence where the original ends one (cut at the cap)
MARK_META = "talks about the text"  # a comment on the rewrite instead of one (talks_about_the_text): ranked last

_STOPS = ".!?…"  # the marks that end a sentence (in the regular expressions below and `_token_masks`)
_CLOSERS = r"[\"'”’)\]]*"  # what may close a sentence after its stop (a quote, a bracket)
_SENTENCE_END = re.compile(rf"[{_STOPS}]+{_CLOSERS}$")
_CLAUSE_MARKS = ",;:—–"
_CLAUSE_END = re.compile(rf"[{_CLAUSE_MARKS}]$")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no"})
_WORDS = re.compile(r"\w+|[^\w\s]")


Edit = Callable[["torch.Tensor"], "torch.Tensor"]  # an edit of the activations at the hook point


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


def strength_text(strength: float | None) -> str:
    """How a candidate's strength reads in the pane and the CLI: "at 3.5", "unsteered" for the sweep's 0
    rung (the instruction alone), "" where none applies (prompt-only)."""
    if strength is None:
        return ""
    return "unsteered" if strength == 0 else f"at {strength:g}"


def is_auto(strength: float | str | None) -> bool:
    """Is `strength` the automatic sweep (None or "auto")?"""
    return strength is None or (isinstance(strength, str) and strength.strip().lower() == AUTO)


def strength_value(strength: float | str) -> float:
    """A preset name (subtle, medium, strong) or a number, as a float; InputError otherwise."""
    if isinstance(strength, str):
        key = strength.strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        try:
            strength = float(key)
        except ValueError:
            raise InputError(f"strength {strength!r} is not a number or one of {', '.join(PRESETS)}") from None
    value = float(strength)
    if not math.isfinite(value):
        raise InputError(f"strength {strength!r} is not a finite number")
    return value


@dataclass(frozen=True)
class SteerRequest:
    """What to steer: (feature id, strength) pairs and a mode.

    Strengths are in units of each feature's typical max activation; negative pushes away. Mode "away"
    negates them all; "suppress" ignores them and zeroes the features through the SAE.
    """

    features: tuple[tuple[int, float], ...]
    mode: str = "toward"
    n: int = DEFAULT_CANDIDATES
    seed: int = 0
    max_tokens: int | None = None  # hard cap on generated tokens (default: from the original's length)
    temperature: float = 0.8
    top_p: float = 0.95
    max_norm_ratio: float = 1.0  # the added vector is at most this times the token's residual norm
    steer_context: bool = False  # also steer the prompt's positions (one more pass over the prompt)
    method: str = AUTO  # hybrid | prompt | steer | continuation | auto (hybrid with a chat template)
    concept: str = ""  # the writer's words for the concept, put in the instruction (hybrid, prompt)
    auto_strength: bool = False  # sweep the strength over the candidates (auto_ladder); strengths are weights
    words_strength: float = 1.0  # by your words alone, hybrid: the strength of the words' direction (x the sweep)
    # when none of the n candidates passes (`Candidate.passes`), n more (new seeds; through the chat template
    # they keep the sentence and add to it, `Steerer._adding`; else `second_ladder` where the strength is swept)
    second_round: bool = True

    @classmethod
    def by_words(cls, words: str, mode: str = "toward", strength: float | str | None = AUTO,
                 **kwargs: Any) -> "SteerRequest":
        """The writer's words alone, no feature (for words no feature's label holds): the instruction rewrites
        and the concept is measured by the words (module docstring, 5.). Hybrid (auto) also steers by the
        words' own contrastive direction (`concepts.words_direction`) at `strength` ("auto" sweeps it);
        prompt runs the instruction alone. Needs an instruct model."""
        if is_auto(strength):
            return cls(features=(), mode=mode, concept=words, auto_strength=True, **kwargs)
        return cls(features=(), mode=mode, concept=words, words_strength=strength_value(strength), **kwargs)

    @classmethod
    def single(cls, feature: int, strength: float | str | None = DEFAULT_STRENGTH, mode: str = "toward",
               **kwargs: Any) -> "SteerRequest":
        """One feature; strength None or "auto" sweeps the strength (auto_ladder) over the candidates."""
        if is_auto(strength):
            return cls(features=((feature, 1.0),), mode=mode, auto_strength=True, **kwargs)
        return cls(features=((feature, strength_value(strength)),), mode=mode, **kwargs)

    @classmethod
    def for_matches(cls, matches: list[ConceptMatch], words: str = "", strength: float | str | None = AUTO,
                    mode: str = "toward", **kwargs: Any) -> "SteerRequest":
        """Steer toward (or away from) the chosen features of a concept, weighted by their ranking score,
        with the writer's `words` in the instruction; strength "auto" sweeps it."""
        if not matches:
            raise InputError("no concept chosen")
        weights = [max(m.score, 1e-3) for m in matches]
        top = max(weights)
        auto = is_auto(strength)
        value = 1.0 if auto else strength_value(strength)  # type: ignore[arg-type]
        pairs = tuple((m.id, value * w / top) for m, w in zip(matches, weights))
        return cls(features=pairs, mode=mode, auto_strength=auto, concept=words, **kwargs)

    @classmethod
    def from_concepts(cls, concepts: list[Concept], strength: float | str | None = DEFAULT_STRENGTH,
                      mode: str = "toward", **kwargs: Any) -> "SteerRequest":
        """Several concepts at once (e.g. from `more_like_this`): strengths proportional to activation."""
        if not concepts:
            raise InputError("no concept chosen")
        top = max((abs(c.activation) for c in concepts), default=0.0) or 1.0
        auto = is_auto(strength)
        value = 1.0 if auto else strength_value(strength)  # type: ignore[arg-type]
        pairs = tuple((c.id, value * (abs(c.activation) / top if c.activation else 1.0)) for c in concepts)
        return cls(features=pairs, mode=mode, auto_strength=auto, **kwargs)


@dataclass(frozen=True)
class OriginalScore:
    text: str
    target_activation: float
    fluency: float
    n_tokens: int
    words_level: float | None = None  # the words level (module docstring, 5.), where the request has words


@dataclass(frozen=True)
class Candidate:
    index: int  # generation slot 0..n-1, n..2n-1 in a second round (its seed: the request's seed and this)
    text: str  # the replacement for the whole selection, whitespace included
    target_activation: float
    fluency: float  # mean log-prob per token (nats) read by the plain model after the text before
    similarity: float  # meaning kept, 0..1 (see `meaning_similarity`)
    gain: float  # direction-signed change of the target vs. the original, in units of typical max act
    score: float  # the combined score (see `combined_score`), 0..1
    raises_concept: bool  # moved the concept the asked way (up for toward, down for away/suppress)
    n_tokens: int
    rank: int = 0  # 1 = best; 0 until ranked
    fluency_change: float = 0.0  # fluency minus the original's (nats/token; negative = less fluent)
    length_ratio: float = 1.0  # words of the candidate / words of the original
    strength: float | None = None  # the strength multiplier it was steered at (None: no vector)
    parts: tuple[tuple[str, float], ...] = ()  # the combined score's parts, each 0..1
    # what it fails: MARK_UNCHANGED, MARK_META, MARK_CONCEPT, MARK_FLUENCY, MARK_MEANING, MARK_LENGTH, MARK_REPEATS,
    # MARK_UNFINISHED
    marks: tuple[str, ...] = ()
    # the words' direction-signed gain in nats (module docstring, 5.): by your words alone, the gain itself;
    # with features, a second reading shown beside theirs (the score does not use it); None without words
    words_gain: float | None = None
    adds: bool = False  # the original sentence kept whole, with words added (a second round's, `Steerer._adding`)

    @property
    def passes(self) -> bool:
        """It moves the concept the asked way and carries no mark."""
        return self.raises_concept and not self.marks


@dataclass(frozen=True)
class SteerResult:
    original: OriginalScore
    candidates: tuple[Candidate, ...]  # ranked, best first
    request: SteerRequest
    features: tuple[tuple[int, float], ...]  # (id, effective signed strength) as applied
    scales: tuple[float, ...]  # the typical max activation used per feature
    labels: tuple[str, ...]
    cancelled: bool
    chat: bool  # the model was prompted through its chat template
    first_candidate_s: float | None
    elapsed_s: float
    tokens_generated: int  # summed over candidates
    method: str = "continuation"  # the method that ran (auto resolved)
    instruction: str = ""  # the instruction the model was given ("" for continuation)
    by_words: bool = False  # the concept measured by your words alone (no features; gains in nats)
    ladder: tuple[float, ...] = ()  # the strengths swept (auto strength; a second round's after), else ()
    rounds: int = 1  # 2 where none of the first round's candidates passed and a second round ran

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_generated / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class SteerProgress:
    step: int  # token steps done (in this round)
    max_steps: int
    finished: int
    n: int  # candidates asked for so far (both rounds' in the second)
    round: int = 1
    adds: bool = False  # this round keeps the sentence and adds to it (`Steerer._adding`)


@dataclass(frozen=True)
class CandidateReady:
    candidate: Candidate  # scored, not yet ranked (rank 0)
    finished: int
    n: int


@dataclass(frozen=True)
class SteerDone:
    result: SteerResult


SteerEvent = Union[SteerProgress, CandidateReady, SteerDone]


def rank_candidates(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    """First the candidates that move the concept and read as fluently as the threshold allows (no
    MARK_FLUENCY); then the others that are still fluent; then the less fluent ones; the replies that are no
    rewrite (the original given back unchanged, a comment on the text) last. Within each, fewer marks first,
    then those the words' second reading agrees with (`Candidate.words_gain` over WORDS_EPS, where the request
    has words and features), then the combined score (ties: the smaller fluency loss, then generation order).
    So a fluent rewrite in the asked direction that changed more of the sentence (MARK_MEANING) goes above a
    fluent one that did not move the concept, a candidate that is no longer English never goes above one that
    is, and of two that move the features alike the one that also reads as the words comes first (on the
    steering benchmark: "He said the boiler would be fixed, and he added a small amount of cash." toward money
    rather than "The boiler would be fixed by the end of the next week."; hybrid's tops that read as the
    words 50% -> 61%, the share that raises the concept unchanged)."""
    ordered = sorted(candidates, key=lambda c: (MARK_UNCHANGED in c.marks or MARK_META in c.marks,
                                                not (c.raises_concept and MARK_FLUENCY not in c.marks),
                                                MARK_FLUENCY in c.marks, len(c.marks),
                                                not (c.words_gain is not None and c.words_gain > WORDS_EPS),
                                                -c.score, -c.fluency_change, c.index))
    return tuple(replace(c, rank=k + 1) for k, c in enumerate(ordered))


def moved_summary(candidates: Iterable[Candidate]) -> str:
    """How many candidates move the concept, and how many of those read fluently, which is what the ranking
    puts first: "3 move the concept (1 fluently)", "1 moves the concept, not fluently", "2 move the concept,
    none fluently", "2 move the concept" (both fluently). So a count of movers never reads as a promise that
    the top one is among them."""
    movers = [c for c in candidates if c.raises_concept]
    fluent = sum(MARK_FLUENCY not in c.marks for c in movers)
    said = f"{len(movers)} {'moves' if len(movers) == 1 else 'move'} the concept"
    if not movers or fluent == len(movers):
        return said
    if fluent == 0:
        return said + (", not fluently" if len(movers) == 1 else ", none fluently")
    return f"{said} ({fluent} fluently)"


# Words about writing: a reply that brings them in (the original does not use them) is talking about the text.
_META_WORDS = frozenset("""sentence sentences rewrite rewrites rewrote rewritten rewriting rephrase rephrased
rephrases rephrasing paraphrase paraphrased reword reworded rewording grammar grammatical wording passage
paragraph paragraphs writer writing""".split())
_META_OPENING = re.compile(r"\(?(?:i(?:'d| would)?\s+(?:suggest|changed|recommend|added)\b|instead of\b"
                           r"|the original (?:one|text|sentence|version)\b)", re.I)
_META_ANYWHERE = re.compile(r"\b(?:the|this) original (?:text|sentence|version)\b", re.I)


def talks_about_the_text(candidate: str, original: str) -> bool:
    """A reply that comments on the rewrite instead of being one ("The previous sentence, ... is more formal",
    "I'd suggest rephrasing this: ...", "Instead of "By six," we can use ..."), which a small instruct model
    gives now and then: it brings in a word about writing that the original does not use, opens as such
    comments do, or speaks of "the original text" ("By adding "is" to the original text:")."""
    new = set(_WORDS.findall(candidate.lower())) - set(_WORDS.findall(original.lower()))
    return (bool(new & _META_WORDS) or _META_OPENING.match(candidate.strip()) is not None
            or (_META_ANYWHERE.search(candidate) is not None and _META_ANYWHERE.search(original) is None))


REPEAT_WORDS = 4  # a run of this many words said twice, where the original does not, repeats itself


def repeats_itself(candidate: str, original: str) -> bool:
    """Whether the candidate holds a run of REPEAT_WORDS words (and punctuation) twice that the original does
    not hold twice: "..., so the flat was small, but the kitchen window caught ..." after "The flat was
    small, but the kitchen window ...". A loop reads fluently to the model and keeps the original's words,
    so neither the fluency nor the meaning score catches it."""
    def twice(text: str) -> set[tuple[str, ...]]:
        words = _WORDS.findall(text.lower())
        runs = [tuple(words[i:i + REPEAT_WORDS]) for i in range(len(words) - REPEAT_WORDS + 1)]
        seen: set[tuple[str, ...]] = set()
        doubled: set[tuple[str, ...]] = set()
        for run in runs:
            (doubled if run in seen else seen).add(run)
        return doubled

    return bool(twice(candidate) - twice(original))


_META_OPENERS = ("Here", "Sure", "Certainly", "Instead", "I")  # how the comments open, never how the rewrites


def meta_tokens(lens: Lens, original: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(anywhere, at the start): the tokens a chat reply may not sample, so that a small instruct model,
    steered off its instruction, writes a rewrite rather than a comment on one (`talks_about_the_text`): each
    of _META_WORDS the original does not use, in the forms running text holds it where that form is one
    token, and the openers of such comments ("Here", "I", ...) unless the original opens with them."""
    used = set(_WORDS.findall(original.lower()))
    opening = (_WORDS.findall(original) or [""])[0]

    def single(words: Iterable[str]) -> list[int]:
        ids = []
        for form in words:
            toks = token_ids(lens, form)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(int(toks[0]))
        return ids

    forms = (f for w in sorted(_META_WORDS - used) for f in (w, " " + w, w.capitalize(), " " + w.capitalize()))
    anywhere = single(forms)
    first = single(f for w in _META_OPENERS if w != opening for f in (w, " " + w))
    return tuple(anywhere), tuple(t for t in first if t not in anywhere)


def word_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _WORDS.findall(a.lower()), _WORDS.findall(b.lower()), autojunk=False).ratio()


_STOP = frozenset("""a an the and or but of to in on at by for with from as is are was were be been being it its
this that these those he she they we i you his her their our my your him them us me there here not no so
than then too very just had has have do does did will would can could shall should may might must into
onto over under again""".split())


def _stem(word: str) -> str:
    for suffix in ("ingly", "edly", "ness", "ing", "ies", "ied", "ly", "ed", "es", "er", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """The stemmed content words of `text` (lowercase, stop words out)."""
    return [_stem(w) for w in re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower()) if w not in _STOP]


def meaning_similarity(candidate: str, original: str) -> float:
    """Meaning kept, 0..1: the share of the original's stemmed content words that the candidate keeps. What
    a rewrite toward a concept adds costs nothing here (the length part and the concept measure see it);
    what it drops or replaces does. (An original without content words: `word_similarity`.)

    Why this and not the mean of a Dice overlap and word order used before: 120 candidates of the steering
    benchmark's pairs, read by hand as keeping the original's meaning or not (two sets of 60, the second read
    after the measure was chosen), were told apart with an AUC of 0.82 / 0.82 by this share against 0.75 /
    0.74 (the cosine of the model's mean hidden states, centred, on the first set: 0.80-0.83 by layer). At
    SIMILARITY_MIN 0.55, 40 of the 54 kept passed and 14 of the 66 drifted did, against 42 and 24 at the old
    measure's 0.45."""
    kept = set(content_words(original))
    if not kept:
        return word_similarity(candidate, original)
    return len(kept & set(content_words(candidate))) / len(kept)


def combined_score(gain: float, fluency_change: float, similarity: float, length_ratio: float,
                   eps: float = RAISE_EPS, half: float = CONCEPT_HALF
                   ) -> tuple[float, tuple[tuple[str, float], ...], tuple[str, ...]]:
    """(combined, parts, marks) of one candidate, in the AxBench manner: the harmonic mean of four parts
    in 0..1, so a candidate must do well on all of them (one zero part makes it zero):
    - concept = g / (g + half) for a gain g > eps (RAISE_EPS and CONCEPT_HALF in typical-max units; by
      your words alone WORDS_EPS and WORDS_HALF, in nats), else 0;
    - fluency = exp(min(0, change) / FLUENCY_LOSS_MAX): 1 when it reads as well as the original, 1/e at
      the stated loss threshold;
    - meaning = the similarity (`meaning_similarity`);
    - length = min(r, 1/r) for the word-count ratio r.
    Marks: MARK_CONCEPT (gain <= eps), MARK_FLUENCY (loss > FLUENCY_LOSS_MAX), MARK_MEANING
    (similarity < SIMILARITY_MIN), MARK_LENGTH (r outside LENGTH_RANGE)."""
    concept = gain / (gain + half) if gain > eps else 0.0
    fluency = math.exp(min(0.0, fluency_change) / FLUENCY_LOSS_MAX)
    meaning = max(0.0, min(1.0, similarity))
    length = min(length_ratio, 1 / length_ratio) if length_ratio > 0 else 0.0
    parts = (("concept", concept), ("fluency", fluency), ("meaning", meaning), ("length", length))
    values = [v for _, v in parts]
    combined = 0.0 if min(values) <= 0 else len(values) / sum(1 / v for v in values)
    marks = []
    if gain <= eps:
        marks.append(MARK_CONCEPT)
    if fluency_change < -FLUENCY_LOSS_MAX:
        marks.append(MARK_FLUENCY)
    if similarity < SIMILARITY_MIN:
        marks.append(MARK_MEANING)
    if not LENGTH_RANGE[0] <= length_ratio <= LENGTH_RANGE[1]:
        marks.append(MARK_LENGTH)
    return combined, parts, tuple(marks)


def _split_ws(text: str) -> tuple[str, str, str]:
    core = text.strip()
    if not core:
        return text, "", ""
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()):]
    return lead, core, trail


def _end_kind(core: str) -> str:
    if _SENTENCE_END.search(core):
        return "sentence"
    if _CLAUSE_END.search(core):
        return "clause"
    return "word"


def _stop_of(core: str) -> str:
    """The marks that end the sentence `core` ("." of 'He said "no."'), "." where it ends none."""
    match = re.search(rf"[{_STOPS}]+(?={_CLOSERS}$)", core.strip())
    return match.group() if match else "."


def _copy_stem(core: str) -> str:
    """The original sentence less its final stop ("" when it has none): a candidate that has copied the
    original up to there may not end it (`Steerer._generate`); it goes on instead, where a rewrite that kept
    the sentence adds what the instruction asks ("..., and the crowd rejoiced."), and no candidate of the
    batch is spent on the original word for word."""
    core = core.strip()
    match = _SENTENCE_END.search(core)
    return core[:match.start()].rstrip() if match and match.start() > 0 else ""


def _at_sentence_end(body: str) -> bool:
    body = body.rstrip()
    if not _SENTENCE_END.search(body):
        return False
    last = re.findall(rf"[\w.]+(?=[{_STOPS}]*{_CLOSERS}$)", body)
    word = last[-1].rstrip(".").lower() if last else ""
    return word not in _ABBREVIATIONS or not body.endswith(".")


SYSTEM_PROMPT = "You rewrite sentences as asked. Reply with the rewritten sentence only."
CONTEXT_CHARS = 240  # at most this much of the text before goes into the instruction, whole sentences


def instruction_for(words: str, mode: str = "toward") -> str:
    """The instruction for the writer's concept words: "Rewrite this passage to make it calmer." toward,
    "... to make it less formal." away (unless the words already say less/not/without); no words: a plain
    rewrite request (steer-only)."""
    words = " ".join(words.split()).rstrip(".")
    if not words:
        return "Rewrite this sentence:"
    if mode in ("away", "suppress") and not re.match(r"(less|not|no|without|fewer)\b", words, re.I):
        words = f"less {words}"
    return f"Rewrite this sentence so that it is {words}:"


def _label_words(label: str) -> str:
    """A feature label ("sea · waves · ship") as words for an instruction ("about sea, waves")."""
    words = [w.strip() for w in label.split("·") if w.strip().isalpha()][:2]
    return f"about {' and '.join(words)}" if words else ""


def _last_sentences(before: str, limit: int) -> str:
    """The end of `before`, at most `limit` characters, starting at a sentence start where one fits."""
    tail = " ".join(before.split())[-limit:]
    if len(tail) == limit:
        cut = re.search(rf"[{_STOPS}]{_CLOSERS}\s+(?=\S)", tail)
        tail = tail[cut.end():] if cut else tail[tail.find(" ") + 1:]
    return tail.strip()


# One worked exchange before the request: a small instruct model told only "Rewrite this sentence so that it
# is angrier:" often continues the text, comments on it or copies it; shown one rewrite, it rewrites. The
# example's concept is one no writer's concept leans on: with "happier" ("... and we laughed about it.") the
# rewrites toward calmer, sadder or angrier laughed too.
EXAMPLE_SENTENCE = "The bus was late and it started to rain."
EXAMPLE_REWRITES = {  # by whether the instruction names a concept
    True: ("more vivid", "The bus was late, and cold rain began to drum on the roof."),
    False: ("", "The bus ran late, and then the rain began."),
}


def chat_messages(before: str, core: str, instruction: str) -> list[dict[str, str]]:
    """The conversation that asks for a rewrite (see `Steerer._chat_prompt`)."""
    context = _last_sentences(before, CONTEXT_CHARS)
    system = SYSTEM_PROMPT + (f" The writer's text before the sentence: {context}" if context else "")
    messages = [{"role": "system", "content": system}]
    if EXAMPLE_SENTENCE:
        words, rewrite = EXAMPLE_REWRITES[instruction != instruction_for("")]
        messages += [{"role": "user", "content": f"{instruction_for(words)}\n{EXAMPLE_SENTENCE}"},
                     {"role": "assistant", "content": rewrite}]
    return messages + [{"role": "user", "content": f"{instruction}\n{core}"}]


def run_to_end(events: Iterator[SteerEvent], on_event: Callable[[SteerEvent], None] | None = None
               ) -> SteerResult | None:
    """A steering stream run to its end: its result (None if it ended without one); `on_event` sees every
    event."""
    result = None
    for event in events:
        if on_event is not None:
            on_event(event)
        if isinstance(event, SteerDone):
            result = event.result
    return result


@dataclass
class _Plan:
    request: SteerRequest
    mode: str
    ids: list[int]  # feature ids
    coeffs: list[float]  # effective signed strength * typical max (toward/away)
    scales: list[float]
    weights: list[float]  # for the target activation
    direction: int  # +1 toward, -1 away/suppress
    lead: str
    core: str
    trail: str
    moved: str  # whitespace moved from the prompt into the continuation
    score_prefix: list[int]  # base context token ids (BOS included where wanted), at least 1
    gen_prefix: list[int]  # what the generation reads (= score_prefix for base models)
    chat: bool
    length: int  # L: the original's token count
    kind: str  # sentence | clause | word
    multi_line: bool
    min_tokens: int
    cap: int
    concept_scale: float = 1.0
    method: str = "continuation"
    instruction: str = ""
    ladder: tuple[float, ...] = ()  # per-row strength multipliers (auto strength), else ()
    banned: tuple[int, ...] = ()  # tokens a chat reply may not sample: words about writing (meta_tokens)
    banned_first: tuple[int, ...] = ()  # ... nor open with: a comment's openings
    # the tokens whose mass after WORDS_PROBE measures the words (module docstring, 5.), where the request has
    # words: the concept itself by your words alone (no features), else a second reading beside the features'
    word_targets: tuple[int, ...] = ()
    word_controls: tuple[int, ...] = ()
    # by your words alone, hybrid: the words' direction at the request's signed strength (x the row's rung)
    vector: torch.Tensor | None = None
    # an added round (`Steerer._adding`): the original less its final stop, given as the reply's start; the
    # candidates are it and what the model adds
    stem: str = ""

    @property
    def by_words(self) -> bool:
        return not self.ids

    def body(self, generated: str) -> str:
        """What a row generated, as its candidate's words: without leading space, except where it is added to
        the stem (there the space after the stem is the candidate's)."""
        return generated if self.stem else generated.lstrip()


class _Masks(NamedTuple):
    """Classes of tokens, each a bool mask over the vocabulary (`Steerer._token_masks`)."""

    words: torch.Tensor  # start with a space and have a word
    newline: torch.Tensor  # contain a line break
    ends: torch.Tensor  # open with a sentence's end: . ! ? …
    clause: torch.Tensor  # open with a clause mark: , ; : — –


@dataclass
class _Row:
    index: int
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    text: str = ""


@dataclass
class _Sweep:
    """What the rounds of one request have produced so far."""

    t0: float  # when the request started (perf_counter)
    finished: list[Candidate] = field(default_factory=list)
    first_at: float | None = None  # seconds to the first candidate
    generated: int = 0  # tokens sampled, all rows
    cancelled: bool = False


@dataclass(frozen=True)
class _Reading:
    """A selection's text before, read once (`Steerer._reading`): its key/value cache, and the original."""

    cache: Cache | None  # the text before minus its last token (None when that is empty)
    features: torch.Tensor  # the original's mean SAE features [d_sae] after the text before
    fluency: float
    n_tokens: int
    # log-probabilities [vocab] after the original and WORDS_PROBE: the original's words level for any words
    after_probe: torch.Tensor | None = None


READINGS = 2  # selections whose reading is kept (the one being rewritten, and the one before)
PROMPTS = 2  # chat prompts whose key/values are kept, for the next prompt that starts the same way


def _target(plan: _Plan, features: torch.Tensor) -> float:
    """The concept's activation in mean features [d_sae]: the plan's features, weighted (module docstring, 5.)."""
    return sum(w * float(features[i]) for w, i in zip(plan.weights, plan.ids))


def _level(plan: _Plan, features: torch.Tensor, words: float | None) -> float:
    """The concept's level a text is scored by: by your words alone its words level, else `_target`."""
    return words if plan.by_words and words is not None else _target(plan, features)


class Steerer:
    """The steering engine for one Lens and its labels: concept choice, generation and scoring. No UI.

    Runs one request at a time per lens (forward passes hold `lens.lock`); safe to call from a worker
    thread. The Engine makes one (morph.features.engine.Engine.steerer) with its own labels; without
    `labels`, the labels are loaded for `lens` (morph.features.labels.load_labels).
    """

    def __init__(self, lens: Lens, labels: FeatureLabels | None = None):
        if labels is None:
            from morph.features.labels import load_labels

            labels = load_labels(lens)
        self.lens = lens
        self.labels = labels
        self._masks: _Masks | None = None
        self._directions: dict[int, torch.Tensor] = {}
        # "mult": [rows] strength multipliers of the live batch (None: every row at 1)
        self._row_scales: dict[str, torch.Tensor | None] = {}
        self._readings: OrderedDict[tuple[tuple[int, ...], str], _Reading] = OrderedDict()
        self._readings_lock = threading.Lock()
        # (generation model's id, prompt ids but the last) -> their key/values (see _prompt_cache)
        self._prompts: OrderedDict[tuple[int, tuple[int, ...]], Cache] = OrderedDict()
        self._generator: torch.nn.Module | None = None  # see _generation_model
        self._generator_lock = threading.Lock()

    # ----- concept choice -------------------------------------------------------------------------------
    def concepts(self, text: str, start: int, end: int, k: int = 10) -> list[Concept]:
        return concepts_in_span(self.lens, self.labels, text, start, end, k)

    def search(self, query: str, limit: int = 10) -> list[Concept]:
        return search_concepts(self.labels, query, limit)

    def more_like_this(self, example: str, text: str, start: int, end: int, k: int = 3) -> list[Concept]:
        return more_like_this(self.lens, self.labels, example, text, start, end, k)

    def concepts_for(self, words: str, text: str, start: int, end: int, k: int = 8,
                     example: str | None = None) -> list[ConceptMatch]:
        """Features for the writer's words ("calmer", "about the sea"), or with `example` for "more like
        this", ranked by label match and output score (`concepts.concepts_for_words`); a feature number
        names that feature."""
        if example is None and (words or "").strip().isdigit():
            feature = check_feature(int(words.strip()), self.lens.d_sae)
            return [ConceptMatch(feature, self.labels.label(feature), 1.0, 0.0, 1.0,
                                 "named by its number", "number", self.labels.typical_max(feature))]
        return concepts_for_words(self.lens, self.labels, words, text, start, end, k, example)

    def label(self, feature: int) -> str:
        return self.labels.label(check_feature(feature, self.lens.d_sae))

    # ----- running ----------------------------------------------------------------------------------------
    def run(self, text: str, start: int, end: int, request: SteerRequest, cancel: CancelToken | None = None,
            on_event: Callable[[SteerEvent], None] | None = None) -> SteerResult:
        """Run to the end (or the cancel) and return the ranked result; `on_event` sees every event."""
        result = run_to_end(self.stream(text, start, end, request, cancel), on_event)
        assert result is not None
        return result

    def stream(self, text: str, start: int, end: int, request: SteerRequest,
               cancel: CancelToken | None = None) -> Iterator[SteerEvent]:
        """Validate (InputError before the first event), then generate, yielding events as they come."""
        plan = self._plan(text, start, end, request)
        return self._generate(plan, cancel)

    # ----- planning -----------------------------------------------------------------------------------------
    def _plan(self, text: str, start: int, end: int, request: SteerRequest) -> _Plan:
        lens, tok = self.lens, self.lens.tokenizer
        check_span(text, start, end)
        if request.mode not in MODES:
            raise InputError(f"unknown steering mode {request.mode!r}: use toward, away or suppress")
        method = request.method
        has_template = bool(getattr(tok, "chat_template", None))
        if method == AUTO:
            method = "hybrid" if has_template else "continuation"
        if method not in METHODS:
            raise InputError(f"unknown method {request.method!r}: use {', '.join(METHODS)} or auto")
        if not request.features and request.concept.strip() and not has_template:
            raise InputError("rewriting by your words alone needs an instruct model (one with a chat template)")
        if method in CHAT_METHODS and not has_template:
            raise InputError(f"{method} needs an instruct model (one with a chat template): use continuation")
        word_targets, word_controls = ([], []) if not request.concept.strip() else word_measure_tokens(
            lens, request.concept)
        vector: torch.Tensor | None = None
        if not request.features:  # your words alone: the instruction rewrites, the words measure
            if not request.concept.strip():
                raise InputError("no feature given: choose a concept to steer toward")
            if request.mode == "suppress":
                raise InputError("suppress zeroes features: with your words alone, ask toward or away")
            if method not in ("hybrid", "prompt"):
                raise InputError(f"{method} steers by features: your words alone need the instruction "
                                 "(method hybrid or prompt)")
            if not word_targets:
                raise InputError(f"no word of {request.concept!r} is one word of the model's vocabulary, so it "
                                 "cannot measure it: try other words")
            along = (words_direction(lens, self.labels, request.concept)
                     if method == "hybrid" and request.words_strength else None)
            if along is not None:  # the instruction, and the words' own direction steered
                vector = along * (-1.0 if request.mode == "away" else 1.0) * float(request.words_strength)
            else:  # the instruction alone
                method = "prompt"
        if not 1 <= int(request.n) <= MAX_CANDIDATES:
            raise InputError(f"the number of candidates must be 1 to {MAX_CANDIDATES}, not {request.n}")
        if not (request.temperature >= 0 and 0 < request.top_p <= 1 and request.max_norm_ratio > 0):
            raise InputError("temperature must be >= 0, top-p in (0, 1] and the norm cap > 0")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise InputError("max tokens must be at least 1")
        ids: list[int] = []
        strengths: list[float] = []
        for feature, strength in request.features:
            feature = check_feature(feature, lens.d_sae)
            value = strength_value(strength)
            if feature in ids:
                strengths[ids.index(feature)] += value
            else:
                ids.append(feature)
                strengths.append(value)
        ladder: tuple[float, ...] = ()
        if request.auto_strength and request.mode != "suppress" and method != "prompt":
            total = sum(abs(s) for s in strengths) or 1.0
            strengths = [s / total for s in strengths]  # relative weights summing to 1; the ladder sets the size
            ladder = auto_ladder(int(request.n))
        if method == "prompt":  # the instruction alone: the features only measure the concept
            strengths = [0.0 if request.mode != "suppress" else s for s in strengths]
            weights_from = [1.0] * len(ids)
        else:
            weights_from = strengths
        if request.mode == "away":
            strengths = [-s for s in strengths]
        # the features' units: the statistics' typical max, or (for a feature without one) the max where read
        if all(self.labels.typical_max(i) for i in ids):
            span_window(lens, text, start, end)  # the same checks of the selection, without reading it
            scales = feature_units(self.labels, ids)
        else:
            scales = feature_units(self.labels, ids, span_features(lens, text, start, end).window)
        if request.mode == "suppress":
            weights = [1.0 / len(ids)] * len(ids)
            direction = -1
            coeffs = [0.0] * len(ids)
        else:
            total = sum(abs(s) for s in weights_from)
            if total == 0:  # strength 0: plain sampling, concept measured with equal weights
                weights = [1.0 / max(1, len(ids))] * len(ids)
            else:
                weights = [abs(s) / total for s in weights_from]
            direction = -1 if request.mode == "away" else 1
            coeffs = [s * m for s, m in zip(strengths, scales)]
        concept_scale = sum(abs(w) * m for w, m in zip(weights, scales)) or 1.0

        span = text[start:end]
        lead, core, trail = _split_ws(span)
        context = text[:start] + lead
        base = context.rstrip(" \t")
        moved = context[len(base):]
        length = max(1, len(token_ids(lens, moved + core)))  # the original's tokens as scored
        kind = _end_kind(core)
        if request.max_tokens is not None:
            cap = int(request.max_tokens)
        elif kind == "word":
            cap = max(math.ceil(1.5 * length), length + 3)
        else:
            cap = max(2 * length, length + 6)
        bos = [lens.bos_token_id] if lens.bos_token_id is not None and (lens.prepend_bos or not base) else []
        # After the prefix come the generated tokens, and the original and each candidate re-read for
        # scoring (re-tokenised text can come out a little longer than what was generated).
        room = lens.context_size - max(cap, length) - READ_SLACK - len(bos)
        if room < max(8, length):
            raise InputError(f"the selection is too long to rewrite ({length} tokens for a "
                             f"{lens.context_size}-token model)")
        prefix = bos + token_ids(lens, base)[-min(room, READ_CONTEXT_TOKENS):] if base else list(bos)
        if not prefix:
            raise InputError("this model has no BOS token, so a selection at the very start cannot be rewritten")
        chat = method in CHAT_METHODS
        instruction = ""
        if chat:
            words = request.concept.strip() if method != "steer" else ""
            if method != "steer" and not words:
                words = ", ".join(_label_words(self.labels.label(i)) for i in ids[:3])
            instruction = instruction_for(words, request.mode)
            gen_prefix = self._chat_prompt(text[:start], core, room, instruction)
            banned, banned_first = meta_tokens(lens, core)
        else:
            gen_prefix = prefix
            banned, banned_first = (), ()
        return _Plan(
            request=request, mode=request.mode, ids=ids, coeffs=coeffs,
            scales=scales, weights=weights, direction=direction, lead=lead, core=core, trail=trail,
            moved="" if chat else moved, score_prefix=prefix, gen_prefix=gen_prefix, chat=chat,
            length=length, kind=kind, multi_line="\n" in core,
            min_tokens=max(1, math.ceil(0.6 * length)), cap=cap, concept_scale=concept_scale,
            method=method, instruction=instruction, ladder=ladder, banned=banned, banned_first=banned_first,
            word_targets=tuple(word_targets), word_controls=tuple(word_controls), vector=vector,
        )

    def _chat_prompt(self, before: str, core: str, room: int, instruction: str) -> list[int]:
        """The chat prompt: a system line (an editor that rewrites only the passage) with the sentence or two
        before it as context, marked as not to be rewritten, one worked rewrite, then the instruction and the
        passage. (A small
        instruct model given the whole text before tends to rewrite that instead; the plain model's
        re-read still scores every candidate after the text before, READ_CONTEXT_TOKENS of it.)"""
        tok = self.lens.tokenizer
        messages = chat_messages(before, core, instruction)
        try:
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # noqa: BLE001 - a broken template is the model's, say so in one line
            raise InputError(f"the model's chat template failed: {str(err).splitlines()[0][:120]}") from None
        ids = token_ids(self.lens, prompt)
        return ids[-room:]

    # ----- steering ---------------------------------------------------------------------------------------
    def _stateless_sae(self) -> bool:
        return getattr(self.lens.sae.cfg, "normalize_activations", "none") not in ("constant_norm_rescale",
                                                                                    "layer_norm")

    def _decode_delta(self, acts: torch.Tensor, ids: list[int],
                      coeffs: torch.Tensor | list[float]) -> torch.Tensor:
        """What the SAE's decoder adds for features `ids` at `coeffs` ([..., k] or [k]), in acts's frame."""
        import torch

        sae = self.lens.sae
        dtype = sae.W_dec.dtype
        x = acts.to(dtype)
        f0 = torch.zeros(x.shape[:-1] + (self.lens.d_sae,), dtype=dtype, device=x.device)
        f1 = f0.clone()
        f1[..., ids] = torch.as_tensor(coeffs, dtype=dtype, device=x.device).expand(f1[..., ids].shape)
        norm_in = getattr(sae, "run_time_activation_norm_fn_in", None)
        if norm_in is not None:
            norm_in(x)
        hi = sae.decode(f1)
        if norm_in is not None:
            norm_in(x)
        lo = sae.decode(f0)
        return (hi - lo).to(acts.dtype)

    def _direction(self, plan: _Plan) -> torch.Tensor | None:
        """The summed steering vector [d_in] (stateless SAEs only): the features' and the words' (plan.vector)."""
        import torch

        vec = None if plan.vector is None else plan.vector.float()
        for i, c in zip(plan.ids, plan.coeffs):
            if i not in self._directions:
                with torch.inference_mode():
                    zero = torch.zeros((1, self.lens.d_model), device=self.lens.sae.W_dec.device)
                    self._directions[i] = self._decode_delta(zero, [i], [1.0])[0].float()
            part = c * self._directions[i]
            vec = part if vec is None else vec + part
        return vec

    def _edit_fn(self, plan: _Plan) -> Edit | None:
        """The activation edit for this request, or None for plain sampling."""
        import torch

        owner = threading.get_ident()
        ids = plan.ids
        sae = self.lens.sae
        if plan.mode == "suppress":
            def suppress(acts: torch.Tensor) -> torch.Tensor:
                if threading.get_ident() != owner:
                    return acts
                feats = sae.encode(acts.to(sae.W_dec.dtype))
                return acts - self._decode_delta(acts, ids, feats[..., ids])

            return suppress
        if not any(plan.coeffs) and plan.vector is None:
            return None
        ratio = plan.request.max_norm_ratio
        stateless = self._stateless_sae()
        fixed = self._direction(plan) if stateless else None
        rows = self._row_scales

        def add(acts: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() != owner:
                return acts
            if fixed is not None:  # stateless: the summed vector, once
                vec = fixed.to(device=acts.device, dtype=acts.dtype)
            else:
                vec = self._decode_delta(acts, ids, plan.coeffs)
                if plan.vector is not None:
                    vec = vec + plan.vector.to(device=acts.device, dtype=acts.dtype)
            mult = rows.get("mult")
            if mult is not None and acts.dim() == 3 and acts.shape[0] == mult.shape[0]:
                vec = vec * mult.to(device=acts.device, dtype=acts.dtype)[:, None, None]
            vnorm = vec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            scale = (ratio * acts.norm(dim=-1, keepdim=True) / vnorm).clamp(max=1.0)
            return acts + scale * vec

        return add

    # ----- generation -------------------------------------------------------------------------------------
    def _token_masks(self, vocab: int) -> _Masks:
        """Classes of tokens over the vocab (`_Masks`), made once per vocabulary size."""
        import torch

        if self._masks is None or self._masks.words.shape[0] != vocab:
            tok = self.lens.tokenizer
            n = min(vocab, len(tok))
            texts = tok.batch_decode([[i] for i in range(n)])
            space = torch.zeros(vocab, dtype=torch.bool)
            space[:n] = torch.tensor([t.startswith(" ") and bool(t.strip()) for t in texts])
            newline = torch.zeros(vocab, dtype=torch.bool)
            newline[:n] = torch.tensor(["\n" in t for t in texts])
            ends = torch.zeros(vocab, dtype=torch.bool)
            ends[:n] = torch.tensor([bool(t.strip()) and t.strip()[0] in _STOPS for t in texts])
            clause = torch.zeros(vocab, dtype=torch.bool)
            clause[:n] = torch.tensor([bool(t) and t[0] in _CLAUSE_MARKS for t in texts])
            self._masks = _Masks(space, newline, ends, clause)
        return self._masks

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        tok, model = self.lens.tokenizer, self.lens.model
        for source in (tok.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(x) for x in source)
        if self.lens.bos_token_id is not None and not (getattr(tok, "chat_template", None)):
            ids.add(self.lens.bos_token_id)  # GPT-2 style: <|endoftext|> is both
        return ids

    def _generation_model(self) -> torch.nn.Module:
        """The model that generates candidates: the lens's own, or (Morph's own Llama, on a CPU that has
        bfloat16 in hardware: morph.models.device.generation_dtype) a copy of it in bfloat16, made once,
        ~1.5x faster per step and 2x on the prompt. Candidates are always re-read and scored by the
        lens's model, so only which words get written can differ, never how they are judged."""
        from morph.models.device import generation_dtype
        from morph.models.llama import LlamaForCausalLM, in_dtype

        model = self.lens.model
        dtype = generation_dtype(self.lens.device)
        if dtype is None or not isinstance(model, LlamaForCausalLM) or model.dtype == dtype:
            return model
        with self._generator_lock:
            if self._generator is None:
                self._generator = in_dtype(model, dtype)
            return self._generator

    def _forward(self, input_ids: torch.Tensor, cache: Cache | None, edit: Edit | None = None,
                 record: list[torch.Tensor] | None = None, model: torch.nn.Module | None = None,
                 last_logits_only: bool = False) -> tuple[torch.Tensor, Cache]:
        """The logits over `input_ids` after `cache`, and the extended cache (`model`: the lens's by default;
        `last_logits_only`: see hooks.forward_cached)."""
        import torch

        from morph.models.hooks import edit_activations, forward_cached

        lens = self.lens
        model = model if model is not None else lens.model
        owner = threading.get_ident()

        def recorder(acts: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() == owner and record is not None:
                record.append(acts.detach())
            return acts

        fn = edit if edit is not None else (recorder if record is not None else None)
        with lens.lock, torch.inference_mode():
            if fn is None:
                return forward_cached(model, input_ids, cache, last_logits_only)
            with edit_activations(model, lens.hook, fn):
                return forward_cached(model, input_ids, cache, last_logits_only)

    def _prefix_cache(self, ids: list[int], edit: Edit | None = None,
                      model: torch.nn.Module | None = None) -> Cache | None:
        import torch

        if len(ids) <= 1:
            return None
        return self._forward(torch.tensor([ids[:-1]], device=self.lens.device), None, edit=edit, model=model,
                             last_logits_only=True)[1]

    def _prompt_cache(self, ids: list[int], model: torch.nn.Module) -> Cache | None:
        """`_prefix_cache(ids)` (unsteered) on `model`, starting from the kept prompt that shares the longest
        start with `ids`: a chat prompt differs from the last one for the same selection only from the
        instruction on (the system line and the text before come first), so a second concept, or the first
        after `prepare`, runs only the rest. The result is kept (a copy: generation extends it) for the
        last PROMPTS prompts."""
        import torch

        from morph.models.hooks import crop_cache

        head = tuple(ids[:-1])
        if not head:
            return None
        best: Cache | None = None
        shared = 0
        with self._readings_lock:
            for (owner, kept), kept_cache in self._prompts.items():
                if owner != id(model):
                    continue
                n = common_prefix(kept, head)
                if n > shared:
                    best, shared = kept_cache, n
        cache: Cache | None
        if best is None:
            cache = self._prefix_cache(ids, model=model)
        else:
            cache = copy.deepcopy(best)
            crop_cache(cache, cache.get_seq_length() - shared)
            if shared < len(head):
                cache = self._forward(torch.tensor([list(head[shared:])], device=self.lens.device), cache,
                                      model=model, last_logits_only=True)[1]
        if cache is None:  # not reached: a head of one token or more always leaves key/values
            return None
        with self._readings_lock:
            self._prompts[(id(model), head)] = copy.deepcopy(cache)
            self._prompts.move_to_end((id(model), head))
            while len(self._prompts) > PROMPTS:
                self._prompts.popitem(last=False)
        return cache

    def _sample(self, logits: torch.Tensor, rows: list[_Row], request: SteerRequest) -> list[int]:
        import torch

        logits = logits.float().cpu()
        if request.temperature == 0:
            return logits.argmax(dim=-1).tolist()
        probs = torch.softmax(logits / request.temperature, dim=-1)
        if request.top_p >= 1:
            return [int(torch.multinomial(probs[k], 1, generator=row.generator)) for k, row in enumerate(rows)]
        # Top-p over the SAMPLE_HEAD likeliest tokens, which hold the nucleus whenever their mass reaches
        # top_p (a row where they do not is sorted whole): the same distribution as sorting the vocabulary,
        # at a fraction of the cost per step (a sort and a draw over 49k tokens x 8 rows: ~30 ms of ~130).
        head_p, order = probs.topk(min(SAMPLE_HEAD, probs.shape[-1]), dim=-1)
        picks = []
        for k, row in enumerate(rows):
            row_p, row_order = head_p[k], order[k]
            if float(row_p.sum()) < request.top_p:
                row_p, row_order = probs[k].sort(descending=True)
            keep = row_p.cumsum(dim=-1) - row_p < request.top_p
            keep[0] = True
            picks.append(int(row_order[torch.multinomial(row_p * keep, 1, generator=row.generator)]))
        return picks

    def _check_stop(self, plan: _Plan, row: _Row, token_text: str, hit_stop: bool) -> str | None:
        """The candidate's body if `row` is finished now, else None."""
        n = len(row.tokens)
        body = plan.body(row.text)
        if plan.chat and not plan.stem:
            body = drop_announcement(body)
        if hit_stop:
            return body
        if not plan.multi_line and "\n" in body.rstrip(" \t"):
            cut = body.index("\n")
            if body[:cut].strip():
                return body[:cut]
        if plan.kind == "word":
            if n > plan.length and token_text[:1].isspace() and body[: len(body) - len(token_text)].strip():
                return body[: len(body) - len(token_text)]
        if n >= plan.min_tokens and _at_sentence_end(body):
            return body
        if plan.kind == "clause" and n >= plan.min_tokens and _CLAUSE_END.search(body.rstrip()):
            return body
        if n >= plan.cap:
            return self._cut_at_cap(plan, body)
        return None

    def _cut_at_cap(self, plan: _Plan, body: str) -> str:
        """A row's body cut where it reached the cap. Where the original ends a sentence: at the body's last
        stop, else at its last clause mark closed with the original's stop, once that keeps 40% of it (what a
        round added to the sentence, `Steerer._adding`: any of it, else nothing); otherwise at its last stop
        (a fragment) or word, which leaves a sentence unfinished (MARK_UNFINISHED)."""
        ends = [m.end() for m in re.finditer(rf"[{_STOPS}]+{_CLOSERS}(?=\s|$)", body)]
        floor = 0.0 if plan.stem else 0.4 * len(body)
        if plan.kind != "word" and ends and ends[-1] > floor:
            return body[: ends[-1]]
        if plan.kind == "sentence":
            stop = _stop_of(plan.core)
            clause = max(body.rstrip().rfind(mark) for mark in _CLAUSE_MARKS)
            if clause > floor:
                return body[:clause].rstrip() + stop
            if plan.stem:
                return stop
        cut = max(body.rstrip().rfind(" "), body.rstrip().rfind("\n"))
        return body[:cut] if cut > 0.4 * len(body) else body

    def _read(self, plan: _Plan, core: str, cache: Cache | None,
              probe_always: bool = False) -> tuple[torch.Tensor, float, int, torch.Tensor | None]:
        """(mean SAE features [d_sae], fluency, n tokens, log-probabilities [vocab] after WORDS_PROBE) of
        `core` read after the text before, unsteered; the last where the plan has words (or `probe_always`),
        else None (`_words_level` reads it)."""
        import torch

        from morph.models.hooks import crop_cache

        ids = token_ids(self.lens, plan.moved + core)
        probe = token_ids(self.lens, WORDS_PROBE) if plan.word_targets or probe_always else []
        ids = ids[: max(1, self.lens.context_size - len(plan.score_prefix) - len(probe))]  # never past the end
        if not ids:
            return torch.zeros(self.lens.d_sae), -20.0, 0, None
        record: list = []
        inp = torch.tensor([[plan.score_prefix[-1]] + ids + probe], device=self.lens.device)
        logits, _ = self._forward(inp, cache, record=record)
        crop_cache(cache, len(ids) + 1 + len(probe))
        sae = self.lens.sae
        after: torch.Tensor | None = None
        with torch.inference_mode():
            logp = torch.log_softmax(logits[0, : len(ids)].float(), dim=-1)
            fluency = float(logp.gather(-1, torch.tensor(ids, device=logp.device)[:, None]).mean())
            feats = sae.encode(record[0][0, 1:len(ids) + 1].to(sae.W_dec.dtype)).float().mean(dim=0)
            if probe:
                after = torch.log_softmax(logits[0, -1].float(), dim=-1).cpu()
        return feats.cpu(), fluency, len(ids), after

    @staticmethod
    def _words_level(plan: _Plan, after: torch.Tensor | None) -> float | None:
        """The words level (module docstring, 5.) from the log-probabilities after WORDS_PROBE; None without
        words (or without a reading of them)."""
        import torch

        if not plan.word_targets or after is None:
            return None
        level = float(torch.logsumexp(after[list(plan.word_targets)], dim=-1))
        if plan.word_controls:  # (a vocabulary that spells none of them whole: the targets' mass alone)
            level -= float(torch.logsumexp(after[list(plan.word_controls)], dim=-1))
        return level

    def _score(self, plan: _Plan, core: str, cache: Cache | None) -> tuple[float, float, int, float | None]:
        """(the concept's level, fluency, n tokens, words level) of `core` read after the text before,
        unsteered: the level is the target activation, or by your words alone the words level."""
        feats, fluency, n, after = self._read(plan, core, cache)
        words = self._words_level(plan, after)
        return _level(plan, feats, words), fluency, n, words

    def prepare(self, text: str, start: int, end: int, method: str = AUTO) -> None:
        """Read the selection's text before and the original now, so that a request on this selection starts
        generating at once: the pane calls it when it opens, while the writer chooses a concept. What it
        reads (`_reading`, and for a chat model the prompt's start, `_prompt_cache`) is the same whatever the
        concept; the last READINGS selections are kept."""
        plan = self._plan(text, start, end, SteerRequest(features=((0, 0.0),), n=1, method=method))
        self._reading(plan)
        generator = self._generation_model()
        if plan.chat:  # the chat prompt's start (the system line, the text before) is the same for any concept
            self._prompt_cache(plan.gen_prefix, generator)

    def forget(self) -> None:
        """Drop what was read ahead (selections' readings, kept prompts): the next request starts cold."""
        with self._readings_lock:
            self._readings.clear()
            self._prompts.clear()

    def _reading(self, plan: _Plan) -> _Reading:
        """The plan's text before, run unsteered (its key/value cache), and the original read after it: kept
        for the last READINGS selections (keyed by the exact tokens), made here otherwise. Callers copy the
        cache before they run anything on it: a kept reading never changes."""
        key = (tuple(plan.score_prefix), plan.moved + plan.core)
        with self._readings_lock:
            found = self._readings.get(key)
            if found is not None:
                self._readings.move_to_end(key)
                return found
        cache = self._prefix_cache(plan.score_prefix)
        found = _Reading(cache, *self._read(plan, plan.core, cache, probe_always=True))
        with self._readings_lock:
            self._readings[key] = found
            while len(self._readings) > READINGS:
                self._readings.popitem(last=False)
        return found

    def measure(self, text: str, start: int, end: int, replacements: list[str]) -> list[tuple[torch.Tensor, float]]:
        """How the unsteered model reads each replacement of text[start:end] (the original: pass it too).

        Returns, per replacement, (mean activation of every feature over its tokens [d_sae] tensor, fluency),
        measured exactly as candidates are scored.
        """
        plan = self._plan(text, start, end, SteerRequest(features=((0, 0.0),), n=1))
        cache = copy.deepcopy(self._reading(plan).cache)
        out = []
        for replacement in replacements:
            feats, fluency, _, _ = self._read(plan, replacement.strip(), cache)
            out.append((feats, fluency))
        return out

    def _gen_cache(self, plan: _Plan, reading: _Reading, generator: torch.nn.Module,
                   edit: Edit | None) -> Cache | None:
        """The generation prompt's key/values for one round, a copy of its own (the round repeats it per row
        and extends it): the reading's where the prompt is the text before, else the kept chat prompt's."""
        if plan.request.steer_context and edit is not None:  # the prompt read steered: nothing kept fits
            return self._prefix_cache(plan.gen_prefix, edit, generator)
        if plan.gen_prefix == plan.score_prefix:
            if generator is not self.lens.model and reading.cache is not None:
                return reading.cache.to(generator.dtype)  # a copy in the generator's precision
            return copy.deepcopy(reading.cache)
        return self._prompt_cache(plan.gen_prefix, generator)

    def _generate(self, plan: _Plan, cancel: CancelToken | None) -> Iterator[SteerEvent]:
        t0 = time.perf_counter()
        request = plan.request
        edit = self._edit_fn(plan)
        stop_ids = self._stop_ids()
        reading = self._reading(plan)
        score_cache = copy.deepcopy(reading.cache)
        generator = self._generation_model()
        words = self._words_level(plan, reading.after_probe)
        level = _level(plan, reading.features, words)
        original = OriginalScore(plan.lead + plan.core + plan.trail, level, reading.fluency, reading.n_tokens, words)

        n = int(request.n)
        mults = [plan.ladder[j % len(plan.ladder)] if plan.ladder else 1.0 for j in range(n)]
        sweep = _Sweep(t0)
        yield from self._round(plan, sweep, range(n), mults, self._gen_cache(plan, reading, generator, edit),
                               generator, edit, stop_ids, original, score_cache, cancel)
        rounds, ladder = 1, plan.ladder
        if request.second_round and not sweep.cancelled and not any(c.passes for c in sweep.finished):
            rounds = 2
            adding = self._adding(plan)
            second = plan.ladder if adding is not None else second_ladder(n) if plan.ladder else ()
            ladder += second
            mults += list(second) if second else mults[:n]
            round_plan = adding or plan
            yield from self._round(round_plan, sweep, range(n, 2 * n), mults,
                                   self._gen_cache(round_plan, reading, generator, edit), generator, edit, stop_ids,
                                   original, score_cache, cancel)
        elapsed = time.perf_counter() - t0
        result = SteerResult(
            original=original, candidates=rank_candidates(sweep.finished), request=request,
            features=tuple(zip(plan.ids, [c / m if m else 0.0 for c, m in zip(plan.coeffs, plan.scales)])),
            scales=tuple(plan.scales), labels=tuple(self.labels.label(i) for i in plan.ids),
            cancelled=sweep.cancelled, chat=plan.chat, first_candidate_s=sweep.first_at, elapsed_s=elapsed,
            tokens_generated=sweep.generated, method=plan.method, instruction=plan.instruction, ladder=ladder,
            by_words=plan.by_words, rounds=rounds,
        )
        yield SteerDone(result)

    def _adding(self, plan: _Plan) -> _Plan | None:
        """The plan of a second round that keeps the original sentence and adds to it: the chat reply starts
        with the original less its final stop (`_copy_stem`), and the model goes on from there (at least
        ADD_MIN_TOKENS, not a stop first, at most the original's length + 6 tokens), steered as the first
        round was. None where it does not apply: a base model (no reply to start), a selection that does not
        end a sentence with a plain stop (a fragment, or one closing a quote), or one too long for the window.

        Why: where no rewrite of the first round passed, the steered rewrites had moved the concept by
        rewriting the sentence away (meaning drifted) or had not moved it; over the steering benchmark's 36
        pairs, 12 hybrid candidates each, a round of rewrites passed in 19 pairs and a round that adds in 32
        (the union, 34: every concept but "about money" and "more hopeful" on one passage each; twelve added
        with half the rungs unsteered, `second_ladder`: 27; the reply started with the sentence's first half
        instead, rewriting the rest: 24)."""
        stem = _copy_stem(plan.core)
        if not plan.chat or not stem or plan.core.rstrip()[-1] not in _STOPS:
            return None
        ids = token_ids(self.lens, stem)
        cap = plan.length + 6
        if len(plan.gen_prefix) + len(ids) + cap + READ_SLACK > self.lens.context_size:
            return None
        return replace(plan, gen_prefix=plan.gen_prefix + ids, stem=stem, min_tokens=ADD_MIN_TOKENS, cap=cap)

    def _round(self, plan: _Plan, sweep: _Sweep, indices: range, mults: list[float], gen_cache: Cache | None,
               generator: torch.nn.Module, edit: Edit | None, stop_ids: set[int], original: OriginalScore,
               score_cache: Cache | None, cancel: CancelToken | None) -> Iterator[SteerEvent]:
        """One round: the candidates `indices` sampled in one batch from the prompt's key/values `gen_cache`
        (repeated per row here), row j steered at `mults[j]`; each finished candidate is scored and added to
        `sweep`."""
        import torch

        request = plan.request
        rows = [_Row(j, torch.Generator().manual_seed(_seed(request.seed, j))) for j in indices]
        n = len(rows)
        total = indices.stop  # candidates asked for so far
        round_no = 1 + indices.start // max(1, n)
        row_mult = [mults[j] for j in indices]
        finished = sweep.finished
        self._row_scales["mult"] = torch.tensor(row_mult) if plan.ladder else None
        if gen_cache is not None and n > 1:
            gen_cache.batch_repeat_interleave(n)
        cur = torch.tensor([[plan.gen_prefix[-1]]] * n, device=self.lens.device)
        active = list(rows)
        need_space = bool(plan.moved) and not plan.chat
        copy_stem = _copy_stem(plan.core)
        tok = self.lens.tokenizer
        for step in range(plan.cap):
            if cancel is not None and cancel.is_set():
                sweep.cancelled = True
                break
            step_logits, gen_cache = self._forward(cur, gen_cache, edit=edit, model=generator)
            logits = step_logits[:, -1, :].float().clone()
            if step + 1 < plan.min_tokens:  # too early to end: no end-of-text, no line break in one-line spans
                for sid in stop_ids:
                    if sid < logits.shape[-1]:
                        logits[:, sid] = -math.inf
                if not plan.multi_line:
                    logits[:, self._token_masks(logits.shape[-1]).newline.to(logits.device)] = -math.inf
            if plan.banned:
                logits[:, list(plan.banned)] = -math.inf
            if step == 0 and plan.banned_first:
                logits[:, list(plan.banned_first)] = -math.inf
            if step == 0 and plan.stem:  # adding to the sentence: a new word or a clause mark, not its end
                masks = self._token_masks(logits.shape[-1])
                logits[:, ~(masks.words | masks.clause).to(logits.device)] = -math.inf
            if copy_stem:  # a row that has copied the original up to its last stop may not end it there
                copying = [k for k, row in enumerate(active) if row.text.strip() == copy_stem]
                if copying:
                    masks = self._token_masks(logits.shape[-1])
                    ending = (masks.ends | masks.newline).to(logits.device)
                    for k in copying:
                        logits[k, ending] = -math.inf
                        logits[k, list(stop_ids)] = -math.inf
            if step == 0 and need_space:
                allowed = self._token_masks(logits.shape[-1]).words.to(logits.device)
                if bool(allowed.any()):
                    logits[:, ~allowed] = -math.inf
            picks = self._sample(logits, active, request)
            done_now: list[tuple[_Row, str]] = []
            for row, token in zip(active, picks):
                hit = token in stop_ids
                piece = ""
                if not hit:
                    row.tokens.append(token)
                    sweep.generated += 1
                    new_text = tok.decode(row.tokens)
                    piece = new_text[len(row.text):] if new_text.startswith(row.text) else new_text[-1:]
                    row.text = new_text
                body = self._check_stop(plan, row, piece, hit)
                if body is not None:
                    row.done = True
                    done_now.append((row, body))
            yield SteerProgress(step + 1, plan.cap, len(finished), total, round_no, adds=bool(plan.stem))
            for row, body in done_now:
                candidate = self._candidate(plan, row, body, original, score_cache, mults[row.index])
                finished.append(candidate)
                if sweep.first_at is None:
                    sweep.first_at = time.perf_counter() - sweep.t0
                yield CandidateReady(candidate, len(finished), total)
            keep = [k for k, row in enumerate(active) if not row.done]
            if not keep:
                break
            if len(keep) < len(active):
                gen_cache.batch_select_indices(torch.tensor(keep, device=self.lens.device))
                if self._row_scales.get("mult") is not None:
                    self._row_scales["mult"] = self._row_scales["mult"][torch.tensor(keep)]
            active = [active[k] for k in keep]
            cur = torch.tensor([[picks[k]] for k in keep], device=self.lens.device)
        else:
            for row in active:  # the cap is the last step; rows reach it inside the loop, this is a guard
                if not row.done:
                    body = self._cut_at_cap(plan, plan.body(row.text))
                    candidate = self._candidate(plan, row, body, original, score_cache, mults[row.index])
                    finished.append(candidate)
                    yield CandidateReady(candidate, len(finished), total)
        self._row_scales["mult"] = None

    def _candidate(self, plan: _Plan, row: _Row, body: str, original: OriginalScore, cache: Cache | None,
                   multiplier: float = 1.0) -> Candidate:
        # Control characters (a model can sample \x0b, \x1c...) would become line breaks in the editor,
        # or worse: the writer gets, and the scores describe, the text without them.
        core = _CONTROL.sub("", plan.stem + body).strip()
        if plan.chat and not plan.stem:
            core = clean_reply(core, plan.core)
        if not core:
            core = plan.core  # an empty reply: the original, scored as such (it moves nothing)
        target, fluency, n_tokens, words = self._score(plan, core, cache)
        similarity = meaning_similarity(core, plan.core)
        gain = plan.direction * (target - original.target_activation) / plan.concept_scale
        change = fluency - original.fluency
        ratio = max(1, len(core.split())) / max(1, len(plan.core.split()))
        eps, half = (WORDS_EPS, WORDS_HALF) if plan.by_words else (RAISE_EPS, CONCEPT_HALF)
        score, parts, marks = combined_score(gain, change, similarity, ratio, eps, half)
        if _WORDS.findall(core.lower()) == _WORDS.findall(plan.core.lower()):
            marks = (MARK_UNCHANGED,) + marks
        elif talks_about_the_text(core, plan.core):
            marks = (MARK_META,) + marks
        if repeats_itself(core, plan.core):
            marks = marks + (MARK_REPEATS,)
        if plan.kind == "sentence" and not _SENTENCE_END.search(core):
            marks = marks + (MARK_UNFINISHED,)
        steered = any(plan.coeffs) or plan.vector is not None
        strength = None
        if steered and plan.ladder:  # the swept total strength (the features' weights sum to 1)
            strength = multiplier
        elif plan.vector is not None:
            strength = abs(plan.request.words_strength)
        elif steered:
            strength = round(max(abs(c / m) for c, m in zip(plan.coeffs, plan.scales) if m), 4)
        return Candidate(
            index=row.index, text=plan.lead + core + plan.trail, target_activation=target, fluency=fluency,
            similarity=similarity, gain=gain, score=score, raises_concept=gain > eps, n_tokens=n_tokens,
            fluency_change=change, length_ratio=ratio, strength=strength, parts=parts, marks=marks,
            words_gain=(None if words is None or original.words_level is None
                        else plan.direction * (words - original.words_level)),
            adds=bool(plan.stem),
        )


_PREAMBLE = re.compile(r"^(?:here(?:'s| is)[^:\n]{0,60}|[\w ]{0,30}\b(?:passage|sentence|text|version)"
                       r"|re\w*\s+(?:this|the)\s+(?:passage|sentence|text)\b[^:\n]{0,80})\s*:\s*", re.I)
# the last: the instruction echoed ("Rewite this sentence so that it is calmer: ...", typos and all)
MAX_ANNOUNCEMENT = 120  # characters: a longer first line ending in a colon is part of the rewrite
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’"}


def drop_announcement(reply: str) -> str:
    """A reply without a first line that only announces the rewrite ("The sentence can be rephrased as:" and
    a line break): the rewrite is what follows. Until the line break comes, the reply is as it stands."""
    head, sep, rest = reply.partition("\n")
    if sep and head.rstrip().endswith(":") and len(head) <= MAX_ANNOUNCEMENT:
        return rest.lstrip()
    return reply


def drop_lead_in(reply: str, original: str) -> str:
    """A reply without a lead-in that talks about the text, up to a colon the original does not have: "The
    reader will find this reworded version: It was a message..." is the rewrite after the colon (a small model
    announces a rewrite in many words; `talks_about_the_text`). Only colons within MAX_ANNOUNCEMENT characters,
    and only when words follow ("She had one wish: to see him" keeps its colon)."""
    if ":" in original:
        return reply
    cut = reply[:MAX_ANNOUNCEMENT].rfind(": ")
    rest = reply[cut + 2:].strip() if cut >= 0 else ""
    return rest if len(rest.split()) >= 3 and talks_about_the_text(reply[:cut], original) else reply


def clean_reply(reply: str, original: str) -> str:
    """An instruct model's reply as a replacement: a leading "Here is the rewritten passage:" (or the instruction
    echoed, a first line that announces the rewrite, or any lead-in before a colon the original does not have)
    dropped, and quotes around the whole reply dropped when the original is not quoted."""
    text = drop_lead_in(_PREAMBLE.sub("", drop_announcement(reply.strip())).strip(), original)
    if len(text) > 2 and text[0] in _QUOTES and text.endswith(_QUOTES[text[0]]) and original[:1] != text[0]:
        inner = text[1:-1].strip()
        if text[0] not in inner:
            text = inner
    return text


ADD_MIN_TOKENS = 2  # what a round that adds to the sentence adds at least (`Steerer._adding`)
READ_SLACK = 8  # positions kept free beyond the longer of the cap and the original (see _plan)
# Tokens of the text before that the re-read (and a base model's continuation) sees: the left context the
# analyzer gives every block (AnalysisConfig.context_tokens), so a passage's concept is read as the panel
# reads it; the whole text before would cost its length in every request (~2.7 ms a token on 2 cores).
READ_CONTEXT_TOKENS = 128
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def _seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + index * 7919 + 12345) % (2**63 - 1)

