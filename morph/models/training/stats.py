"""Feature statistics and labels over held-out text, written to `sae/labels.json` (format morph-labels/2).

Per feature, from `--stats-tokens` held-out tokens:
- density (share of tokens it is active on), mean activation when active, max, and quantiles of its active
  values (the 0.99 quantile is its *typical max*, the unit of intensity everywhere in Morph);
- the words it fires on most distinctively: a token counts for the whole word it is part of, and a word's
  score is its share of the feature's activation mass times the log of that share over the word's share of
  all tokens (its term of the KL divergence; each word's count smoothed by 10 so that a word seen a few times
  does not win on its rarity alone), and the commonest words (more than 1 token in 400: the, of,
  was, ...) never count, however often the feature fires on them; the label joins the top three, one per
  word family ("furious · outraged · angry", not "play · played · playing": `word_families`); a word must
  occur in at least three held-out documents, so that one novel's character names never name a feature;
- a few top-activating contexts (at most 16 tokens, the firing token marked), only from corpus files whose
  README row allows quoting (see `quotable_files`);
- the tokens its decoder direction promotes (morph.models.unembed), and the tokens it fires on most often.
And for all features at once, `start_means`: each feature's mean activation at each of a text's first
START_POSITIONS positions, over held-out runs read as if each began a text (morph.features.ranking expects
them there; `morph train starts` renews them in a labels file without the rest).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morph.errors import InputError
from morph.models.training.common import LOG, Paths, read_json, record, setup_torch, write_json
from morph.models.training.config import TrainConfig
from morph.models.training.data import load_tokens, sequential_batches
from morph.models.training.subject import load_work_lens

LABELS_FORMAT = "morph-labels/2"
QUANTILES = (0.5, 0.9, 0.99)
N_WORDS = 10
N_CONTEXTS = 5
CONTEXT_BEFORE, CONTEXT_AFTER = 11, 4  # tokens around the firing one: 16 in all
MIN_WORD_COUNT = 5  # firings on a word before it may name a feature
WORD_PRIOR_COUNT = 10.0  # added to each word's count for its frequency: a word seen a few times (one chemistry
# table's "protactinium") does not outrank words the feature fires on across the corpus
MIN_WORD_DOCS = 3  # held-out documents a word must appear in: one novel's character names never name a feature
MAX_WORD_FREQ = 1 / 400  # words more common than this (the, of, and, was, ...) never name a feature
START_POSITIONS = 64  # a text's first tokens whose features the ranking expects at their place (start_means):
# in the default SAE the strongest such feature is back to its average by about the 50th
START_RUNS = 2048  # held-out runs of tokens, read from BOS, that give those means
START_PRIOR = 256  # runs' worth of the feature's average token mixed into each position's mean: a rare
# feature seen firing once or twice at a position in 2,048 runs is not taken at that word
# activation histogram per feature for the quantiles: log-spaced bins from 1e-3 to 1e4
_BINS = np.logspace(-3, 4, 141)


def readable(text: str) -> str:
    """A token as a reader would want to see it: outer spaces dropped, newlines and tabs shown as \\n, \\t."""
    shown = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t").strip(" ")
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    if not shown:
        return "␣" if text else "∅"
    return shown


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable stand-in character for each byte, mapped back to the byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_strings(tokenizer) -> list[str]:
    """Readable forms of every token; a token that is part of a UTF-8 character shows its bytes (<e2 80>)."""
    decoder = _byte_decoder()
    out = []
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        if "\ufffd" in text:
            raw = tokenizer.convert_ids_to_tokens(i)
            try:
                data = bytes(decoder[c] for c in raw)
            except KeyError:
                data = None
            if data is not None:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    out.append("<" + " ".join(f"{b:02x}" for b in data) + ">")
                    continue
        out.append(readable(text))
    return out




def _wordlike(tok: str) -> bool:
    """Not a stray byte (<e2>) or control character: fit for a label."""
    return not (tok.startswith("<") and tok.endswith(">") and len(tok) > 2) and "\\x" not in tok and tok != "∅"


def quotable_files(corpus: str | Path) -> set[str]:
    """Corpus files (paths relative to the corpus folder) whose README row allows snippets in labels: the
    last column of each table row says "yes" or "with attribution". No README: nothing is quotable."""
    folder = Path(corpus)
    readme = folder / "README.md"
    if not readme.is_file():
        return set()
    allowed: set[str] = set()
    prefix = ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#+ .*\(`([^`]+)/`\)", line)
        if heading:
            prefix = heading.group(1).strip("/") + "/"
        elif line.startswith("#"):
            prefix = ""
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].endswith(".txt") and cells[-1].lower() in ("yes", "with attribution"):
            name = cells[0].strip("`")
            allowed.add(name if (folder / name).is_file() else prefix + name)
    return allowed


def word_ids(tokenizer, tokens: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per token, the id of the lower-cased word it is part of (-1 for punctuation, spaces, numbers), and the
    words. A token continues the previous word when it starts with a letter and the previous token ended with
    one; letters are kept, apostrophes inside a word too."""
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    starts_letter = np.array([bool(t) and t[0].isalpha() for t in texts])
    ends_letter = np.array([bool(t) and t[-1].isalpha() for t in texts])
    cores = [re.sub(r"[^a-z']", "", t.lower()) if re.fullmatch(r"\s?[A-Za-z']+", t) else "" for t in texts]
    vocab: dict[str, int] = {}
    out = np.full(len(tokens), -1, dtype=np.int64)
    word, members = "", []

    def close() -> None:
        if len(word.strip("'")) >= 2 and members:
            wid = vocab.setdefault(word.strip("'"), len(vocab))
            out[members] = wid

    for pos, tok in enumerate(tokens.tolist()):
        core = cores[tok]
        if core and starts_letter[tok] and members and ends_letter[tokens[pos - 1]]:
            word += core
            members.append(pos)
            continue
        close()
        word, members = (core, [pos]) if core else ("", [])
    close()
    return out, list(vocab)


