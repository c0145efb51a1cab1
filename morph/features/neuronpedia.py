"""Neuronpedia explanations: the bulk export's records, which one is best, and Morph's cached copy.

Neuronpedia publishes its auto-interp explanations in bulk in a public bucket (`neuronpedia-datasets`):
`v1/{modelId}/{sourceId}/explanations/batch-N.jsonl.gz`, N = 0, 1, ..., each a gzipped file with one JSON
record a line: `modelId`, `layer` (the source id, e.g. `6-res-jb`), `index` (the feature, as a string),
`description`, `explanationModelName`, `typeName` (and ids and notes Morph does not use). A feature may have
several records. SAE-Lens gives each registry SAE a `neuronpedia_id`, `{modelId}/{sourceId}`
(`gpt2-small/6-res-jb`). This module reads records (morph.features.neuronpedia_fetch downloads them) and keeps
them per SAE in Morph's cache, `{cache}/labels/neuronpedia/{modelId}/{sourceId}/explanations.json`; nothing
here touches the network.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from morph.errors import MorphError

CACHE_FORMAT = "morph-neuronpedia/1"
CACHE_FILE = "explanations.json"
REQUIRED_FIELDS = ("modelId", "layer", "index", "description")

# The bulk export carries no score for an explanation (scores live in a separate table Neuronpedia does not
# export in bulk). "Best" is therefore defined by method: explanations made by the OpenAI token/activation-pair
# method Neuronpedia uses for its bulk runs come first, then Neuronpedia's newer max-activation methods, then
# any other kind; within a kind, the order the export lists them.
PREFERRED_KINDS = ("oai_token-act-pair", "np_max-act-logits", "np_max-act", "np_acts-logits-general")

_ID_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class ExportError(MorphError):
    """The Neuronpedia export could not be fetched or does not check out: nothing was written."""


@dataclass(frozen=True)
class NeuronpediaSource:
    """An SAE as Neuronpedia names it: `{model_id}/{source_id}` (SAE-Lens's `neuronpedia_id`)."""

    model_id: str
    source_id: str

    @classmethod
    def parse(cls, neuronpedia_id: str) -> "NeuronpediaSource":
        model_id, sep, source_id = neuronpedia_id.strip().partition("/")
        if not sep or not _ID_PART.match(model_id) or not _ID_PART.match(source_id):
            raise ExportError(f"{neuronpedia_id!r} is not a Neuronpedia id (MODEL/SOURCE, e.g. gpt2-small/6-res-jb)")
        return cls(model_id, source_id)

    @property
    def id(self) -> str:
        return f"{self.model_id}/{self.source_id}"

    @property
    def prefix(self) -> str:
        """The export's folder in the bucket."""
        return f"v1/{self.model_id}/{self.source_id}/explanations/"


@dataclass(frozen=True)
class Explanation:
    """One explanation of a feature: its text, the model that wrote it, and the method (`typeName`)."""

    description: str
    explainer: str = ""
    kind: str = ""


def best_first(explanations: list[Explanation]) -> tuple[Explanation, ...]:
    """The explanations of one feature, best first (PREFERRED_KINDS, then export order), duplicates dropped."""
    seen: set[str] = set()
    unique = []
    for e in explanations:
        key = e.description.strip().lower()
        if key and key not in seen:
            seen.add(key)
            unique.append(e)

    def rank(item: tuple[int, Explanation]) -> tuple[int, int]:
        position, e = item
        kind = PREFERRED_KINDS.index(e.kind) if e.kind in PREFERRED_KINDS else len(PREFERRED_KINDS)
        return kind, position

    return tuple(e for _, e in sorted(enumerate(unique), key=rank))


def parse_batch(data: bytes, source: NeuronpediaSource, d_sae: int | None, name: str) -> list[tuple[int, Explanation]]:
    """The records of one downloaded batch file, checked: the gzip stream is whole, every line is a JSON
    record with the fields above, its modelId and layer are `source`'s, its index a feature of the SAE
    (below `d_sae` when known). Any fault is an ExportError naming the file and the line."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise ExportError(f"{name} is corrupt (not a whole gzip file of UTF-8 text: {err})") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ExportError(f"{where} is not JSON") from None
        if not isinstance(record, dict) or any(k not in record for k in REQUIRED_FIELDS):
            raise ExportError(f"{where} lacks one of the fields {', '.join(REQUIRED_FIELDS)}")
        if record["modelId"] != source.model_id or record["layer"] != source.source_id:
            raise ExportError(f"{where} is for {record['modelId']}/{record['layer']}, not {source.id}")
        index = str(record["index"])
        if not index.isdigit() or (d_sae is not None and int(index) >= d_sae):
            raise ExportError(f"{where}: index {record['index']!r} is not a feature of this SAE"
                              + (f" (it has {d_sae})" if d_sae is not None else ""))
        description = record["description"]
        if not isinstance(description, str):
            raise ExportError(f"{where}: description is not text")
        if description.strip():
            out.append((int(index), Explanation(" ".join(description.split()),
                                                str(record.get("explanationModelName") or ""),
                                                str(record.get("typeName") or ""))))
    return out


def cache_root() -> Path:
    """Where every SAE's cached explanations live: `{Morph's cache}/labels/neuronpedia`."""
    from morph.models.default_model import cache_dir

    return cache_dir() / "labels" / "neuronpedia"


def cache_folder(source: NeuronpediaSource) -> Path:
    return cache_root() / source.model_id / source.source_id


@dataclass(frozen=True)
class CachedExplanations:
    """One SAE's explanations as cached: per feature, best first."""

    source: NeuronpediaSource
    url: str  # where they were fetched from
    features: dict[int, tuple[Explanation, ...]]

    @property
    def n_explanations(self) -> int:
        return sum(len(v) for v in self.features.values())


def write_cache(cached: CachedExplanations, staging: Path) -> Path:
    """Write `cached` into the folder `staging` (fsynced), then rename it over the SAE's cache folder.

    The cache folder exists only complete: a kill before the rename leaves only `staging` (a dot-named
    partial folder that read_cache never looks at); one after it leaves the new cache."""
    body = {"format": CACHE_FORMAT, "modelId": cached.source.model_id, "sourceId": cached.source.source_id,
            "url": cached.url,
            "features": {str(i): [[e.description, e.explainer, e.kind] for e in explanations]
                         for i, explanations in sorted(cached.features.items())}}
    path = staging / CACHE_FILE
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(body, handle, ensure_ascii=False, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    target = cache_folder(cached.source)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target / CACHE_FILE


def staging_folder(source: NeuronpediaSource) -> Path:
    """A fresh partial folder beside the SAE's cache folder (on the same file system, so the final rename
    is atomic); partial folders of earlier fetches whose process is gone are removed first."""
    parent = cache_folder(source).parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{source.source_id}.partial-*"):
        if not _running(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    staging = parent / f".{source.source_id}.partial-{os.getpid()}"
    staging.mkdir()
    return staging


def _running(pid: str) -> bool:
    """Whether the process `pid` (text from a folder name) still runs; this process counts as gone."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is another user's
        return True
    return True


def read_cache(source: NeuronpediaSource) -> CachedExplanations | None:
    """The SAE's cached explanations, or None when there is no cache (or it is unreadable: it is then
    ignored, and a new `morph labels fetch` replaces it)."""
    path = cache_folder(source) / CACHE_FILE
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("format") != CACHE_FORMAT or (body["modelId"], body["sourceId"]) != (source.model_id,
                                                                                      source.source_id):
            return None
        features = {int(i): tuple(Explanation(str(d), str(m), str(k)) for d, m, k in entries)
                    for i, entries in body["features"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return CachedExplanations(source, str(body.get("url") or ""), features)
