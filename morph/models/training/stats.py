"""Feature statistics and labels over held-out text, written to `sae/labels.json` (format morph-labels/1).

Per feature: density (fraction of tokens it is active on), mean activation when active, max activation, the
tokens it is most often active on, the tokens its decoder direction promotes through the unembedding, and a
short label made from those. Only single tokens and numbers are written: no passage of the corpus.
"""

from __future__ import annotations

import math

from morph.models.training.common import LOG, Paths, record, setup_torch, write_json
from morph.models.training.config import TrainConfig
from morph.models.training.data import load_tokens, sequential_batches

LABELS_FORMAT = "morph-labels/1"


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


def promoted_tokens(model, sae, n: int = 10):
    """Per feature, the token ids its decoder direction promotes most through ln_f's gain and the unembedding."""
    import torch

    with torch.no_grad():
        w_dec = sae.W_dec.detach().float().cpu()
        w_dec = w_dec - w_dec.mean(dim=-1, keepdim=True)  # the final LayerNorm removes the mean
        ln_f = getattr(getattr(model, "transformer", None), "ln_f", None)
        if ln_f is not None and getattr(ln_f, "weight", None) is not None:
            w_dec = w_dec * ln_f.weight.detach().float().cpu()
        w_u = model.get_output_embeddings().weight.detach().float().cpu()  # [vocab, d]
        logits = w_dec @ w_u.T  # [d_sae, vocab]
        return logits.topk(n, dim=-1).indices


def collect(cfg: TrainConfig, paths: Paths, lens, n_tokens: int):
    """Run the SAE over held-out text; per-feature counts, sums, maxima, and feature x token counts."""
    import torch
    from tqdm.auto import tqdm

    from morph.models.hooks import capture

    val = load_tokens(paths.val_bin)
    d_sae, vocab = lens.d_sae, len(lens.tokenizer)
    count = torch.zeros(d_sae, dtype=torch.float64)
    total = torch.zeros(d_sae, dtype=torch.float64)
    peak = torch.zeros(d_sae)
    by_token = torch.zeros(d_sae * vocab, dtype=torch.int64)
    pending: list = []  # (feature, token) keys, counted in bulk: one bincount per ~64k tokens

    def flush() -> None:
        nonlocal by_token
        if pending:
            by_token += torch.bincount(torch.cat(pending), minlength=d_sae * vocab)
            pending.clear()

    seen = 0
    bar = tqdm(total=n_tokens, desc="stats", unit="tok", unit_scale=True)
    for x, _ in sequential_batches(val, n_tokens, cfg.eval_batch, cfg.context, lens.bos_token_id):
        with torch.no_grad():
            acts = capture(lens.model, lens.hook, x.to(lens.device))[:, 1:, :]
            feats = lens.sae.encode(acts.reshape(-1, acts.shape[-1])).float().cpu()
        tokens = x[:, 1:].reshape(-1)
        active = feats > 0
        count += active.sum(0)
        total += feats.sum(0, dtype=torch.float64)
        peak = torch.maximum(peak, feats.max(0).values)
        rows, cols = active.nonzero(as_tuple=True)
        pending.append(cols * vocab + tokens[rows])
        seen += len(tokens)
        if sum(len(p) for p in pending) > 64 * 65536:
            flush()
        bar.update(len(tokens))
    flush()
    bar.close()
    return seen, count, total, peak, by_token.view(d_sae, vocab)


def _wordlike(tok: str) -> bool:
    """Not a stray byte (<e2>) or control character: fit for a label."""
    return not (tok.startswith("<") and tok.endswith(">") and len(tok) > 2) and "\\x" not in tok and tok != "∅"


def make_label(top: list[str], promoted: list[str], dead: bool) -> str:
    def short(tokens: list[str], n: int) -> str:
        out: list[str] = []
        for tok in [t for t in tokens if _wordlike(t)] or tokens:
            if tok not in out:
                out.append(tok[:16])
            if len(out) == n:
                break
        return ", ".join(out)

    if dead or not top:
        return f"(dead) → {short(promoted, 3)}"
    return f"{short(top, 3)} → {short(promoted, 2)}"


def build_labels(tokenizer, n_tokens: int, count, total, peak, by_token, promoted_ids, n: int = 10) -> dict:
    """The morph-labels/1 document from the collected statistics."""
    import torch

    strings = token_strings(tokenizer)
    token_freq = by_token.sum(0).double()  # how often each token appears among activations, all features
    features = []
    for f in range(by_token.shape[0]):
        row = by_token[f]
        active = int(count[f].item())
        top: list[list] = []
        distinctive: list[str] = []
        if active:
            # most frequent, merged by their readable form (" the" and "the" are one entry)
            ids = torch.nonzero(row).flatten()
            order = ids[torch.argsort(row[ids], descending=True)][:50]
            merged: dict[str, int] = {}
            for i in order.tolist():
                merged[strings[i]] = merged.get(strings[i], 0) + int(row[i])
            top = [[tok, c] for tok, c in sorted(merged.items(), key=lambda kv: -kv[1])[:n]]
            # for the label: frequent and specific (share of the feature's firings x share of the token's)
            score = row[ids].double() ** 2 / token_freq[ids].clamp(min=1)
            distinctive = [strings[i] for i in ids[torch.argsort(score, descending=True)][:10].tolist()]
        promoted = []
        for i in promoted_ids[f].tolist():
            if strings[i] not in promoted:
                promoted.append(strings[i])
        features.append({
            "id": f,
            "label": make_label(distinctive, promoted, dead=not active),
            "density": active / max(n_tokens, 1),
            "mean_act": float(total[f].item() / active) if active else 0.0,
            "max_act": float(peak[f].item()),
            "top_tokens": top,
            "promoted": promoted[:n],
        })
    return {"format": LABELS_FORMAT, "n_tokens": int(n_tokens), "features": features}


def load_work_lens(paths: Paths, device: str):
    """The trained model and SAE loaded through `load_lens`, exactly as the editor loads them."""
    from morph.models.lens import LensSpec, load_lens

    return load_lens(LensSpec(model=str(paths.lm_final), sae=str(paths.sae_final), device=device))


def stage_stats(cfg: TrainConfig, paths: Paths) -> None:
    device = setup_torch(cfg)
    lens = load_work_lens(paths, device)
    seen, count, total, peak, by_token = collect(cfg, paths, lens, cfg.stats_tokens)
    labels = build_labels(lens.tokenizer, seen, count, total, peak, by_token, promoted_tokens(lens.model, lens.sae))
    write_json(paths.labels, labels)
    dead = sum(1 for f in labels["features"] if f["density"] == 0)
    LOG.info("stats: %d held-out tokens, %d of %d features never active; labels in %s", seen, dead,
             len(labels["features"]), paths.labels)
    record(paths, "stats", tokens=seen, dead=dead, features=len(labels["features"]),
           mean_density=math.fsum(f["density"] for f in labels["features"]) / len(labels["features"]))
