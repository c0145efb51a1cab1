"""The analysis engine: text in; tokens with offsets, sparse SAE features, paragraph summaries out.

How a document is cut (and why incremental equals from-scratch): the whole text is tokenized with
character offsets (in the editor, the tokens around an edit are spliced into the previous ones; where that
is not exact by construction, the splice is checked against the full tokenization after the cursor's
block and before the rest: morph.features.tokens), then cut into *blocks* at the ends of newline runs (at
least `min_block_tokens` long, at most `max_block_tokens`, split at a sentence end where a paragraph runs
longer). Consecutive blocks form *segments* of at most `segment_tokens` tokens; a segment also starts at
every *anchor* block (one whose first tokens hash to 0 modulo `segment_every`), so segment boundaries are
a function of the nearby tokens and an edit moves at most the boundaries between two anchors. A segment
is run through the model as [BOS] + the `context_tokens` tokens before it + its blocks, so a block's
activations depend only on the tokens from its segment's left context to its own end. That run of ids is
the block's cache key: after an edit only the blocks whose key changed (the edited block, the blocks after
it in its segment, and the next segment when its left context reaches into the edit) are recomputed, so
the cost follows the edit, not the document, and no document is too long for the model's context. A
first analysis runs each token once plus one left context per segment (about 1.2 model tokens per
document token), not once per block.
The model runs only up to the SAE's hook layer, and the left context's tokens are read there only as keys
and values: the last layer computes nothing else for them (`hooks.capture_rows` with skips).

The model is causal, so a token's activations depend only on the tokens before it in its window. A run of
changed blocks computed alone (typing changes one block at a time) keeps the key/values of its whole window
with its features (a few windows, most recent first, `cache_windows`). The next computation of a window
finds the kept window sharing the longest prefix with it, keeps that many positions of key/values and
those tokens' features, and runs only the rest: typing at the end of a paragraph costs the typed tokens,
typing in its middle costs the tokens after the edit; the cursor's block is delivered first, then the
blocks after it in its segment continue the same key/values. The result is the same computation (equal
within float rounding, ~1e-6 relative).

The other runs go in batches: packed end to end where the model runs rows so (Morph's Llama, the default:
no padding, `hooks.capture_rows`), else runs of like length, right-padded. Analyzers of several documents (a
server's clients) may share their passes (`shared_passes`): batches submitted while a pass runs go through
the model together in the next one, each row's numbers those of the row alone, within float rounding.
"""

from __future__ import annotations

import math
import re
import threading
import time
import zlib
from collections import OrderedDict
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Union

import numpy as np

from morph.errors import MorphError
from morph.features.batching import Batcher
from morph.features.ranking import FeatureNorms, distinctiveness
from morph.features.tokens import Splicer, splice_is_exact
from morph.models.hooks import packs_rows

if TYPE_CHECKING:
    import torch
    from transformers import Cache, PreTrainedModel

    from morph.models.lens import Lens
    from morph.models.saes import SparseActs

SENTENCE_END = frozenset(".!?;:\"'”’)")


class AnalysisCancelled(MorphError):
    """A newer request replaced this one."""


REPLACED = "analysis replaced by a newer one"


@dataclass(frozen=True)
class AnalysisConfig:
    context_tokens: int = 128  # left context each block sees
    min_block_tokens: int = 96
    max_block_tokens: int = 256
    segment_tokens: int = 1024  # blocks that share one window (and one left context); capped by the model
    segment_every: int = 4  # a segment starts at about one block in this many (anchors), whatever its size
    batch_tokens: int = 4096  # tokens per forward pass (padding included where the model pads rows)
    cache_blocks: int = 4096
    cache_windows: int = 6  # key/values of recently computed windows, reused by the next edit (~5-25 MB each)
    threads: int | None = None  # torch threads for the forward (None: leave torch's setting)


@dataclass(frozen=True)
class FeatureStat:
    id: int
    max: float
    mean: float
    score: float  # how distinctive it is for the span (morph.features.ranking), the order of lists


@dataclass(frozen=True)
class ParagraphSummary:
    start: int  # character offsets, trailing newlines excluded
    end: int
    n_tokens: int
    features: tuple[FeatureStat, ...]  # the most distinctive first (Analysis.span_features)
    explained_variance: float | None  # None for a paragraph without tokens


@dataclass(frozen=True)
class AnalysisStats:
    elapsed_s: float
    total_tokens: int
    computed_tokens: int  # tokens run through the model, context included
    computed_blocks: int
    reused_blocks: int
    complete: bool  # False for an early delivery where some blocks still show older results


@dataclass
class _BlockResult:
    indptr: np.ndarray  # CSR over this block's tokens
    indices: np.ndarray
    values: np.ndarray
    hook_acts: np.ndarray  # the activations at the hook (float16), for explained variance
    sse: np.ndarray  # squared reconstruction error per token


@dataclass(frozen=True)
class PartialResult:
    """The block at the focus is computed; other changed blocks still show their previous results."""

    analysis: "Analysis"


@dataclass(frozen=True)
class BlockProgress:
    """`done` of the `total` blocks to compute are computed."""

    done: int
    total: int


@dataclass(frozen=True)
class FinalResult:
    """The whole text analysed: the result to keep."""

    analysis: "Analysis"


AnalysisEvent = Union[PartialResult, BlockProgress, FinalResult]


