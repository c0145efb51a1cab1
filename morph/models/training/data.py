"""The corpus: documents from a folder of .txt files, a held-out split, a BPE tokenizer, token files, batches."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np

from morph.errors import InputError
from morph.models.training.common import LOG, Paths, read_json, record, write_json
from morph.models.training.config import TrainConfig

EOT = "<|endoftext|>"


def read_documents(corpus: str) -> list[str]:
    """Every document of every .txt file under `corpus`, in path order: paragraphs joined later."""
    return [text for _, text in read_sourced_documents(corpus)]


def read_sourced_documents(corpus: str) -> list[tuple[str, str]]:
    """(file path relative to `corpus`, document) for every document, paragraphs joined by NUL."""
    folder = Path(corpus).expanduser()
    if not corpus or not folder.is_dir():
        raise InputError(f"corpus folder {corpus!r} does not exist (give --corpus DIR)")
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise InputError(f"corpus folder {corpus!r} holds no .txt files")
    docs: list[tuple[str, list[str]]] = []
    for path in files:
        source = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{path} is not UTF-8 ({err.reason} at byte {err.start})") from None
        paragraphs: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if line == EOT:
                if paragraphs:
                    docs.append((source, paragraphs))
                paragraphs = []
            elif line:
                paragraphs.append(line)
        if paragraphs:
            docs.append((source, paragraphs))
    if not docs:
        raise InputError(f"corpus folder {corpus!r} holds no text")
    return [(source, "\x00".join(d)) for source, d in docs]  # paragraphs kept apart until the separator is chosen


def split_documents(cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """A seeded shuffle of the documents, cut to --max-corpus-mb, then held-out documents for validation."""
    train, val = split_sourced_documents(cfg)
    return [text for _, text in train], [text for _, text in val]


def split_sourced_documents(cfg: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """split_documents, each document with the corpus file it came from."""
    docs = [(source, d.replace("\x00", cfg.paragraph_sep)) for source, d in read_sourced_documents(cfg.corpus)]
    rng = random.Random(cfg.seed)
    rng.shuffle(docs)
    if cfg.max_file_mb > 0:  # shuffled again: the capped files' documents would otherwise all come first
        docs = _cap_per_file(docs, int(cfg.max_file_mb * 1e6))
        rng.shuffle(docs)
    if cfg.max_corpus_mb > 0:
        budget, kept = int(cfg.max_corpus_mb * 1e6), []
        for source, doc in docs:
            if budget <= 0:
                break
            kept.append((source, doc[:budget]))
            budget -= len(doc)
        docs = kept
    if len(docs) == 1:  # one document: hold out its tail
        source, doc = docs[0]
        cut = doc.rfind(cfg.paragraph_sep, 0, int(len(doc) * (1 - cfg.val_fraction)))
        cut = cut if cut > 0 else int(len(doc) * (1 - cfg.val_fraction))
        docs = [(source, doc[:cut]), (source, doc[cut:].lstrip())]
    total = sum(len(d) for _, d in docs)
    val: list[tuple[str, str]] = []
    while docs and (not val or sum(len(d) for _, d in val) < cfg.val_fraction * total) and len(docs) > 1:
        val.append(docs.pop())
    return docs, val


def _cap_per_file(docs: list[tuple[str, str]], cap: int) -> list[tuple[str, str]]:
    """The shuffled documents with at most `cap` characters from each source file: the first documents of a
    file in shuffled order are kept, the one crossing the cap is cut there, later ones are dropped."""
    taken: dict[str, int] = {}
    kept = []
    for source, doc in docs:
        room = cap - taken.get(source, 0)
        if room > 0:
            kept.append((source, doc[:room]))
            taken[source] = taken.get(source, 0) + min(room, len(doc))
    return kept


# ---------------------------------------------------------------------------------------------- tokenizer
def stage_tokenizer(cfg: TrainConfig, paths: Paths) -> None:
    """Byte-level BPE (vocab --vocab) with <|endoftext|> as BOS/EOS, saved as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    train, _ = split_documents(cfg)
    limit = int(cfg.tokenizer_mb * 1e6) if cfg.tokenizer_mb > 0 else None

    def texts() -> Iterator[str]:
        used = 0
        for doc in train:
            for paragraph in doc.split(cfg.paragraph_sep):
                yield paragraph + cfg.paragraph_sep
                used += len(paragraph)
                if limit is not None and used >= limit:
                    return

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, special_tokens=[EOT], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True,
    )
    LOG.info("tokenizer: training byte-level BPE, vocab %d", cfg.vocab_size)
    tok.train_from_iterator(texts(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=cfg.context)
    fast.save_pretrained(paths.tokenizer)
    LOG.info("tokenizer: %d tokens, saved to %s", len(fast), paths.tokenizer)
    record(paths, "tokenizer", vocab_size=len(fast))


def load_tokenizer(paths: Paths):
    from transformers import PreTrainedTokenizerFast

    if not (paths.tokenizer / "tokenizer.json").is_file():
        raise InputError(f"no tokenizer in {paths.out}: run `morph train tokenizer` first")
    return PreTrainedTokenizerFast.from_pretrained(str(paths.tokenizer))


# ---------------------------------------------------------------------------------------------- token files
def stage_data(cfg: TrainConfig, paths: Paths) -> None:
    """Tokenize the split corpus with the subject model's tokenizer into token streams (uint16, or uint32 for
    a vocabulary over 65,536), each document preceded by <|endoftext|> (or the tokenizer's end-of-text)."""
    from tqdm.auto import tqdm

    from morph.models.training.subject import load_subject_tokenizer

    tokenizer = load_subject_tokenizer(cfg, paths)
    tokenizer.model_max_length = 1 << 40  # whole documents here; windows are cut later
    eot = tokenizer.convert_tokens_to_ids(EOT) if EOT in tokenizer.get_vocab() else tokenizer.eos_token_id
    dtype = token_dtype(len(tokenizer))
    train, val = split_sourced_documents(cfg)
    paths.data.mkdir(parents=True, exist_ok=True)
    counts: dict = {}
    for name, sourced, target in (("train", train, paths.train_bin), ("val", val, paths.val_bin)):
        docs = [text for _, text in sourced]
        pieces = []
        for start in tqdm(range(0, len(docs), 16), desc=f"tokenizing {name}", unit_scale=16, unit="doc"):
            for ids in tokenizer(docs[start:start + 16], add_special_tokens=False)["input_ids"]:
                pieces.append(np.asarray([eot, *ids], dtype=dtype))
        if name == "val":  # which file each held-out token came from: labels quote only files that allow it
            files = sorted({source for source, _ in sourced})
            starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])[:-1]]).astype(int).tolist()
            counts["val_sources"] = {"files": files, "starts": starts,
                                     "file": [files.index(source) for source, _ in sourced]}
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
        tmp = target.with_suffix(".tmp")
        tokens.tofile(tmp)
        tmp.replace(target)
        counts[name] = {"documents": len(docs), "characters": sum(map(len, docs)), "tokens": int(len(tokens))}
        LOG.info("data: %s: %d documents, %d characters, %d tokens", name, len(docs), counts[name]["characters"],
                 len(tokens))
    write_json(paths.data_meta, {**counts, "dtype": np.dtype(dtype).name})
    files = sorted(p.name for p in Path(cfg.corpus).expanduser().rglob("*.txt"))
    record(paths, "data", corpus=str(cfg.corpus), files=files, train=counts["train"], val=counts["val"])


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def load_tokens(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"no token file {path}: run `morph train data` first")
    meta = read_json(path.parent / "meta.json", {})
    return np.memmap(path, dtype=np.dtype(meta.get("dtype", "uint16")), mode="r")


