"""Choosing what to steer toward: features active in a selection, a label search, "more like this".

All of it reads the SAE's features at the hook point; nothing here generates text. The selection is
read with its left context (the tokens before it, up to the model's context size), so its features are
the ones the editor shows for it.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from morph.errors import InputError, NoFeatureMatches
from morph.features.intensity import unit_scales

if TYPE_CHECKING:
    import torch

    from morph.features.labels import FeatureLabels
    from morph.models.lens import Lens


@dataclass(frozen=True)
class Concept:
    """A feature offered as a steering target."""

    id: int
    label: str
    activation: float  # mean over the selection's tokens (more-like-this: example minus selection; search: 0)
    max_act: float | None = None  # typical max activation from the labels file, if known


@dataclass
class SpanFeatures:
    """SAE features of the tokens around a selection (torch tensors, float32, on the lens's device)."""

    window: torch.Tensor  # [n_window, d_sae]: every token of the window read (BOS excluded)
    span: torch.Tensor  # [n_span, d_sae]: the tokens overlapping the selection
    n_span: int


def check_span(text: str, start: int, end: int) -> None:
    """InputError (one line) unless [start, end) is a non-empty range of `text` with words in it."""
    if not isinstance(text, str):
        raise InputError("the document is not text")
    if not isinstance(start, int) or not isinstance(end, int):
        raise InputError("the selection offsets must be whole numbers")
    if start < 0 or end > len(text) or start > end:
        raise InputError(f"the selection [{start}, {end}) is outside the text (0 to {len(text)} characters)")
    if start == end:
        raise InputError("the selection is empty: select the text to rewrite")
    if not text[start:end].strip():
        raise InputError("the selection is only whitespace: select words to rewrite")


def token_ids(lens: Lens, text: str) -> list[int]:
    return list(lens.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_tokens(lens: Lens, ids: list[int]) -> torch.Tensor:
    """SAE features [len(ids), d_sae] of `ids` read as one sequence (BOS prepended when the SAE wants it)."""
    import torch

    from morph.models.hooks import capture

    bos = lens.bos_prefix
    ids = list(ids)[-(lens.context_size - len(bos)):]
    if not ids:
        return torch.zeros((0, lens.d_sae), device=lens.device)
    input_ids = torch.tensor([bos + ids], device=lens.device)
    with lens.lock:
        acts = capture(lens.model, lens.hook, input_ids)
    with torch.inference_mode():
        feats = lens.sae.encode(acts[0, len(bos):].to(lens.sae.W_dec.dtype))
    return feats.float()


def span_window(lens: Lens, text: str, start: int, end: int) -> tuple[list[int], int]:
    """(the token ids of the window that reads the selection: the text before as far as the model's context
    allows, then the tokens overlapping [start, end); where in it the selection's tokens start). InputError
    when the selection has no tokens or does not fit the context."""
    check_span(text, start, end)
    enc = lens.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    inside = [k for k, (a, b) in enumerate(offsets) if b > start and a < end and b > a]
    if not inside:
        raise InputError("the selection has no tokens")
    first, last = inside[0], inside[-1]
    room = lens.context_size - 1
    lo = max(0, last + 1 - room)
    if first < lo:
        raise InputError(f"the selection is too long to read at once ({last + 1 - first} tokens; at most {room})")
    return list(ids[lo:last + 1]), first - lo


def span_features(lens: Lens, text: str, start: int, end: int) -> SpanFeatures:
    """The features of the tokens overlapping [start, end), read with the text before as context."""
    ids, first = span_window(lens, text, start, end)
    feats = encode_tokens(lens, ids)
    return SpanFeatures(window=feats, span=feats[first:], n_span=len(ids) - first)


def feature_units(labels: FeatureLabels, features: list[int], window: torch.Tensor | None = None) -> list[float]:
    """Each feature's unit of intensity (morph.features.intensity.unit_scales) for steering: its typical
    max from the statistics, else its max on `window` (the features [n_tokens, d_sae] of the text read),
    else the median max of the features firing there, else 1."""
    norms = labels.norms()
    observed = window.max(dim=0).values.float().cpu().numpy() if window is not None and len(window) else None
    units = unit_scales(labels.d_sae, norms.typical if norms is not None else None, observed)
    return [float(units[i]) for i in features]


def concepts_in_span(lens: Lens, labels: FeatureLabels, text: str, start: int, end: int, k: int = 10,
                     features: SpanFeatures | None = None) -> list[Concept]:
    """The `k` features with the highest mean activation over the selection's tokens, strongest first."""
    feats = features or span_features(lens, text, start, end)
    mean = feats.span.mean(dim=0)
    k = max(0, min(k, int((mean > 0).sum())))
    if k == 0:
        return []
    values, ids = mean.topk(k)
    return [Concept(int(i), labels.label(int(i)), float(v), labels.typical_max(int(i)))
            for v, i in zip(values.tolist(), ids.tolist())]


def search_concepts(labels: FeatureLabels, query: str, limit: int = 10) -> list[Concept]:
    """Features whose label matches `query` (FeatureLabels.search's order, dead features last); InputError
    when none does."""
    query = (query or "").strip()
    if not query:
        raise InputError("the concept text is empty")
    found = labels.search(query, limit=limit)
    if not found:
        raise InputError(f"no feature label matches {query!r}: try another word, or give a feature number")
    concepts = [Concept(int(i), labels.label(int(i)), 0.0, labels.typical_max(int(i))) for i in found]
    if any(c.max_act is not None for c in concepts):  # statistics known: features that never fire go last
        concepts.sort(key=lambda c: c.max_act is None)
    return concepts


# Neutral words a few concept words are read against: a short text read alone lights features of "a short
# text after BOS" (on the default, "want · would · will" and the like fire on any one or two words), which
# the selection, read in context, does not; they are no more about the words than about these.
CONTROL_WORDS = ("table", "number", "Tuesday", "window", "paper", "walk")


_CONTROL_FEATURES: "weakref.WeakKeyDictionary[Lens, torch.Tensor]" = weakref.WeakKeyDictionary()


def control_features(lens: Lens) -> torch.Tensor:
    """[d_sae]: each feature's largest mean activation over CONTROL_WORDS, each read alone (once per lens:
    they never change)."""
    import torch

    found = _CONTROL_FEATURES.get(lens)
    if found is None:
        means = [encode_tokens(lens, token_ids(lens, word)).mean(dim=0) for word in CONTROL_WORDS]
        found = _CONTROL_FEATURES[lens] = torch.stack(means).amax(dim=0)
    return found


def more_like_this(lens: Lens, labels: FeatureLabels, example: str, text: str, start: int, end: int,
                   k: int = 3, words: bool = False) -> list[Concept]:
    """The features whose mean activation on `example` most exceeds their mean on the selection.

    `activation` is that difference; steer toward all of them at once for "make it more like this". With
    `words` (the example is a few concept words, not a passage) each feature's baseline is the largest of
    its mean on the selection and its means on each of CONTROL_WORDS read alone, so that features of any
    short text do not pass for the words' own.
    """
    if not (example or "").strip():
        raise InputError("the example is empty: give a passage to imitate")
    sel = span_features(lens, text, start, end).span.mean(dim=0)
    ex_ids = token_ids(lens, example)
    ex = encode_tokens(lens, ex_ids).mean(dim=0)
    if words:
        sel = sel.maximum(control_features(lens))
    diff = ex - sel
    k = max(0, min(k, int((diff > 0).sum())))
    if k == 0:
        raise InputError("no feature is stronger in the example than in the selection")
    values, ids = diff.topk(k)
    return [Concept(int(i), labels.label(int(i)), float(v), labels.typical_max(int(i)))
            for v, i in zip(values.tolist(), ids.tolist())]


# ----- concepts in words ---------------------------------------------------------------------------------------

_FILLER = frozenset("""a an the more less much very bit little slightly make it its be is about of on with and or
to into than that this so sound feel like lot some not no without fewer""".split())
RELATED_WORDS = 6  # per concept word: its nearest whole words in the model's input embeddings
RELATED_WEIGHT = 0.6  # a feature whose labels hold a related word scores this much of one holding the word
FEW_LABELLED = 3  # fewer features than this whose labels show the words: search their related words too
SHOWN_LABEL = 0.8  # a label score this high: the word (a form of it) is among the three words a label shows
STEERS_SHARE = 0.1  # a shown label ranks first when its output score is at least this share of the best
FORM_SIMILARITY = 0.45  # input-embedding cosine from which two one-token words are forms of one (word_family)
OUTPUT_STRENGTH = 4.0  # the strength (x typical max) at which a feature's output score is measured
OUTPUT_WINDOW = 32  # tokens of the passage (with the text before) the output score is averaged over
MAX_CANDIDATE_FEATURES = 16


@dataclass(frozen=True)
class ConceptMatch:
    """A feature chosen for the writer's words, with why: how well its labels match the words, and how
    much its decoder direction moves the model's next-token distribution toward them."""

    id: int
    label: str
    label_score: float  # 0..1: the words among the feature's distinctive words/label (1 = its top word)
    output_score: float  # nats: mean gain in log-probability of the words' tokens when steered (see below)
    score: float  # what they are ranked by: label_score + output_score / best output_score (if > 0)
    why: str  # one line: which words matched, or that it fires on the words; the output score
    source: str = "label"  # "label" (label search), "example" (fires on the words or the example more)
    max_act: float | None = None
    near_only: bool = False  # its labels hold only words near the writer's (calm -> "peaceful"), none of theirs

    def concept(self) -> Concept:
        return Concept(self.id, self.label, self.score, self.max_act)


LABELLED = 0.05  # a label score above this: some label holds the words or a near word


def unlabelled(words: str, matches: Sequence[ConceptMatch]) -> bool:
    """Whether the writer's words found features but no chosen feature's label holds the words themselves
    (this SAE has no feature for "sadder" or "calmer"): those features only fire on the words, move the model
    toward them, or are labelled by near words ("while · peace · when" for calmer), and the words alone are
    the better default (the editor and `morph steer` go by them unless the writer picks a feature). A
    feature of a near word seldom fires on a rewrite in the asked direction: on three of the steering
    benchmark's "calmer" passages, "while · peace · when" rose in none of 36 hybrid candidates."""
    return bool(words.strip()) and bool(matches) and not any(m.label_score > LABELLED and not m.near_only
                                                             for m in matches)


def unlabelled_reason(words: str) -> str:
    """Why words go alone though features were found (`unlabelled`), as the pane and `morph steer` say it."""
    return f"no feature's label holds {words.strip()!r}"


def unlabelled_note(words: str, matches: Sequence[ConceptMatch]) -> str | None:
    """What to tell the writer when `unlabelled`: the features shown only fire on the words, move the model
    toward them or hold near words, and the words alone are the default. None otherwise."""
    if not unlabelled(words, matches):
        return None
    return (f"{unlabelled_reason(words)}: these features only fire on the words, move the model toward them or "
            "hold near words (your words alone are the default)")


def concept_words(words: str) -> list[str]:
    """The words that carry a concept, as typed ("about the sea" -> ["sea"], "much calmer" -> ["calmer"]):
    filler words and words under three letters out, each once."""
    out: list[str] = []
    for word in re.findall(r"[a-zA-Z][a-zA-Z'-]*", words.lower()):
        if word not in _FILLER and len(word) >= 3 and word not in out:
            out.append(word)
    return out


# (suffix, what replaces it) for a word's stem, tried in this order: angrily -> angry, calmer -> calm
_STEM_RULES = (("ily", "y"), ("ier", "y"), ("iness", "y"), ("ies", "y"), ("ful", ""), ("ness", ""), ("er", ""),
               ("ly", ""), ("s", ""))


def word_stem(word: str) -> str | None:
    """The word less one regular suffix (calmer -> calm, angrily -> angry, sadder -> sad, animals ->
    animal), or None. Unchecked: summer -> "sum" and winter -> "wint" come out too (`word_family` checks)."""
    if word.endswith("ss"):
        return None
    for suffix, add in _STEM_RULES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + add
            if suffix == "er" and len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "ls":
                stem = stem[:-1]  # sadder -> sad, bigger -> big (not smaller -> smal)
            return stem
    return None


def derived_forms(base: str) -> list[str]:
    """A base word's regular comparative, adverb, noun and plural (calm -> calmer, calmly, calmness, calms;
    angry -> angrier, angrily, angriness, angries; sad -> sadder, sadly...). Unchecked: some are no words."""
    if base.endswith("y") and len(base) > 3:
        root = base[:-1]
        return [root + "ier", root + "ily", root + "iness", root + "ies"]
    if base.endswith("le"):
        return [base + "r", base[:-1] + "y", base + "s"]  # gentle -> gentler, gently
    if base.endswith("e"):
        return [base + "r", base + "ly", base + "ness", base + "s"]
    short = len(base) == 3 and base[0] not in "aeiou" and base[1] in "aeiou" and base[2] not in "aeiouwxy"
    return [(base + base[-1] if short else base) + "er", base + "ly", base + "ness", base + "s"]


@dataclass(frozen=True)
class _Vocabulary:
    """What `related_words` reads of a model's vocabulary (once per lens)."""

    weight: torch.Tensor  # [vocab, d_model]: the model's input embeddings (the model's own tensor, no copy)
    text: list[str]  # each token decoded alone
    whole: torch.Tensor  # bool [vocab]: a lowercase whole word of 3+ letters after a space (" serene")
    norms: torch.Tensor  # [vocab]: each input embedding's norm


_VOCABULARIES: "weakref.WeakKeyDictionary[Lens, _Vocabulary]" = weakref.WeakKeyDictionary()
_NEGATIONS = ("un", "in", "im", "ir", "il", "dis", "non")


def _vocabulary(lens: Lens) -> _Vocabulary:
    import torch

    found = _VOCABULARIES.get(lens)
    if found is None:
        # the Lens's model is typed as either Morph's Llama or transformers' model: mypy reads the method
        # through nn.Module's __getattr__
        weight = lens.model.get_input_embeddings().weight.detach()  # type: ignore[operator]
        text = lens.tokenizer.batch_decode([[i] for i in range(weight.shape[0])])
        whole = torch.tensor([re.fullmatch(r" [a-z]{3,}", t) is not None for t in text], device=weight.device)
        found = _VOCABULARIES[lens] = _Vocabulary(weight, text, whole, weight.float().norm(dim=-1))
    return found


def related_words(lens: Lens, word: str, k: int = RELATED_WORDS) -> list[str]:
    """The `k` whole words nearest `word` in the model's own input embeddings (cosine), other than the
    word's own forms and its negations: calm -> serene, soothing, tranquility, tranquil; sea -> ocean,
    marine, lake. Nearest words can be antonyms or siblings (sad -> joyful, winter -> summer): the caller
    weighs what they find against the word itself (`concepts_for_words`'s output score). [] when the word is
    not one token of the vocabulary."""
    import torch

    token = _word_token(lens, word.lower())
    if token is None:
        return []
    vocab = _vocabulary(lens)
    weight = vocab.weight
    with torch.inference_mode():
        query = weight[token].float()
        sims = (weight.float() @ query) / (vocab.norms * query.norm()).clamp_min(1e-8)
        sims = sims.masked_fill(~vocab.whole, -2.0)
        nearest = sims.topk(min(8 * k + 8, len(sims))).indices.tolist()
    stem = word.lower()[:4]
    out: list[str] = []
    for i in nearest:
        candidate = vocab.text[i].strip()
        if candidate.startswith(stem) or any(candidate.startswith(p + stem) for p in _NEGATIONS):
            continue
        out.append(candidate)
        if len(out) == k:
            break
    return out


def _word_token(lens: Lens, word: str) -> int | None:
    """The vocabulary's token for " word", or None when running text spells it with several."""
    ids = token_ids(lens, " " + word)
    return ids[0] if len(ids) == 1 else None


def word_family(lens: Lens, word: str) -> tuple[str, ...]:
    """`word`, then those of its stem (`word_stem`) and the stem's derived forms (`derived_forms`) that the
    model reads as the same word: where both are one token of its vocabulary, their input embeddings'
    cosine is at least FORM_SIMILARITY (calm ~ calmer 0.73, calm ~ calmly 0.63, sad ~ sadness 0.68; summer
    and "sum" 0.24, corner and "corn" 0.40 are not one word). A stem of several tokens is made up ("wint")
    and left out; a derived form of several tokens (angrily, sadder) is kept, as is every form of a typed
    word the vocabulary spells in pieces (angrier -> angry, checked against angry). A comparative's stem is
    tried with the "e" its suffix took too (gentler -> gentle, nicer -> nice, not the token " nic")."""
    import torch

    vocab = _vocabulary(lens)

    def cosine(a: int, b: int) -> float:
        with torch.inference_mode():
            dot = vocab.weight[a].float() @ vocab.weight[b].float()
            return float(dot / (vocab.norms[a] * vocab.norms[b]).clamp_min(1e-8))

    def close(a: int, b: int) -> bool:
        return cosine(a, b) >= FORM_SIMILARITY

    anchor = _word_token(lens, word)
    first = word_stem(word)
    # a comparative's stem may keep an "e" the suffix took: nicer -> nice, gentler -> gentle, braver -> brave
    options = [first, first + "e"] if first and word.endswith("er") else [first] if first else []
    tokens = {o: t for o in options if (t := _word_token(lens, o)) is not None}
    stem: str | None = None
    if tokens and anchor is None:  # the typed word is in pieces: the stem with its "e" where that is a word
        stem = options[-1] if options[-1] in tokens else options[0]
        anchor = tokens[stem]
    elif tokens and anchor is not None:  # both whole words: the closer, if close enough (not summer -> sum)
        typed = anchor
        best = max(tokens, key=lambda o: cosine(typed, tokens[o]))
        stem = best if close(typed, tokens[best]) else None
    out = [word] + ([stem] if stem else [])
    for form in derived_forms(stem or word):
        token = _word_token(lens, form)
        if form not in out and (token is None or anchor is None or close(anchor, token)):
            out.append(form)
    return tuple(out)


def word_measure_tokens(lens: Lens, words: str) -> tuple[list[int], list[int]]:
    """(targets, controls) for measuring a concept by the writer's words alone (steering.WORDS_PROBE): the
    one-token forms of each concept word's family (`word_family`: "scarier" -> " scary"; "calmer" -> " calmer",
    " calm", " calmly"...), and those of CONTROL_WORDS that are not targets. Targets [] when no form of any
    word is one token of the vocabulary."""
    targets = _word_tokens(lens, [w for word in concept_words(words) for w in word_family(lens, word)], whole=True)
    controls = [t for t in _word_tokens(lens, CONTROL_WORDS, whole=True) if t not in targets]
    return targets, controls


# "Contrastive directions from a few words" (ActAdd, Turner et al. 2023): the words read in short carriers.
WORD_CARRIERS = ("It felt {}.", "The evening was {}.", "She was {} about it.")
WORD_FORMS = 4  # of each concept word's family (word_family), the forms whose activations make its direction

_WORDS_DIRECTIONS: "weakref.WeakKeyDictionary[Lens, dict[str, torch.Tensor | None]]" = weakref.WeakKeyDictionary()
_FEATURE_UNIT: "weakref.WeakKeyDictionary[Lens, float]" = weakref.WeakKeyDictionary()
_CONTROLS_KEY = "\ncontrols"  # in _WORDS_DIRECTIONS: never a key of concept words (letters and spaces)


def _carried(lens: Lens, words: Sequence[str]) -> torch.Tensor:
    """[d_in]: the mean activation at the hook over each word's own tokens in each of WORD_CARRIERS (one pass)."""
    import torch

    from morph.models.hooks import capture_rows

    bos = lens.bos_prefix
    rows, spans = [], []
    for word in words:
        for carrier in WORD_CARRIERS:
            head = carrier.split("{}")[0]
            rows.append(bos + token_ids(lens, carrier.format(word)))
            spans.append((len(bos) + len(token_ids(lens, head.rstrip())),
                          len(bos) + len(token_ids(lens, head + word))))
    with lens.lock, torch.inference_mode():
        acts = capture_rows(lens.model, lens.hook, rows, device=lens.device)
    return torch.stack([a[lo:max(hi, lo + 1)].float().mean(dim=0) for a, (lo, hi) in zip(acts, spans)]).mean(dim=0)


def feature_unit_norm(lens: Lens, labels: FeatureLabels) -> float:
    """The norm of what a typical feature adds at the hook at its typical max: the median over features of
    typical max x decoder row norm (features without statistics count 1 x their row norm). A direction that
    is not a feature's is steered in this unit, so the strengths and the sweep mean the same for both."""
    import torch

    found = _FEATURE_UNIT.get(lens)
    if found is None:
        rows = lens.sae.W_dec.detach().float().norm(dim=-1).cpu()
        maxes = torch.tensor([labels.typical_max(i) or 1.0 for i in range(lens.d_sae)])
        found = _FEATURE_UNIT[lens] = float((rows * maxes).median())
    return found


def words_direction(lens: Lens, labels: FeatureLabels, words: str) -> torch.Tensor | None:
    """[d_in]: a contrastive direction for the writer's words, steered when no feature carries them: the mean
    activation at the hook over the first WORD_FORMS forms of each concept word (`word_family`: calmer ->
    calmer, calm, calmly) read in WORD_CARRIERS, minus the same over CONTROL_WORDS, scaled to
    `feature_unit_norm` (so strength 1 adds what a typical feature adds at its typical max). None for words
    with no content word. Once per lens and words.

    On the steering benchmark's 8 pairs that go by the words ("calmer", "sadder"), hybrid's top candidate
    moved the words' reading in 6 ("The commuters stood on the platform, gazing out at the horizon." toward
    calmer), the instruction alone in 4, with the same seeds."""
    cache = _WORDS_DIRECTIONS.setdefault(lens, {})
    carried = concept_words(words)
    key = " ".join(carried)
    if key not in cache:
        forms = [w for word in carried for w in word_family(lens, word)[:WORD_FORMS]]
        if not forms:
            cache[key] = None
        else:
            controls = cache.get(_CONTROLS_KEY)
            if controls is None:  # the control words' reading, the same for any words
                controls = cache[_CONTROLS_KEY] = _carried(lens, CONTROL_WORDS)
            vec = _carried(lens, forms) - controls
            cache[key] = vec / vec.norm().clamp_min(1e-8) * feature_unit_norm(lens, labels)
    return cache[key]


def direction_of(words: str) -> str:
    """"toward", or "away" when the words ask for less of something ("less jargon", "not so formal")."""
    head = words.strip().lower().split()[:1]
    return "away" if head and head[0] in ("less", "fewer", "not", "no", "without") else "toward"


def _word_tokens(lens: Lens, words: Sequence[str], whole: bool = False) -> list[int]:
    """The first token of each word as running text would hold it (" sea", " Sea", "sea"), each once; `whole`:
    only the forms that are one token, and the capitalized one without a space too ("Sea")."""
    ids: list[int] = []
    for word in words:
        for form in (" " + word, " " + word.capitalize(), word) + ((word.capitalize(),) if whole else ()):
            toks = token_ids(lens, form)
            if toks and (len(toks) == 1 or not whole) and toks[0] not in ids:
                ids.append(toks[0])
    return ids


def _label_score(labels: FeatureLabels, feature: int, families: Sequence[Sequence[str]],
                 related: Sequence[str] = ()) -> tuple[float, float, list[str]]:
    """(0..1 with the related words, 0..1 on the concept words alone, matched words): the best over the
    concept words of 1 - k/10, where k is the first place of any of the word's forms (its `word_family`)
    among the feature's distinctive words (label words and the tokens it fires on count too), and over the
    `related` words of RELATED_WEIGHT x the same."""
    info = labels.info(feature)
    own = [w.lower() for w, _, _ in info.words] or [w.strip().lower() for w in info.label.split("·")]
    own += [t.lower() for t, _ in info.top_tokens if t.lower() not in own]
    best, best_own, matched = 0.0, 0.0, []
    for family, weight in [(f, 1.0) for f in families] + [((w,), RELATED_WEIGHT) for w in related]:
        place = next((k for k, w in enumerate(own) if w in family), None)
        if place is not None:
            score = weight * max(0.1, 1 - place / 10)
            best = max(best, score)
            best_own = max(best_own, score if weight == 1.0 else 0.0)
            matched.append(own[place])
    return best, best_own, matched


def _held(matched: list[str], related: Sequence[str]) -> str:
    """The matched words for a why line, a related word marked as one: "'sea', 'ocean' (near your words)"."""
    return ", ".join(repr(w) + (" (near your words)" if w in related else "") for w in matched)


def output_scores(lens: Lens, labels: FeatureLabels, features: list[int], targets: list[int], text: str,
                  start: int, end: int, strength: float = OUTPUT_STRENGTH,
                  controls: list[int] | None = None) -> list[float]:
    """Per feature, how much adding its decoder direction (strength x its typical max, capped at the
    residual's norm) at the hook raises the log-probability mass the model puts on the `targets` tokens
    next, averaged over the last OUTPUT_WINDOW positions up to the passage's end: mean_t [log sum_{y in
    targets} p_steered(y | t) - log sum p_plain(y | t)], in nats. One batched forward (row 0 unsteered).
    With `controls` (tokens of words unrelated to the concept) the same gain on them is subtracted: a
    direction that flattens the distribution raises every unlikely word, the concept's among them, and
    is no more about the concept than about the controls.
    After Arad et al. (2025), "SAEs are good for steering if you select the right features": a feature's
    output score predicts how well it steers much better than how it reads."""
    import torch

    from morph.models.hooks import edit_activations

    if not features or not targets:
        return [0.0] * len(features)
    enc = lens.tokenizer(text[:end], add_special_tokens=False)["input_ids"]
    bos = [lens.bos_token_id] if lens.bos_token_id is not None else []
    ids = bos + list(enc)[-OUTPUT_WINDOW:]
    sae = lens.sae
    units = feature_units(labels, features)
    with torch.inference_mode():
        eye = torch.zeros((len(features), lens.d_sae), dtype=sae.W_dec.dtype, device=sae.W_dec.device)
        for row, (feature, unit) in enumerate(zip(features, units)):
            eye[row, feature] = strength * unit
        vecs = (sae.decode(eye) - sae.decode(torch.zeros_like(eye[:1]))).float()
        vecs = torch.cat([torch.zeros_like(vecs[:1]), vecs])  # row 0: no steering
    batch = torch.tensor([ids] * len(vecs), device=lens.device)

    def add(acts: torch.Tensor) -> torch.Tensor:
        vec = vecs.to(device=acts.device, dtype=acts.dtype)[:, None, :]
        if acts.shape[0] != vec.shape[0]:
            return acts
        scale = (acts.norm(dim=-1, keepdim=True) / vec.norm(dim=-1, keepdim=True).clamp_min(1e-8)).clamp(max=1.0)
        out = acts + scale * vec
        out[:, : len(bos)] = acts[:, : len(bos)]  # leave the BOS position alone
        return out

    with lens.lock, torch.inference_mode(), edit_activations(lens.model, lens.hook, add):
        logits = lens.model(input_ids=batch).logits[:, len(bos):].float()
    logp = torch.log_softmax(logits, dim=-1)

    def gain(tokens: list[int]) -> torch.Tensor:
        mass = torch.logsumexp(logp[..., torch.tensor(tokens, device=logp.device)], dim=-1)  # [rows, positions]
        return (mass[1:] - mass[:1]).mean(dim=-1)

    return (gain(targets) - gain(controls) if controls else gain(targets)).tolist()


def _tier(own_label: float, output: float, best_output: float) -> int:
    """Where a feature ranks, from its label score on the writer's own words (near words not counted) and
    its output score: 0, its label shows the words and it steers (output at least STEERS_SHARE of the
    best); 1, its labels hold the words further down, output positive; 2, its labels hold only near words,
    or it only fires on the words, output positive; 3, it does not move the model toward the words."""
    if output <= 0:
        return 3
    if own_label >= SHOWN_LABEL and output >= STEERS_SHARE * best_output:
        return 0
    return 1 if own_label > 0 else 2


def concepts_for_words(lens: Lens, labels: FeatureLabels, words: str, text: str, start: int, end: int,
                       k: int = 8, example: str | None = None) -> list[ConceptMatch]:
    """Features for the writer's words (or, with `example`, for "more like this" passage), best first.

    Candidates: the label search (whole words only) for each concept word (`concept_words`) and its forms
    (`word_family`: angrier also finds "angrily"), widened to the words the model puts nearest them
    (`related_words`: calm -> serene, tranquil, peaceful) when fewer than FEW_LABELLED labels show the words
    themselves, then, for a word the vocabulary does not hold whole (a misspelling), to close spellings of
    it; and the features stronger on the words themselves (or on the example) than on the selection
    (`more_like_this`). Words that no label matches at all are refused (the contrastive features of a word
    nobody labelled are noise). Each gets a label score (a related word's match counts RELATED_WEIGHT of the
    word's own) and an output score (`output_scores`, toward the concept words' tokens, or the example's
    content words: a related word that is really an antonym or a sibling, sad -> joyful, winter -> summer,
    finds features that score low here), and they are ranked by label score + output score / the best
    output score, in tiers (`_tier`): features whose label shows the words and that steer first, then
    those whose labels hold the words further down, then those whose labels hold near words or that only
    fire on the words, then those whose output score is not positive (they do not move the model toward
    the words). InputError when nothing matches.
    """
    check_span(text, start, end)
    words = (words or "").strip()
    source_text = (example or "").strip() or words
    if not source_text:
        raise InputError("the concept is empty: type what you want more of (calmer, about the sea)")
    concept = concept_words(source_text)
    if not concept:
        raise InputError(f"no content word in {source_text!r}: say what the passage should be (calmer, about the sea)")
    families = [word_family(lens, word) for word in concept]
    found: dict[int, str] = {}
    related: list[str] = []
    if example is None:
        for family in families:
            for feature in labels.search(family[0], limit=6, whole_words=True, forms=family[1:]):
                found.setdefault(int(feature), "label")
        shown = [i for i in found if _label_score(labels, i, families)[1] >= SHOWN_LABEL]
        if len(shown) < FEW_LABELLED:  # few labels show the words: look for their near-synonyms too
            for family in families:
                stem = word_stem(family[0])  # calmer: the words near "calmer" and near "calm"
                for head in [w for w in (family[0], stem) if w in family]:
                    related += [r for r in related_words(lens, head) if r not in family and r not in related]
            for word in related:
                for feature in labels.search(word, limit=2, whole_words=True):
                    found.setdefault(int(feature), "related")
        if not found:  # a word the vocabulary does not hold whole (a misspelling?): close spellings of it
            for family in families:
                if all(_word_token(lens, w) is None for w in family):
                    for feature in labels.search(family[0], limit=6):
                        found.setdefault(int(feature), "label")
    if example is None and not found:
        raise NoFeatureMatches(f"no feature matches {source_text!r}: try other words, an example passage (more "
                               "like this), a feature number, or your words alone")
    try:
        probe = source_text if example is not None else " ".join(  # each word, and its stem where it has one
            w for f in families for w in f if w in (f[0], word_stem(f[0])))
        for c in more_like_this(lens, labels, probe, text, start, end, k=4 if example is None else 8,
                                words=example is None):
            found.setdefault(c.id, "example")
    except InputError:
        pass
    if labels.norms() is not None:  # with statistics, dead features (never fire on the corpus) are no use
        found = {i: s for i, s in found.items() if labels.typical_max(i) is not None}
    if not found and example is not None:
        raise InputError(f"no feature matches {source_text!r}: try another example, or a feature number")
    if not found:
        raise NoFeatureMatches(f"no feature matches {source_text!r}: try other words, a feature number, or your "
                               "words alone")
    ids = list(found)[:MAX_CANDIDATE_FEATURES]
    targets = _word_tokens(lens, [w for f in families for w in f if w == f[0] or _word_token(lens, w) is not None][:8])
    controls = [t for t in _word_tokens(lens, list(CONTROL_WORDS)) if t not in targets]
    outputs = output_scores(lens, labels, ids, targets, text, start, end, controls=controls)
    best = max([o for o in outputs if o > 0], default=0.0)
    matches, tiers = [], {}
    for feature, output in zip(ids, outputs):
        label_score, own_label, matched = _label_score(labels, feature, families, related)
        tiers[feature] = _tier(own_label, output, best)
        score = label_score + (output / best if best > 0 and output > 0 else 0.0)
        if found[feature] in ("label", "related"):
            why = f"labels hold {_held(matched, related)}" if matched else "label close to the words"
        else:
            why = "fires more on " + ("the example" if example is not None else "your words") + " than on the passage"
            if matched:
                why += f", labels hold {_held(matched, related)}"
        why += f"; output {output:+.2f} nats toward {', '.join(concept[:3])}"
        matches.append(ConceptMatch(feature, labels.label(feature), label_score, output, score, why,
                                    found[feature], labels.typical_max(feature),
                                    near_only=label_score > 0 and own_label == 0))
    matches.sort(key=lambda m: (tiers[m.id], -m.score))
    return matches[:k]