@dataclass
class Analysis:
    """The result for one version of the document. Arrays are per token, in document order."""

    generation: int
    text_length: int
    token_ids: np.ndarray
    offsets: np.ndarray  # [n, 2] character start/end
    indptr: np.ndarray  # CSR: the nonzero SAE features of token i are indices[indptr[i]:indptr[i+1]]
    indices: np.ndarray
    values: np.ndarray
    hook_acts: np.ndarray  # [n, d_model] the activations at the hook (float16), for explained variance
    sse: np.ndarray  # [n] squared error of the SAE's reconstruction
    paragraphs: list[tuple[int, int]]  # character spans of paragraphs (runs of non-blank lines)
    stats: AnalysisStats
    d_sae: int
    norms: FeatureNorms | None = None  # corpus statistics that rank features (None: rank by activation)
    markup: list[int] = field(default_factory=list)  # per paragraph: the length of its opening mark (markup_lead)
    _summaries: dict = field(default_factory=dict, repr=False)
    _feature_cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def token_at(self, offset: int) -> int | None:
        """The token covering character `offset` (or the one just before it, at a token's end)."""
        if self.n_tokens == 0:
            return None
        i = int(np.searchsorted(self.offsets[:, 0], offset, side="right")) - 1
        if i < 0:
            return 0
        return i

    def tokens_in(self, start: int, end: int) -> tuple[int, int]:
        """Token index range [a, b) of the tokens overlapping characters [start, end)."""
        a = int(np.searchsorted(self.offsets[:, 1], start, side="right"))
        b = int(np.searchsorted(self.offsets[:, 0], end, side="left"))
        return a, max(a, b)

    def token_features(self, i: int, k: int = 10, distinctive: bool = False) -> list[tuple[int, float]]:
        """(feature, activation) of token i for the k largest activations, or with `distinctive` (and norms)
        (feature, score) for the k features that stand out most on it (morph.features.ranking)."""
        lo, hi = self.indptr[i], self.indptr[i + 1]
        ids, vals = self.indices[lo:hi], self.values[lo:hi]
        ranked = distinctive and self.norms is not None
        score = distinctiveness(ids, vals, 1, self.norms, vals, first=i) if ranked else vals
        order = [j for j in np.argsort(-score)[:k] if not ranked or score[j] > 0]
        return [(int(ids[j]), float(score[j])) for j in order]

    def span_features(self, a: int, b: int, k: int = 10) -> list[FeatureStat]:
        """The k most distinctive features over tokens [a, b) (morph.features.ranking), those that stand out
        only; without norms, the top k by max activation, then by mean, without repeats."""
        n = b - a
        if n <= 0:
            return []
        lo, hi = self.indptr[a], self.indptr[b]
        ids, vals = self.indices[lo:hi], self.values[lo:hi]
        if len(ids) == 0:
            return []
        uniq, inverse = np.unique(ids, return_inverse=True)
        maxes = np.zeros(len(uniq), dtype=np.float32)
        np.maximum.at(maxes, inverse, vals)
        sums = np.bincount(inverse, weights=vals, minlength=len(uniq))
        means = sums / n
        scores = distinctiveness(uniq, sums, n, self.norms, maxes, first=a)
        if self.norms is not None:
            chosen = [int(j) for j in np.argsort(-scores)[:k] if scores[j] > 0]
        else:
            chosen = []
            for j in list(np.argsort(-maxes)[:k]) + list(np.argsort(-means)[:k]):
                if j not in chosen:
                    chosen.append(int(j))
        return [FeatureStat(int(uniq[j]), float(maxes[j]), float(means[j]), float(scores[j])) for j in chosen]

    def explained_variance(self, a: int, b: int) -> float | None:
        """Fraction of the hook activations' variance over tokens [a, b) that the SAE reconstructs."""
        if b - a < 1:
            return None
        x = self.hook_acts[a:b].astype(np.float32)
        total = float(((x - x.mean(axis=0, keepdims=True)) ** 2).sum())
        if b - a == 1 or total <= 0:
            total = float((x**2).sum())
        if total <= 0:
            return None
        return 1.0 - float(self.sse[a:b].sum()) / total

    def paragraph_index(self, offset: int) -> int | None:
        for i, (start, end) in enumerate(self.paragraphs):
            if start <= offset <= end:
                return i
        return None

    def summary(self, index: int, k: int = 10) -> ParagraphSummary:
        """Paragraph `index`: its tokens, the variance the SAE explains over them, and its k most distinctive
        features, ranked over its words: a Markdown heading's, list item's or quotation's opening mark is
        markup (`markup_lead`; on a text's first line the model reads "#" as a text's start and features
        such as "away · tuesday · letter" fire on it, above "rain · weather · wind" on "# The Storm")."""
        key = (index, k)
        if key not in self._summaries:
            start, end = self.paragraphs[index]
            a, b = self.tokens_in(start, end)
            lead = self.markup[index] if index < len(self.markup) else 0
            words, _ = self.tokens_in(start + lead, end)
            ranked = self.span_features(words, b, k) if words < b else self.span_features(a, b, k)
            self._summaries[key] = ParagraphSummary(start, end, b - a, tuple(ranked), self.explained_variance(a, b))
        return self._summaries[key]

    def summaries(self, k: int = 10) -> list[ParagraphSummary]:
        return [self.summary(i, k) for i in range(len(self.paragraphs))]

    def feature_values(self, feature: int) -> np.ndarray:
        """The activation of one feature on every token (zeros where it is off)."""
        if feature not in self._feature_cache:
            self._feature_cache = {feature: self.feature_matrix([feature])[0]}  # keep one: the pinned feature
        return self._feature_cache[feature]

    def feature_matrix(self, features: list[int], a: int = 0, b: int | None = None) -> np.ndarray:
        """Activations of several features on tokens [a, b) (default: all): [len(features), b - a]."""
        b = self.n_tokens if b is None else b
        out = np.zeros((len(features), max(0, b - a)), dtype=np.float32)
        if not features or b <= a:
            return out
        lo, hi = self.indptr[a], self.indptr[b]
        indices = self.indices[lo:hi]
        hits = np.nonzero(np.isin(indices, features))[0]
        rows = np.searchsorted(self.indptr, hits + lo, side="right") - 1 - a
        order = np.argsort(features)
        which = order[np.searchsorted(np.asarray(features)[order], indices[hits])]
        out[which, rows] = self.values[hits + lo]
        return out

    def feature_max(self) -> np.ndarray:
        """Each feature's largest activation in this document: [d_sae]."""
        out = np.zeros(self.d_sae, dtype=np.float32)
        np.maximum.at(out, self.indices, self.values)
        return out

    def strongest_features(self, a: int, b: int, n: int, scales: np.ndarray, min_score: float = 0.0,
                           max_share: float = 0.5, only: list[int] | None = None) -> list[tuple[int, float]]:
        """Up to n (feature, score) that stand out over tokens [a, b), the most distinctive first, scoring
        more than `min_score` (morph.features.ranking; `scales` [d_sae] is each feature's unit where its
        typical max is unknown), among `only` if given. Without norms, features active on more than
        `max_share` of the tokens are left out."""
        lo, hi = self.indptr[a], self.indptr[b]
        ids, vals = self.indices[lo:hi], self.values[lo:hi]
        if only is not None:
            keep = np.isin(ids, only)
            ids, vals = ids[keep], vals[keep]
        if len(ids) == 0:
            return []
        uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        mass = np.bincount(inverse, weights=vals, minlength=len(uniq))
        score = distinctiveness(uniq, mass, b - a, self.norms, scales[uniq], first=a)
        if self.norms is None and b - a >= 8:
            score[counts > max_share * (b - a)] = 0
        order = [j for j in np.argsort(-score)[:n] if score[j] > min_score]
        return [(int(uniq[j]), float(score[j])) for j in order]


