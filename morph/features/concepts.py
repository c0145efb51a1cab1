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

from morph.errors import InputError
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
RELATED_WORDS = 4  # per concept word: its nearest whole words in the model's input embeddings
RELATED_WEIGHT = 0.6  # a feature whose labels hold a related word scores this much of one holding the word
FEW_LABELLED = 3  # fewer features than this labelled with the words themselves: search their related words too
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

    def concept(self) -> Concept:
        return Concept(self.id, self.label, self.score, self.max_act)


def concept_words(words: str) -> list[str]:
    """The words that carry a concept ("about the sea" -> ["sea"], "much calmer" -> ["calmer", "calm"]):
    filler words out; a comparative, adverb or plural adds its stem (calmer -> calm, formally -> formal,
    animals -> animal)."""
    out: list[str] = []
    for word in re.findall(r"[a-zA-Z][a-zA-Z'-]*", words.lower()):
        if word in _FILLER or len(word) < 3:
            continue
        forms = [word]
        for suffix, add in (("ier", "y"), ("ies", "y"), ("ful", ""), ("er", ""), ("ly", ""), ("ness", ""), ("s", "")):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
                stem = word[: -len(suffix)] + add
                if suffix == "er" and len(stem) >= 4 and stem[-1] == stem[-2]:
                    stem = stem[:-1]  # sadder -> sad, bigger -> big
                forms.append(stem)
                break
        for form in forms:
            if form not in out:
                out.append(form)
    return out


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

    ids = token_ids(lens, " " + word.lower())
    if len(ids) != 1:
        return []
    vocab = _vocabulary(lens)
    weight = vocab.weight
    with torch.inference_mode():
        query = weight[ids[0]].float()
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


def direction_of(words: str) -> str:
    """"toward", or "away" when the words ask for less of something ("less jargon", "not so formal")."""
    head = words.strip().lower().split()[:1]
    return "away" if head and head[0] in ("less", "fewer", "not", "no", "without") else "toward"


def _word_tokens(lens: Lens, words: list[str]) -> list[int]:
    """The first token of each word as running text would hold it (" sea", " Sea", "sea")."""
    ids: list[int] = []
    for word in words:
        for form in (" " + word, " " + word.capitalize(), word):
            toks = token_ids(lens, form)
            if toks and toks[0] not in ids:
                ids.append(toks[0])
    return ids


def _label_score(labels: FeatureLabels, feature: int, words: Sequence[str],
                 related: Sequence[str] = ()) -> tuple[float, list[str]]:
    """(0..1, matched words): the best over the concept words of 1 - k/10, where k is the word's place
    among the feature's distinctive words (label words and the tokens it fires on count too), and over the
    `related` words of RELATED_WEIGHT x the same; the forms of one word (calmer, calm) count once."""
    info = labels.info(feature)
    own = [w.lower() for w, _, _ in info.words] or [w.strip().lower() for w in info.label.split("·")]
    own += [t.lower() for t, _ in info.top_tokens if t.lower() not in own]
    best, matched = 0.0, []
    for word, weight in [(w, 1.0) for w in words] + [(w, RELATED_WEIGHT) for w in related]:
        if word in own:
            best = max(best, weight * max(0.1, 1 - own.index(word) / 10))
            matched.append(word)
    return best, matched


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


def concepts_for_words(lens: Lens, labels: FeatureLabels, words: str, text: str, start: int, end: int,
                       k: int = 8, example: str | None = None) -> list[ConceptMatch]:
    """Features for the writer's words (or, with `example`, for "more like this" passage), best first.

    Candidates: the label search (whole words only) for each concept word (`concept_words`), widened to the
    words the model puts nearest them (`related_words`: calm -> serene, tranquil, peaceful) when fewer than
    FEW_LABELLED features hold the words themselves, then to close spellings of the words when no label
    holds any of them; and the features stronger on the words themselves (or on the example) than on the
    selection (`more_like_this`). Words that no label matches at all are refused (the contrastive features
    of a word nobody labelled are noise). Each gets a label score (a related word's match counts
    RELATED_WEIGHT of the word's own) and an output score (`output_scores`, toward the concept words'
    tokens, or the example's content words: a related word that is really an antonym or a sibling, sad ->
    joyful, winter -> summer, finds features that score low here), and they are ranked by label score +
    output score / the best output score. Features whose output score is not positive go last: they do not
    move the model toward the words. InputError when nothing matches.
    """
    check_span(text, start, end)
    words = (words or "").strip()
    source_text = (example or "").strip() or words
    if not source_text:
        raise InputError("the concept is empty: type what you want more of (calmer, about the sea)")
    typed = set(re.findall(r"[a-z][a-z'-]*", source_text.lower()))
    # a stem the suffix rules made up (winter -> "wint") is no word of the model's: keep the words as typed
    concept = [w for w in concept_words(source_text) if w in typed or len(token_ids(lens, " " + w)) == 1]
    if not concept:
        raise InputError(f"no content word in {source_text!r}: say what the passage should be (calmer, about the sea)")
    found: dict[int, str] = {}
    related: list[str] = []
    if example is None:
        for word in concept:
            for feature in labels.search(word, limit=6, whole_words=True):
                found.setdefault(int(feature), "label")
        if len(found) < FEW_LABELLED:  # few labels hold the words: look for their near-synonyms too
            for word in concept:
                related += [r for r in related_words(lens, word) if r not in concept and r not in related]
            for word in related:
                for feature in labels.search(word, limit=2, whole_words=True):
                    found.setdefault(int(feature), "related")
        if not found:  # no whole-word match anywhere: close spellings of the words themselves
            for word in concept:
                for feature in labels.search(word, limit=6):
                    found.setdefault(int(feature), "label")
    if example is None and not found:
        raise InputError(f"no feature matches {source_text!r}: try other words, an example passage (more like "
                         "this), or a feature number")
    try:
        probe = source_text if example is not None else " ".join(concept)
        for c in more_like_this(lens, labels, probe, text, start, end, k=4 if example is None else 8,
                                words=example is None):
            found.setdefault(c.id, "example")
    except InputError:
        pass
    if labels.norms() is not None:  # with statistics, dead features (never fire on the corpus) are no use
        found = {i: s for i, s in found.items() if labels.typical_max(i) is not None}
    if not found:
        raise InputError(f"no feature matches {source_text!r}: try other words, or a feature number")
    ids = list(found)[:MAX_CANDIDATE_FEATURES]
    targets = _word_tokens(lens, concept[:8])
    controls = [t for t in _word_tokens(lens, list(CONTROL_WORDS)) if t not in targets]
    outputs = output_scores(lens, labels, ids, targets, text, start, end, controls=controls)
    best = max([o for o in outputs if o > 0], default=0.0)
    matches = []
    for feature, output in zip(ids, outputs):
        label_score, matched = _label_score(labels, feature, concept, related)
        score = label_score + (output / best if best > 0 and output > 0 else 0.0)
        if found[feature] in ("label", "related"):
            why = f"labels hold {_held(matched, related)}" if matched else "label close to the words"
        else:
            why = "fires more on " + ("the example" if example is not None else "your words") + " than on the passage"
            if matched:
                why += f", labels hold {_held(matched, related)}"
        why += f"; output {output:+.2f} nats toward {', '.join(concept[:3])}"
        matches.append(ConceptMatch(feature, labels.label(feature), label_score, output, score, why,
                                    found[feature], labels.typical_max(feature)))
    matches.sort(key=lambda m: (m.output_score <= 0, -m.score))
    return matches[:k]