@dataclass
class Collected:
    """What one pass over the held-out text gathers."""

    n_tokens: int
    count: np.ndarray  # [d_sae] firings
    total: np.ndarray  # [d_sae] activation mass
    peak: np.ndarray  # [d_sae]
    histogram: np.ndarray  # [d_sae, bins] active values
    word_keys: np.ndarray  # feature * n_words + word, one entry per (feature, word) seen
    word_mass: np.ndarray
    word_count: np.ndarray
    top_tokens: np.ndarray  # [d_sae, k] token ids it fires on most often
    top_token_counts: np.ndarray
    best: dict[int, list[tuple[float, int]]]  # feature -> [(activation, position)] in quotable text


def _reduce(keys: list[np.ndarray], values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.concatenate(keys)
    v = np.concatenate(values)
    uniq, inverse = np.unique(k, return_inverse=True)
    return uniq, np.bincount(inverse, weights=v, minlength=len(uniq)), np.bincount(inverse, minlength=len(uniq))


def collect(cfg: TrainConfig, lens, tokens: np.ndarray, words: np.ndarray, n_words: int, quotable: np.ndarray,
            n_tokens: int) -> Collected:
    """Run the SAE over held-out text (windows of --context tokens after BOS, BOS left out)."""
    import torch
    from tqdm.auto import tqdm

    from morph.models.hooks import capture

    d_sae, vocab = lens.d_sae, len(lens.tokenizer)
    count = np.zeros(d_sae, dtype=np.int64)
    total = np.zeros(d_sae, dtype=np.float64)
    peak = np.zeros(d_sae, dtype=np.float32)
    histogram = np.zeros((d_sae, len(_BINS) + 1), dtype=np.int64)
    acc_keys: list[np.ndarray] = []  # (feature, word) and (feature, token) pairs, reduced now and then
    acc_vals: list[np.ndarray] = []
    tok_keys: list[np.ndarray] = []
    word_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    token_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    floor = np.zeros(d_sae, dtype=np.float32)  # the N_CONTEXTS-th best quotable activation so far
    best_f: list[np.ndarray] = []
    best_v: list[np.ndarray] = []
    best_p: list[np.ndarray] = []
    seen = 0
    position = 0  # index into `tokens` of the first text token of the next window
    bar = tqdm(total=n_tokens, desc="stats", unit="tok", unit_scale=True)
    for x, _ in sequential_batches(tokens, n_tokens, cfg.eval_batch, cfg.context, lens.bos_token_id):
        with torch.inference_mode():
            acts = capture(lens.model, lens.hook, x.to(lens.device))[:, 1:, :]
            feats = lens.sae.encode(acts.reshape(-1, acts.shape[-1]).to(lens.sae.dtype)).float().cpu()
        width = x.shape[1] - 1
        # positions (in `tokens`) of the text tokens this batch saw: windows are consecutive `context` spans
        pos = (position + np.arange(x.shape[0])[:, None] * cfg.context + np.arange(width)[None, :]).reshape(-1)
        position += x.shape[0] * cfg.context
        rows, cols = (t.numpy() for t in torch.nonzero(feats, as_tuple=True))
        vals = feats[rows, cols].numpy()
        p = pos[rows]
        count += np.bincount(cols, minlength=d_sae)
        total += np.bincount(cols, weights=vals, minlength=d_sae)
        np.maximum.at(peak, cols, vals)
        np.add.at(histogram, (cols, np.searchsorted(_BINS, vals)), 1)
        w = words[p]
        has_word = w >= 0
        acc_keys.append(cols[has_word].astype(np.int64) * n_words + w[has_word])
        acc_vals.append(vals[has_word])
        tok_keys.append(cols.astype(np.int64) * vocab + tokens[p].astype(np.int64))
        keep = quotable[p] & (vals > floor[cols])
        best_f.append(cols[keep]), best_v.append(vals[keep]), best_p.append(p[keep])
        seen += len(pos)
        bar.update(len(pos))
        if sum(len(k) for k in acc_keys) > 20_000_000:
            word_parts.append(_reduce(acc_keys, acc_vals))
            token_parts.append(_reduce(tok_keys, [np.ones(len(k)) for k in tok_keys]))
            acc_keys, acc_vals, tok_keys = [], [], []
        if sum(len(f) for f in best_f) > 200_000:
            best_f, best_v, best_p, floor = _keep_best(best_f, best_v, best_p, d_sae)
    bar.close()
    word_parts.append(_reduce(acc_keys, acc_vals))
    token_parts.append(_reduce(tok_keys, [np.ones(len(k)) for k in tok_keys]))
    wk, wm, _ = _reduce([p[0] for p in word_parts], [p[1] for p in word_parts])
    _, wc, _ = _reduce([p[0] for p in word_parts], [p[2] for p in word_parts])
    tk, tc, _ = _reduce([p[0] for p in token_parts], [p[1] for p in token_parts])
    top_tokens, top_counts = _top_per_feature(tk // vocab, tk % vocab, tc, d_sae, 10)
    best_f, best_v, best_p, _ = _keep_best(best_f, best_v, best_p, d_sae)
    best: dict[int, list[tuple[float, int]]] = {}
    for f, v, q in zip(best_f[0].tolist(), best_v[0].tolist(), best_p[0].tolist()):
        best.setdefault(f, []).append((v, q))
    return Collected(seen, count, total, peak, histogram, wk, wm, wc.astype(np.int64), top_tokens, top_counts, best)


def _keep_best(fs: list[np.ndarray], vs: list[np.ndarray], ps: list[np.ndarray], d_sae: int):
    """Per feature, the best activations at positions at least 16 tokens apart (N_CONTEXTS of them, with a
    margin for spacing), and the new per-feature floor."""
    f, v, p = np.concatenate(fs), np.concatenate(vs), np.concatenate(ps)
    order = np.lexsort((-v, f))
    f, v, p = f[order], v[order], p[order]
    keep_f, keep_v, keep_p = [], [], []
    floor = np.zeros(d_sae, dtype=np.float32)
    bounds = np.flatnonzero(np.diff(f, prepend=-1))
    for start, end in zip(bounds, list(bounds[1:]) + [len(f)]):
        chosen: list[int] = []
        for i in range(start, end):
            if all(abs(int(p[i]) - int(p[j])) >= 16 for j in chosen):
                chosen.append(i)
                if len(chosen) == 3 * N_CONTEXTS:
                    break
        keep_f.extend(f[chosen]), keep_v.extend(v[chosen]), keep_p.extend(p[chosen])
        if len(chosen) >= N_CONTEXTS:
            floor[f[start]] = v[chosen[N_CONTEXTS - 1]] * 0.999
    return [np.array(keep_f, dtype=np.int64)], [np.array(keep_v, dtype=np.float32)], \
        [np.array(keep_p, dtype=np.int64)], floor


def _top_per_feature(features: np.ndarray, items: np.ndarray, scores: np.ndarray, d_sae: int, k: int):
    """Per feature, the k items of highest score: ([d_sae, k] items, -1 where fewer), scores."""
    order = np.lexsort((-scores, features))
    features, items, scores = features[order], items[order], scores[order]
    out = np.full((d_sae, k), -1, dtype=np.int64)
    out_scores = np.zeros((d_sae, k), dtype=np.float64)
    bounds = np.flatnonzero(np.diff(features, prepend=-1))
    for start, end in zip(bounds, list(bounds[1:]) + [len(features)]):
        n = min(k, end - start)
        out[features[start], :n] = items[start:start + n]
        out_scores[features[start], :n] = scores[start:start + n]
    return out, out_scores


def quantiles_of(histogram: np.ndarray, peak: float) -> list[float]:
    """QUANTILES of a feature's active values from its log-spaced histogram (upper bin edges, capped at its max)."""
    n = histogram.sum()
    if n == 0:
        return [0.0 for _ in QUANTILES]
    cdf = np.cumsum(histogram) / n
    edges = np.append(_BINS, np.inf)
    return [float(min(edges[int(np.searchsorted(cdf, q))], peak)) for q in QUANTILES]


def distinctive_words(c: Collected, words: list[str], word_freq: np.ndarray,
                      doc_freq: np.ndarray | None = None) -> dict[int, list[tuple[str, float, int]]]:
    """Per feature: (word, score, firings) best first (module docstring: share x log(share / frequency));
    `doc_freq`: in how many held-out documents each word occurs (None: not known, not checked)."""
    n_words = len(words)
    f = c.word_keys // n_words
    w = c.word_keys % n_words
    mass_f = np.bincount(f, weights=c.word_mass, minlength=len(c.count))
    share = c.word_mass / np.maximum(mass_f[f], 1e-12)
    prior = word_freq[w] / max(c.n_tokens, 1)
    smoothed = (word_freq[w] + WORD_PRIOR_COUNT) / max(c.n_tokens, 1)
    score = share * np.log(np.maximum(share, 1e-12) / smoothed)
    score[(c.word_count < MIN_WORD_COUNT) | (prior > MAX_WORD_FREQ)] = -np.inf
    if doc_freq is not None:
        score[doc_freq[w] < MIN_WORD_DOCS] = -np.inf
    top, top_scores = _top_per_feature(f, w, score, len(c.count), N_WORDS)
    counts = dict(zip(c.word_keys.tolist(), c.word_count.tolist()))
    out: dict[int, list[tuple[str, float, int]]] = {}
    for feature in range(len(c.count)):
        entries = [(words[i], float(s), int(counts[feature * n_words + i]))
                   for i, s in zip(top[feature].tolist(), top_scores[feature].tolist()) if i >= 0 and s > 0]
        out[feature] = entries
    return out


def context_of(tokenizer, tokens: np.ndarray, position: int) -> tuple[str, str, str]:
    """(before, token, after): at most 16 tokens around `position`, not crossing a document boundary."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    lo, hi = max(0, position - CONTEXT_BEFORE), min(len(tokens), position + CONTEXT_AFTER + 1)
    window = tokens[lo:hi].astype(np.int64).tolist()
    cut = [i for i, t in enumerate(window) if t == eot]
    left = max([i + 1 for i in cut if i + lo < position], default=0)
    right = min([i for i in cut if i + lo > position], default=len(window))
    window = window[left:right]
    at = position - lo - left
    return (tokenizer.decode(window[:at]), tokenizer.decode(window[at:at + 1]), tokenizer.decode(window[at + 1:]))


_SUFFIXES = ("fully", "ings", "edly", "ing", "ful", "ed", "es", "ly", "s")


def word_stem(word: str) -> str:
    """A crude English stem, enough to tell a word family within one feature's list: one inflectional or
    common suffix off (played, playing, plays -> play; peaceful -> peace; tried -> try), a doubled final
    consonant undone (running -> run), a final e dropped (bake, baking -> bak). Irregular forms (made, make)
    stay apart."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not (suffix == "s" and w.endswith(("ss", "us", "is"))):
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    if w.endswith("i"):
        w = w[:-1] + "y"
    return w.rstrip("e")


def word_families(words: list[str]) -> list[str]:
    """`words` (best first) keeping the first word of each family (`word_stem`): a label of three words then
    says three things, not one thing three times."""
    seen: set[str] = set()
    kept = []
    for word in words:
        stem = word_stem(word)
        if stem not in seen:
            seen.add(stem)
            kept.append(word)
    return kept


MARKS_SHARE = 0.5  # a feature with at least this share of its firings on marks (not words) is labelled by them
_ESCAPES = re.compile(r"\\[nrt]|\\x[0-9a-f]{2}")  # how `readable` shows line breaks, tabs and control characters


def marks_fired_on(fired_on: list[list]) -> list[str]:
    """The marks (punctuation, digits, line breaks: tokens without a letter) among the tokens a feature fires
    on most ([token, count] pairs, most first), when they hold at least MARKS_SHARE of those firings; else
    []. A feature firing on "." in recipe steps got the label "confirm · then · special" from the few words it
    also fires on: shown in the panel for a ".", that label says nothing true."""
    total = sum(int(n) for _, n in fired_on)
    marks = [(str(t), int(n)) for t, n in fired_on if not re.search(r"[^\W\d_]", _ESCAPES.sub("", str(t)))]
    if not total or sum(n for _, n in marks) < MARKS_SHARE * total:
        return []
    # tokens that differ only in the space before them read the same: each mark is said once
    return list(dict.fromkeys(t.replace("\\n", "⏎") for t, _ in marks))


def make_label(words: list[str], promoted: list[str], dead: bool, fired_on: list[list] | None = None) -> str:
    """The top three distinctive words, one per family (`word_families`); a feature that fires mostly on marks
    (`marks_fired_on`) is named by the first two of them, then two words ("on . , · oh · firms"); a feature
    without any word (dead, or firing on punctuation and numbers alone) by the tokens it fires on or
    promotes."""
    if dead:
        return "(dead) → " + ", ".join(promoted[:3])
    marks = marks_fired_on(fired_on or [])
    if words and marks:
        return " · ".join(["on " + " ".join(marks[:2])] + word_families(words)[:2])
    if words:
        return " · ".join(word_families(words)[:3])
    return "→ " + ", ".join(promoted[:3])


def feature_label(words: list[str], fired_on: list[list], promoted: list[str], dead: bool) -> str:
    """`make_label` for a feature's distinctive words, the [token, count] it fires on most and the tokens it
    promotes: without words, the word-like tokens it fires on name it, else those it promotes."""
    fallback = [t for t, _ in fired_on if _wordlike(t)]
    return make_label(words, fallback or promoted, dead, fired_on)


def relabel(labels: dict) -> dict:
    """A labels document with every label made again (`feature_label`) from what the document holds (its
    words, the tokens each feature fires on, the tokens it promotes): for a rule changed after training."""
    for feature in labels["features"]:
        feature["label"] = feature_label([w for w, *_ in feature.get("words", [])], feature.get("top_tokens", []),
                                         feature.get("promoted", []), dead=not feature.get("density", 0))
    return labels


def build_labels(lens, c: Collected, words: list[str], word_freq: np.ndarray, tokens: np.ndarray,
                 doc_freq: np.ndarray | None = None) -> dict:
    """The morph-labels/2 document."""
    from morph.models.unembed import promoted_token_ids

    strings = token_strings(lens.tokenizer)
    promoted_ids = promoted_token_ids(lens.model, lens.sae.W_dec.detach(), 30).cpu().numpy()
    by_feature = distinctive_words(c, words, word_freq, doc_freq)
    features = []
    for f in range(len(c.count)):
        active = int(c.count[f])
        promoted: list[str] = []
        for i in promoted_ids[f].tolist():
            if strings[i] not in promoted and _wordlike(strings[i]):
                promoted.append(strings[i])
        fired_on = [[strings[i], int(n)] for i, n in zip(c.top_tokens[f].tolist(), c.top_token_counts[f].tolist())
                    if i >= 0]
        quantiles = quantiles_of(c.histogram[f], float(c.peak[f]))
        contexts = []
        for value, position in sorted(c.best.get(f, []), reverse=True)[:N_CONTEXTS]:
            before, token, after = context_of(lens.tokenizer, tokens, position)
            contexts.append({"before": before, "token": token, "after": after, "act": round(float(value), 4)})
        features.append({
            "id": f,
            "label": feature_label([w for w, _, _ in by_feature[f]], fired_on, promoted, dead=not active),
            "density": active / max(c.n_tokens, 1),
            "mean_act": float(c.total[f] / active) if active else 0.0,
            "max_act": float(c.peak[f]),
            "quantiles": dict(zip((str(q) for q in QUANTILES), quantiles)),
            "words": [[w, round(s, 5), n] for w, s, n in by_feature[f]],
            "contexts": contexts,
            "top_tokens": fired_on,
            "promoted": promoted[:10],
        })
    add_said(lens, features, strings)
    return {"format": LABELS_FORMAT, "n_tokens": int(c.n_tokens), "quantiles": list(QUANTILES), "features": features}


def add_said(lens, features: list[dict], strings: list[str] | None = None) -> None:
    """Each feature record's "says": the ten whole words the model says more of when the feature's decoder
    direction is added at the hook (morph.models.unembed.said_token_ids, the steered reading; the logit lens's
    "promoted" names junk at a middle layer). Also for a labels file made before it was computed. `strings`:
    `token_strings` of the tokenizer, where the caller has them."""
    from morph.models.unembed import said_token_ids

    ids = [int(f["id"]) for f in features]
    if not ids:
        return
    strings = strings if strings is not None else token_strings(lens.tokenizer)
    logged = [0]

    def progress(done: int) -> None:
        if done - logged[0] >= len(ids) / 10 or done == len(ids):
            logged[0] = done
            LOG.info("stats: steered readings of %d of %d features", done, len(ids))

    said = said_token_ids(lens, lens.sae.W_dec.detach()[ids], 10, progress)
    for feature, row in zip(features, said):
        feature["says"] = [strings[i].strip() for i in row]


def start_means(lens, openings: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Each feature's mean activation (zeros counted) at each position of `openings` (runs of tokens, all of one
    length), each read after BOS alone, as the editor reads a text's start: [positions, d_sae]."""
    import torch

    from morph.models.hooks import capture

    total = np.zeros((len(openings[0]), lens.d_sae), dtype=np.float64)
    for first in range(0, len(openings), batch):
        rows = np.stack(openings[first:first + batch]).astype(np.int64)
        x = torch.cat([torch.full((len(rows), 1), lens.bos_token_id, dtype=torch.long), torch.from_numpy(rows)], 1)
        with torch.inference_mode():
            acts = capture(lens.model, lens.hook, x.to(lens.device))[:, 1:, :]
            total += lens.sae.encode(acts.to(lens.sae.dtype)).float().sum(0).cpu().numpy()
    return (total / len(openings)).astype(np.float32)


def window_openings(tokens: np.ndarray, positions: int = START_POSITIONS) -> list[np.ndarray]:
    """START_RUNS runs of `positions` held-out tokens, evenly spaced over the split, each to be read as
    if it began a text: they begin anywhere, so what a position's mean differs by from the average token's is
    the position's doing, not what texts begin with (titles, greetings: document openings taught the ranking
    to expect "song · music" at a text's start)."""
    n = min(START_RUNS, len(tokens) // positions)
    step = len(tokens) // max(n, 1)
    return [np.asarray(tokens[i * step:i * step + positions]) for i in range(n)]


def add_start_means(cfg: TrainConfig, paths: Paths, labels: dict, lens=None) -> dict:
    """`labels` (a labels file's content) with its start_means computed now (`lens`: the SAE's, else loaded);
    as it was, with a warning, when the held-out split is too short."""
    lens = lens or load_work_lens(cfg, paths, setup_torch(cfg))
    openings = window_openings(load_tokens(paths.val_bin), min(START_POSITIONS, lens.context_size - 1))
    if not openings:
        LOG.warning("stats: fewer than %d held-out tokens: no start means (the ranking takes a text's first "
                    "tokens as average ones)", START_POSITIONS)
        return labels
    means = start_means(lens, openings, cfg.eval_batch).astype(np.float64)
    average = np.zeros(lens.d_sae)
    for f in labels["features"]:
        average[f["id"]] = (f.get("density") or 0.0) * (f.get("mean_act") or 0.0)
    shrunk = (len(openings) * means + START_PRIOR * average) / (len(openings) + START_PRIOR)
    labels["start_means"] = {"runs": len(openings), "prior_runs": START_PRIOR,
                             "values": np.round(shrunk, 3).tolist()}
    return labels


def stage_starts(cfg: TrainConfig, paths: Paths) -> None:
    """Add (or renew) start_means in the run's labels file, leaving the rest of it as it is."""
    labels = read_json(paths.labels, None)
    if labels is None:
        raise InputError(f"no labels file {paths.labels}: run `morph train stats` first")
    labels = add_start_means(cfg, paths, labels)
    if "start_means" not in labels:
        raise InputError(f"the held-out split has fewer than {START_POSITIONS} tokens: no start means")
    write_json(paths.labels, labels)
    LOG.info("starts: the features' means at a text's first %d positions, over %d held-out runs, in %s",
             len(labels["start_means"]["values"]), labels["start_means"]["runs"], paths.labels)


def stage_stats(cfg: TrainConfig, paths: Paths) -> None:
    device = setup_torch(cfg)
    lens = load_work_lens(cfg, paths, device)
    tokens = load_tokens(paths.val_bin)
    n = min(cfg.stats_tokens, len(tokens))
    meta = read_json(paths.data_meta, {}).get("val_sources")
    quotable = np.zeros(len(tokens), dtype=bool)
    words, vocab = word_ids(lens.tokenizer, np.asarray(tokens[:n + cfg.context]))
    words = np.concatenate([words, np.full(len(tokens) - len(words), -1)])
    word_freq = np.bincount(words[:n][words[:n] >= 0], minlength=len(vocab)).astype(np.float64)
    doc_freq = None
    if meta:
        allowed = quotable_files(cfg.corpus) if cfg.corpus else set()
        starts = meta["starts"] + [len(tokens)]
        for i, file_index in enumerate(meta["file"]):
            if meta["files"][file_index] in allowed:
                quotable[starts[i]:starts[i + 1]] = True
        seen = words[:n] >= 0
        docs = np.searchsorted(np.asarray(meta["starts"]), np.nonzero(seen)[0], side="right") - 1
        pairs = np.unique(words[:n][seen] * (len(starts) + 1) + docs)
        doc_freq = np.bincount(pairs // (len(starts) + 1), minlength=len(vocab))
    collected = collect(cfg, lens, tokens, words, max(len(vocab), 1), quotable, n)
    labels = add_start_means(cfg, paths, build_labels(lens, collected, vocab, word_freq, np.asarray(tokens), doc_freq),
                             lens)
    write_json(paths.labels, labels)
    dead = sum(1 for f in labels["features"] if f["density"] == 0)
    LOG.info("stats: %d held-out tokens (%.0f%% quotable), %d of %d features never active; labels in %s",
             collected.n_tokens, 100 * quotable[:n].mean(), dead, len(labels["features"]), paths.labels)
    record(paths, "stats", tokens=collected.n_tokens, dead=dead, features=len(labels["features"]),
           mean_density=math.fsum(f["density"] for f in labels["features"]) / len(labels["features"]),
           quotable_share=float(quotable[:n].mean()))