_MARKUP_LEAD = re.compile(r"[ \t]*(?:#{1,6}|>|[-*+]|\d{1,3}[.)])[ \t]+")


def markup_lead(paragraph: str) -> int:
    """The length of the Markdown mark that opens a paragraph ("# ", "> ", "- ", "1. "), else 0."""
    match = _MARKUP_LEAD.match(paragraph)
    return match.end() if match else 0


def paragraph_marks(text: str, paragraphs: list[tuple[int, int]]) -> list[int]:
    """Per paragraph, the length of the Markdown mark that opens it (`markup_lead`)."""
    return [markup_lead(text[a:b]) for a, b in paragraphs]


def find_paragraphs(text: str) -> list[tuple[int, int]]:
    """Character spans of paragraphs: runs of non-blank lines."""
    return [(m.start(), m.end()) for m in re.finditer(r"[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*", text)]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def drain(events: Iterator[AnalysisEvent], on_partial: Callable[[Analysis], None] | None = None,
          on_progress: Callable[[int, int], None] | None = None) -> Analysis | None:
    """Run an analysis stream to its end (closing it): the final result (None if the stream ended without
    one); `on_partial` and `on_progress` hear the other events."""
    with closing(events):
        for event in events:
            if isinstance(event, FinalResult):
                return event.analysis
            if isinstance(event, PartialResult) and on_partial is not None:
                on_partial(event.analysis)
            elif isinstance(event, BlockProgress) and on_progress is not None:
                on_progress(event.done, event.total)
    return None