def random_batch(tokens: np.ndarray, batch: int, context: int, bos: int, rng: np.random.Generator):
    """`batch` random windows: inputs [BOS, t0 .. t_{n-2}] and targets [t0 .. t_{n-1}], n = context."""
    import torch

    starts = rng.integers(0, len(tokens) - context, size=batch)
    windows = np.stack([tokens[s:s + context].astype(np.int64) for s in starts])
    y = torch.from_numpy(windows)
    x = torch.cat([torch.full((batch, 1), bos, dtype=torch.long), y[:, :-1]], dim=1)
    return x, y


def sequential_batches(tokens: np.ndarray, n_tokens: int, batch: int, context: int, bos: int):
    """Non-overlapping windows of held-out text, in order, covering about `n_tokens` tokens (BOS prepended)."""
    import torch

    # BOS + context-1 text tokens per window: enough windows for `n_tokens` text positions
    n_windows = min(max(1, -(-n_tokens // (context - 1))), max(1, len(tokens) // context))
    if len(tokens) < context + 1:
        raise InputError(f"the held-out split has only {len(tokens)} tokens; it needs more than {context}")
    for first in range(0, n_windows, batch):
        rows = [tokens[i * context:(i + 1) * context].astype(np.int64) for i in range(first, min(n_windows, first + batch))]
        y = torch.from_numpy(np.stack(rows))
        x = torch.cat([torch.full((len(rows), 1), bos, dtype=torch.long), y[:, :-1]], dim=1)
        yield x, y