def cut_blocks(text: str, offsets: np.ndarray, config: AnalysisConfig) -> list[tuple[int, int]]:
    """Token ranges of the blocks (see the module docstring). A function of the tokens alone."""
    n = len(offsets)
    if n == 0:
        return []
    cps = _code_points(text)
    ends = np.clip(offsets[:, 1], 1, max(len(cps), 1))
    last = cps[ends - 1] if len(cps) else np.zeros(n, dtype=np.uint32)
    nxt = np.where(ends < len(cps), cps[np.minimum(ends, len(cps) - 1)], 10)
    newline_end = (last == 10) & (nxt != 10)
    sentence_end = np.isin(last, [ord(c) for c in SENTENCE_END]) & np.isin(nxt, [32, 10, 9])
    newline_points = np.nonzero(newline_end)[0]
    blocks: list[tuple[int, int]] = []
    start = 0
    for point in list(newline_points) + [n - 1]:
        end = int(point) + 1
        while end - start > config.max_block_tokens:
            window = np.nonzero(sentence_end[start + config.max_block_tokens // 2:start + config.max_block_tokens])[0]
            cut = start + config.max_block_tokens // 2 + int(window[-1]) + 1 if len(window) else start + config.max_block_tokens
            blocks.append((start, cut))
            start = cut
        if end - start >= config.min_block_tokens or end == n:
            if end > start:
                blocks.append((start, end))
            start = end
    return blocks


ANCHOR_TOKENS = 8  # the first tokens of a block that decide whether it is an anchor


def cut_segments(ids: np.ndarray, blocks: list[tuple[int, int]], config: AnalysisConfig,
                 limit: int | None = None) -> list[int]:
    """Per block, the index of the first block of its segment (see the module docstring): blocks are added
    to a segment while it stays within `limit` tokens (`config.segment_tokens` by default), and an anchor
    block starts a new one. A function of the tokens alone."""
    limit = config.segment_tokens if limit is None else limit
    firsts: list[int] = []
    first, size = 0, 0
    for i, (a, b) in enumerate(blocks):
        head = ids[a:min(b, a + ANCHOR_TOKENS)].tobytes()
        if i and (size + b - a > limit or zlib.crc32(head) % max(1, config.segment_every) == 0):
            first, size = i, 0
        firsts.append(first)
        size += b - a
    return firsts


@dataclass(frozen=True)
class _Run:
    """Consecutive blocks of one segment computed in one window: `ids` ([BOS] + left context + blocks),
    the blocks' tokens start at `skip`; `members` are (block index, token count) in order."""

    members: tuple[tuple[int, int], ...]
    ids: list[int]
    skip: int

    @property
    def n(self) -> int:
        return len(self.ids) - self.skip

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.ids, dtype=np.int64)


@dataclass(frozen=True)
class PaddedRows:
    """One analysis's runs for one padded forward pass: each row's ids ([BOS] + left context + blocks) and
    where its blocks' tokens start; `stopped` says whether that analysis has been stopped."""

    rows: tuple[tuple[int, ...], ...]
    skips: tuple[int, ...]
    stopped: Callable[[], bool]

    @property
    def n(self) -> int:
        """The block tokens whose features the pass gives (the rows from their skips)."""
        return sum(len(row) - skip for row, skip in zip(self.rows, self.skips))


@dataclass(frozen=True)
class EncodedRows:
    """PaddedRows' block tokens, in order: the activations at the hook, their SAE features (CSR), and the
    squared reconstruction error per token."""

    x: torch.Tensor
    feats: SparseActs
    sse: torch.Tensor


SharedPasses = Batcher[PaddedRows, "EncodedRows | None"]


def _padded_rows(batch: list[_Run], step: _Step) -> PaddedRows:
    return PaddedRows(tuple(tuple(r.ids) for r in batch), tuple(r.skip for r in batch), step.stopped)


def encode_rows(lens: Lens, items: list[PaddedRows], between: Callable[[], None] | None = None
                ) -> list[EncodedRows | None]:
    """The model to the hook and the SAE over the rows of one or several analyses in one pass, packed or
    padded (morph.models.hooks.capture_rows: each row's numbers are those of the row alone), holding the model's
    lock (hooks live on the shared model: no steering pass may interleave); each item's share back, None for
    an item whose analysis had stopped (not run). `between()` runs between layers and SAE steps."""
    import torch

    from morph.models.hooks import capture_rows
    from morph.models.saes import decode_sparse, encode_sparse

    live = [i for i, item in enumerate(items) if not item.stopped()]
    out: list[EncodedRows | None] = [None] * len(items)
    if not live:
        return out
    rows = [(row, skip) for i in live for row, skip in zip(items[i].rows, items[i].skips)]
    step = between or (lambda: None)
    with lens.lock, torch.inference_mode():
        acts = capture_rows(lens.model, lens.hook, [list(row) for row, _ in rows], lens.device, between=between,
                            skips=[skip for _, skip in rows])
        x = torch.cat(acts).to(lens.sae.dtype)
        step()
        feats = encode_sparse(lens.sae, x)
        step()
        sse = ((x - decode_sparse(lens.sae, feats)).float() ** 2).sum(-1)
    at = 0
    for i in live:
        n = items[i].n
        out[i] = EncodedRows(x[at:at + n], feats.rows(at, at + n), sse[at:at + n])
        at += n
    return out


def padded_cost(items: list[PaddedRows], packed: bool = False) -> float:
    """The positions one pass over `items` runs: their tokens where the model packs rows (`packed`), else rows
    x the longest, or infinity where padding would be more than PADDING_SHARE of them (padding costs what
    real tokens cost: such items run apart)."""
    lengths = [len(row) for item in items for row in item.rows]
    if packed:
        return float(sum(lengths))
    padded = len(lengths) * max(lengths)
    return float(padded) if _pads_little(sum(lengths), padded) else math.inf


def shared_passes(lens: Lens, budget: int, turn: Callable[[], ContextManager[None]] | None = None,
                  release: Callable[[], None] | None = None) -> SharedPasses:
    """Padded passes shared by the analyzers of several documents on one lens (a server's clients): the
    batches that several analyses submit while a pass runs go together in the next one, within `budget`
    padded positions and PADDING_SHARE (`padded_cost`), the documents taking turns (morph.features.batching).
    Each pass runs in `turn()` (a turn on the model among other requests, morph.server.turns); a thread gives
    up what `release()` releases before it waits for a pass. An analysis stopped while its pass runs goes
    on with the pass unless every analysis in it has stopped; one stopped before is left out of it."""

    def run(items: list[PaddedRows]) -> list[EncodedRows | None]:
        def between() -> None:
            if all(item.stopped() for item in items):
                raise AnalysisCancelled(REPLACED)

        with turn() if turn is not None else nullcontext():
            return encode_rows(lens, items, between)

    packed = packs_rows(lens.model)
    return Batcher(run, cost=lambda items: padded_cost(items, packed), max_cost=budget, release=release)


class Analyzer:
    """Runs a Lens over documents, reusing the blocks an edit did not touch. One run at a time."""

    def __init__(self, lens: Lens, config: AnalysisConfig | None = None, norms: FeatureNorms | None = None,
                 passes: SharedPasses | None = None):
        """`passes`: padded forward passes shared with other analyzers of the lens (a server's documents:
        `shared_passes`); without, each padded batch runs at once as a pass of its own."""
        self.lens = lens
        self.passes = passes
        self.config = config or AnalysisConfig()
        self.norms = norms
        room = lens.context_size - 1 - self.config.max_block_tokens
        self.context_tokens = max(0, min(self.config.context_tokens, room))
        self.segment_tokens = max(self.config.max_block_tokens,
                                  min(self.config.segment_tokens, lens.context_size - 1 - self.context_tokens))
        self._cache: OrderedDict[bytes, _BlockResult] = OrderedDict()
        self._windows: OrderedDict[bytes, _Window] = OrderedDict()  # window key -> its key/values and result
        self._by_block: dict[bytes, _BlockResult] = {}  # same block ids, any context: early previews
        self._lock = threading.Lock()
        self._splicer = Splicer(lambda text: self.tokenize(text), exact=splice_is_exact(lens.tokenizer))

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self.lens.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        return ids, offsets

    def analyze(self, text: str, generation: int = 0, focus: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_partial: Callable[[Analysis], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                checkpoint: Callable[[], None] | None = None) -> Analysis:
        """`stream` drained: the final result; `on_partial` and `on_progress` hear the other events."""
        events = self.stream(text, generation, focus, should_stop, checkpoint, partials=on_partial is not None)
        result = drain(events, on_partial, on_progress)
        if result is None:
            raise AssertionError("an analysis stream ends with its final result")
        return result

    def stream(self, text: str, generation: int = 0, focus: int | None = None,
               should_stop: Callable[[], bool] | None = None, checkpoint: Callable[[], None] | None = None,
               partials: bool = True) -> Iterator[AnalysisEvent]:
        """Analyse `text` as a stream of events: with `focus` (a character offset) the block at the focus is
        computed first and, when more is to come and `partials`, delivered as a PartialResult (other changed
        blocks showing their previous results); a BlockProgress after each batch of the blocks to compute;
        the FinalResult last. Nothing runs until the next event is asked for: a consumer that waits (until
        a partial result is drawn) holds the analysis back. `checkpoint()` is called between stages, layers
        and SAE steps; it may block (to let input be handled first, see morph.features.priority).
        `should_stop` is checked at the same points (AnalysisCancelled). One stream at a time: close it (or
        drain it) to let the next one run."""
        step = _Step(should_stop, checkpoint, REPLACED)
        with self._lock:
            yield from self._events(text, generation, focus, step, partials)

    def prepare(self, text: str, focus: int, should_stop: Callable[[], bool] | None = None,
                checkpoint: Callable[[], None] | None = None) -> bool:
        """Keep the key/values of the window of the block at `focus` in the last analysed `text`, when they
        are not kept yet, so that the first edit there costs the tokens after the edit, not the window (the
        editor calls this when the cursor settles in another paragraph). The results do not change.
        Returns whether a window was computed; nothing is done for a text other than the last analysed."""
        tokens = self._splicer.exact(text)
        if tokens is None:
            return False
        step = _Step(should_stop, checkpoint, "preparation replaced by an analysis")
        with self._lock:
            ids, offsets = tokens
            if not len(ids) or not _supports_cache(self.lens.model):
                return False
            layout = self._plan(text, ids, offsets)
            i = layout.block_at(_token_at(offsets, focus))
            run = self._run_of(ids, layout, [i])
            if self._kept_covers(run.array, run.skip):
                return False
            for _ in self._compute([run], layout, step):
                pass
            return True

    def _events(self, text: str, generation: int, focus: int | None, step: _Step,
                partials: bool) -> Iterator[AnalysisEvent]:
        started = time.perf_counter()
        step()
        # For the editor (a focus), tokens are spliced in around the edit; where a splice is not exact by
        # construction, it is checked against the full tokenization before the rest is computed.
        tokens = self._splicer.exact(text)
        guess = None  # spliced tokens still to be checked
        if tokens is None:
            spliced = self._splicer.quick(text) if focus is not None else None
            tokens = spliced if spliced is not None else self.tokenize(text)
            if spliced is not None and not self._splicer.splices_are_exact:
                guess = spliced
        ids, offsets = tokens
        step()
        layout = self._plan(text, ids, offsets)
        todo = layout.todo
        reused = len(layout.blocks) - len(todo)
        total = len(todo)
        computed_tokens = 0
        if todo and focus is not None:
            # first the changed blocks of the focus block's segment up to it, in one window
            k = layout.block_at(_token_at(offsets, focus))
            first = [i for i in todo if layout.firsts[i] == layout.firsts[k] and i <= k]
            if k not in first:  # the focus block is unchanged: the nearest changed block instead
                near = min(todo, key=lambda i: abs(layout.blocks[i][0] - layout.blocks[k][0]))
                first = [i for i in todo if layout.firsts[i] == layout.firsts[near] and i <= near]
            first = _trailing_run(first)
            for _, processed in self._compute(self._runs(ids, layout, first), layout, step):
                computed_tokens += processed
            todo = [i for i in todo if i not in set(first)]
            yield BlockProgress(len(first), total)
            # delivered early when more is to come: other blocks, or the check of spliced tokens
            if (todo or guess is not None) and partials:
                step()
                stats = AnalysisStats(time.perf_counter() - started, len(ids), computed_tokens, len(first), reused,
                                      False)
                yield PartialResult(self._assemble(text, generation, ids, offsets, layout, stats, partial=True))
        if guess is not None:
            step()
            full = self._splicer.verify(text, guess)
            if full is not guess:  # the splice missed: plan again on the real tokens (computed blocks stay cached)
                ids, offsets = full
                done = total - len(todo)
                layout = self._plan(text, ids, offsets)
                todo = layout.todo
                reused = len(layout.blocks) - len(todo)
                total = done + len(todo)
        done = total - len(todo)
        for finished, processed in self._compute(self._runs(ids, layout, todo), layout, step):
            computed_tokens += processed
            yield BlockProgress(done + finished, total)
        step()
        n_computed = len(layout.blocks) - reused
        stats = AnalysisStats(time.perf_counter() - started, len(ids), computed_tokens, n_computed, reused, True)
        result = self._assemble(text, generation, ids, offsets, layout, stats, partial=False)
        self._splicer.remember(text, (ids, offsets))
        while len(self._cache) > self.config.cache_blocks:
            key, _ = self._cache.popitem(last=False)
        if len(self._by_block) > self.config.cache_blocks:
            live = set(layout.block_keys)
            self._by_block = {k: v for k, v in self._by_block.items() if k in live}
        yield FinalResult(result)

    def _plan(self, text: str, ids: np.ndarray, offsets: np.ndarray) -> "_Layout":
        """The blocks, their segments, their cache keys (the ids from the segment's left context to the block's
        end) and block-only keys, and the blocks not in the cache (each distinct key once)."""
        blocks = cut_blocks(text, offsets, self.config)
        firsts = cut_segments(ids, blocks, self.config, self.segment_tokens)
        keys, block_keys, todo = [], [], []
        pending = set()
        for i, (a, b) in enumerate(blocks):
            ctx = ids[self._context_start(blocks, firsts, i):a]
            block_key = ids[a:b].tobytes()
            key = len(ctx).to_bytes(4, "little") + ctx.tobytes() + block_key
            keys.append(key)
            block_keys.append(block_key)
            if key in self._cache:
                self._cache.move_to_end(key)
            elif key not in pending:
                pending.add(key)
                todo.append(i)
        return _Layout(blocks, firsts, keys, block_keys, todo)

    def _context_start(self, blocks: list[tuple[int, int]], firsts: list[int], i: int) -> int:
        """The first token of block i's window: its segment's first token less the left context."""
        return max(0, blocks[firsts[i]][0] - self.context_tokens)

    def _runs(self, ids: np.ndarray, layout: "_Layout", todo: list[int]) -> list[_Run]:
        """The blocks to compute as runs of consecutive blocks of one segment, in document order."""
        runs: list[list[int]] = []
        for i in sorted(todo):
            if runs and runs[-1][-1] == i - 1 and layout.firsts[i] == layout.firsts[runs[-1][0]]:
                runs[-1].append(i)
            else:
                runs.append([i])
        return [self._run_of(ids, layout, run) for run in runs]

    def _run_of(self, ids: np.ndarray, layout: "_Layout", members: list[int]) -> _Run:
        lens = self.lens
        bos = lens.bos_prefix
        blocks = layout.blocks
        ctx_start = self._context_start(blocks, layout.firsts, members[0])
        a, b = blocks[members[0]][0], blocks[members[-1]][1]
        return _Run(tuple((i, blocks[i][1] - blocks[i][0]) for i in members), bos + ids[ctx_start:b].tolist(),
                    len(bos) + a - ctx_start)

    def _assemble(self, text: str, generation: int, ids: np.ndarray, offsets: np.ndarray, layout: "_Layout",
                  stats: AnalysisStats, partial: bool) -> Analysis:
        parts = []
        for key, block_key in zip(layout.keys, layout.block_keys):
            part = self._cache.get(key) or (self._by_block.get(block_key) if partial else None)
            parts.append(part if part is not None else _empty_block(len(block_key) // 8, self.lens.d_model))
        if parts:
            lengths = np.array([len(p.indptr) - 1 for p in parts])
            nnz = np.array([len(p.indices) for p in parts])
            shifts = np.repeat(np.concatenate([[0], np.cumsum(nnz)[:-1]]), lengths)
            indptr = np.concatenate([[0], np.concatenate([p.indptr[1:] for p in parts]) + shifts])
            indices = np.concatenate([p.indices for p in parts])
            values = np.concatenate([p.values for p in parts])
            x = np.concatenate([p.hook_acts for p in parts])
            sse = np.concatenate([p.sse for p in parts])
        else:
            indptr = np.zeros(1, dtype=np.int64)
            indices = np.zeros(0, dtype=np.int32)
            values = np.zeros(0, dtype=np.float32)
            x = np.zeros((0, self.lens.d_model), dtype=np.float16)
            sse = np.zeros(0, dtype=np.float32)
        paragraphs = find_paragraphs(text)
        return Analysis(generation, len(text), ids, offsets, indptr, indices, values, x, sse,
                        paragraphs, stats, self.lens.d_sae, self.norms, paragraph_marks(text, paragraphs))

    def _compute(self, runs: list[_Run], layout: "_Layout", step: _Step) -> Iterator[tuple[int, int]]:
        """Run the model + SAE over `runs`: a lone run, or one that extends a kept window (the rest of the
        cursor's segment), alone with key/values kept; the others in padded batches (they leave the kept
        windows alone: those serve the next edit), through the shared passes where the analyzer has them
        (`_shared_batches`). After each, yields (blocks finished so far, tokens run).
        `step()` runs between batches, layers and SAE steps (it raises AnalysisCancelled to stop)."""
        import torch

        continues = _supports_cache(self.lens.model)
        alone = [r for r in runs if continues and (len(runs) == 1 or self._extends(r.array))]
        batches = _batches([r for r in runs if all(r is not a for a in alone)], self.config.batch_tokens,
                           packs_rows(self.lens.model))
        threads = self.config.threads
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            finished = 0
            for run in alone:
                step()
                processed = self._run_one(run, layout, step)
                finished += len(run.members)
                yield finished, processed
            if self.passes is not None and batches:
                for blocks, tokens in self._shared_batches(batches, layout, step):
                    finished += blocks
                    yield finished, tokens
                return
            for batch in batches:
                step()
                processed = self._run_batch(batch, layout, step)
                finished += sum(len(r.members) for r in batch)
                yield finished, processed
        finally:
            if threads:
                torch.set_num_threads(previous_threads)

    def _run_batch(self, batch: list[_Run], layout: "_Layout", step: _Step) -> int:
        encoded = encode_rows(self.lens, [_padded_rows(batch, step)], between=step)[0]
        return self._store_batch(batch, encoded, layout, step)

    def _shared_batches(self, batches: list[list[_Run]], layout: "_Layout", step: _Step) -> Iterator[tuple[int, int]]:
        """The padded batches through the passes shared with other analyses (`passes`): all submitted at
        once, so that the batcher can put them in passes with other documents' (taking turns with them),
        then taken in order. Between them only the stop check runs: the passes take the model's turns
        themselves, and waiting here for a turn would keep this analysis's next batch out of the next pass.
        Yields (blocks, tokens run) per batch."""
        passes = self.passes
        assert passes is not None
        tickets = [passes.submit(_padded_rows(batch, step), owner=self) for batch in batches]
        try:
            for batch, ticket in zip(batches, tickets):
                encoded = passes.wait(ticket, give_up=step.stopped)  # a newer analysis need not wait for a pass
                step.stop()
                yield sum(len(r.members) for r in batch), self._store_batch(batch, encoded, layout, step.stop)
        finally:
            for ticket in tickets:
                if not ticket.done:
                    passes.withdraw(ticket)

    def _store_batch(self, batch: list[_Run], encoded: EncodedRows | None, layout: "_Layout",
                     step: Callable[[], None]) -> int:
        """Keep a padded batch's results (one per run); returns the tokens it ran through the model."""
        if encoded is None:  # its analysis stopped before the pass ran
            raise AnalysisCancelled(REPLACED)
        results = self._results([r.n for r in batch], encoded.x, encoded.feats, encoded.sse, step)
        for run, result in zip(batch, results):
            self._store(run, result, layout)
        return sum(len(r.ids) for r in batch)

    def _run_one(self, run: _Run, layout: "_Layout", step: _Step) -> int:
        """One run, continuing the kept window that shares the longest prefix with it (module docstring); its
        key/values and features are kept for the next. Returns the tokens run through the model."""
        import torch

        from morph.models.hooks import capture, crop_cache, new_cache
        from morph.models.saes import decode_sparse, encode_sparse

        lens = self.lens
        ids = run.array
        kept, keep = self._reusable(ids, run.skip)
        # the positions whose features the new window holds: from `start`, the kept ones before `keep`
        head = kept is not None and kept.skip <= keep
        start = kept.skip if head else (keep if kept is not None else run.skip)
        encode_from = max(keep, start)
        with lens.lock, torch.inference_mode():
            if kept is None:
                cache = new_cache(lens.model)
            else:
                cache = kept.cache  # taken out of the kept windows: extended in place, stored again below
                crop_cache(cache, len(kept.ids) - keep)
            acts = capture(lens.model, lens.hook, torch.tensor([run.ids[keep:]], device=lens.device), between=step,
                           cache=cache)[0]
            x = acts[encode_from - keep:].to(lens.sae.dtype)
            step()
            feats = encode_sparse(lens.sae, x)
            step()
            sse = ((x - decode_sparse(lens.sae, feats)).float() ** 2).sum(-1)
        result = self._results([len(ids) - encode_from], x, feats, sse, step)[0]
        if head and encode_from > start:
            result = _join(_rows(kept.result, 0, encode_from - start), result)
        self._store(run, _rows(result, run.skip - start, len(ids) - start), layout)
        self._windows[layout.keys[run.members[-1][0]]] = _Window(ids, start, cache, result)
        while len(self._windows) > self.config.cache_windows:
            self._windows.popitem(last=False)
        return len(ids) - keep

    def _reusable(self, ids: np.ndarray, skip: int) -> tuple["_Window | None", int]:
        """The kept window sharing the longest prefix with `ids` (taken out of the kept ones) and how many of
        its positions can be kept (`_kept_for`)."""
        found = self._kept_for(ids, skip)
        if found is None:
            return None, 0
        key, keep = found
        return self._windows.pop(key), keep

    def _kept_for(self, ids: np.ndarray, skip: int) -> tuple[bytes, int] | None:
        """The key of the kept window sharing the longest prefix with `ids`, and how many of its positions can
        be kept: at most all but the last token, and no token from `skip` on whose features the kept window
        does not hold. None when none is extended whole and none saves at least a quarter of the work."""
        best, keep, whole = None, 0, False
        for key, kept in self._windows.items():
            m = min(len(kept.ids), len(ids) - 1)
            differs = np.flatnonzero(kept.ids[:m] != ids[:m])
            common = int(differs[0]) if len(differs) else m
            if common > skip and kept.skip > skip:
                common = skip  # tokens that were context there: their features were not kept
            if common > keep:
                best, keep, whole = key, common, common == len(kept.ids)
        # an extended window loses nothing (it still holds the old one); a cropped one must be worth it
        if best is None or (keep * 4 < len(ids) and not whole):
            return None
        return best, keep

    def _extends(self, ids: np.ndarray) -> bool:
        """Whether `ids` extends a kept window (all of its ids are a prefix of `ids`)."""
        return any(len(kept.ids) < len(ids) and np.array_equal(kept.ids, ids[:len(kept.ids)])
                   for kept in self._windows.values())

    def _kept_covers(self, ids: np.ndarray, skip: int) -> bool:
        """Whether a kept window holds all of `ids` (as a prefix) with features from `skip` on."""
        return any(len(kept.ids) >= len(ids) and kept.skip <= skip and np.array_equal(kept.ids[:len(ids)], ids)
                   for kept in self._windows.values())

    def _store(self, run: _Run, result: _BlockResult, layout: "_Layout") -> None:
        """Cache each block of a computed run (`result` holds the run's tokens, in order)."""
        at = 0
        for i, n in run.members:
            part = _rows(result, at, at + n)
            self._cache[layout.keys[i]] = part
            self._by_block[layout.block_keys[i]] = part
            at += n

    @staticmethod
    def _results(lengths: list[int], x: torch.Tensor, feats: SparseActs, sse: torch.Tensor,
                 step: Callable[[], None]) -> list[_BlockResult]:
        """Split rows (runs of `lengths` tokens, in order) into one sparse result per run."""
        step()
        nz_cols, nz_vals = feats.indices.cpu().numpy(), feats.values.float().cpu().numpy()
        row_ptr = feats.indptr.cpu().numpy()
        x_np = x.float().cpu().numpy().astype(np.float16)
        sse_np = sse.cpu().numpy().astype(np.float32)
        results = []
        start = 0
        for n in lengths:
            lo, hi = row_ptr[start], row_ptr[start + n]
            results.append(_BlockResult(
                indptr=(row_ptr[start:start + n + 1] - lo).astype(np.int64),
                indices=nz_cols[lo:hi].astype(np.int32),
                values=nz_vals[lo:hi].astype(np.float32),
                hook_acts=x_np[start:start + n],
                sse=sse_np[start:start + n],
            ))
            start += n
        return results


@dataclass(frozen=True)
class _Layout:
    """A text's blocks, the first block of each one's segment, their cache keys, and those to compute."""

    blocks: list[tuple[int, int]]
    firsts: list[int]
    keys: list[bytes]
    block_keys: list[bytes]
    todo: list[int]

    def block_at(self, token: int) -> int:
        return next((j for j, (a, b) in enumerate(self.blocks) if a <= token < b), len(self.blocks) - 1)


@dataclass
class _Window:
    """A window computed alone: its ids, the first position whose features it holds (`skip`), the key/values
    of all its positions (for the layers below the hook) and the features from `skip` on."""

    ids: np.ndarray
    skip: int
    cache: Cache
    result: _BlockResult


def _token_at(offsets: np.ndarray, offset: int) -> int:
    """The token at (or, between tokens, before) character `offset`."""
    return max(0, int(np.searchsorted(offsets[:, 0], offset, side="right")) - 1) if len(offsets) else 0


def _trailing_run(members: list[int]) -> list[int]:
    """The last run of consecutive indices of a sorted list."""
    j = len(members) - 1
    while j > 0 and members[j - 1] == members[j] - 1:
        j -= 1
    return members[j:]


def _rows(result: _BlockResult, a: int, b: int) -> _BlockResult:
    """Tokens a..b of a block's result."""
    lo, hi = result.indptr[a], result.indptr[b]
    return _BlockResult(result.indptr[a:b + 1] - lo, result.indices[lo:hi], result.values[lo:hi],
                        result.hook_acts[a:b], result.sse[a:b])


def _join(first: _BlockResult, second: _BlockResult) -> _BlockResult:
    """The tokens of `first` followed by those of `second`."""
    return _BlockResult(np.concatenate([first.indptr[:-1], second.indptr + first.indptr[-1]]),
                        np.concatenate([first.indices, second.indices]),
                        np.concatenate([first.values, second.values]),
                        np.concatenate([first.hook_acts, second.hook_acts]), np.concatenate([first.sse, second.sse]))


@dataclass(frozen=True)
class _Step:
    """What runs between stages, layers and SAE steps (called): the checkpoint (it may block), then the stop
    check; `stop()` is the stop check alone (AnalysisCancelled)."""

    should_stop: Callable[[], bool] | None
    checkpoint: Callable[[], None] | None
    why: str

    def __call__(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint()
        self.stop()

    def stopped(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def stop(self) -> None:
        if self.stopped():
            raise AnalysisCancelled(self.why)


def _supports_cache(model: PreTrainedModel) -> bool:
    """Whether the model takes transformers' key/value caches."""
    return bool(getattr(model, "_supports_cache_class", True))


PADDING_SHARE = 0.1
"""At most this share of a padded batch's positions may be padding (_batches, padded_cost)."""


def _pads_little(real: int, padded: int) -> bool:
    """Whether `padded` positions holding `real` tokens keep padding within PADDING_SHARE."""
    return real >= (1 - PADDING_SHARE) * padded


def _batches(runs: list[_Run], budget: int, packed: bool = False) -> list[list[_Run]]:
    """Group runs so that each pass stays under `budget` positions. Padded (a model that does not pack rows,
    `packed` False): runs of similar length together, and padding under PADDING_SHARE of each batch (padding
    costs what real tokens cost; on a CPU a batch saves little else, so runs of unlike lengths go in batches
    of their own). Packed: in order, `budget` tokens a pass (a run longer than that alone)."""
    ordered = runs if packed else sorted(runs, key=lambda r: len(r.ids))
    batches: list[list[_Run]] = []
    current: list[_Run] = []
    real = 0
    for run in ordered:
        width = len(run.ids)
        cost = real + width if packed else width * (len(current) + 1)  # positions the batch would run with it
        fits = cost <= budget and (packed or _pads_little(real + width, cost))
        if current and not fits:
            batches.append(current)
            current, real = [], 0
        current.append(run)
        real += width
    if current:
        batches.append(current)
    return batches


def _empty_block(n: int, d_model: int) -> _BlockResult:
    return _BlockResult(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32),
                        np.zeros((n, d_model), dtype=np.float16), np.zeros(n, dtype=np.float32))
