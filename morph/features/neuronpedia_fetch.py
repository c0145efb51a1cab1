"""Downloading an SAE's explanations from Neuronpedia's public bulk export into Morph's cache.

Algorithm: list the batch files of `v1/{modelId}/{sourceId}/explanations/` with the bucket's S3 listing
(ListObjectsV2, following continuation tokens); a server without listings (a plain mirror) is probed
instead, batch-0, batch-1, ... up to the first 404. Each batch is downloaded whole and checked
(morph.features.neuronpedia.parse_batch); only when every one checks out are the explanations, best first
per feature, written to a partial folder and renamed into the cache. Any failure (server down, no export for
this SAE, a corrupt file) raises ExportError and leaves the previous cache, if any, as it was.

The bucket is `NEURONPEDIA_URL` unless `$MORPH_NEURONPEDIA_URL` (or the `neuronpedia_url` setting, passed in
by the caller) names another, e.g. a mirror or a test's loopback server.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from morph.features.neuronpedia import (
    CachedExplanations,
    Explanation,
    ExportError,
    NeuronpediaSource,
    best_first,
    parse_batch,
    staging_folder,
    write_cache,
)

NEURONPEDIA_URL = "https://neuronpedia-datasets.s3.us-east-1.amazonaws.com"
URL_ENV = "MORPH_NEURONPEDIA_URL"
TIMEOUT_S = 30.0
_BATCH = re.compile(r"batch-(\d+)\.jsonl\.gz$")
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class FetchProgress:
    """How far a fetch is: batch files done of `files_total` (None until known), bytes downloaded."""

    files_done: int
    files_total: int | None
    bytes_done: int


@dataclass(frozen=True)
class FetchResult:
    path: Path  # the cache file written
    files: int
    features: int
    explanations: int


def export_url(setting: str | None = None) -> str:
    """The bucket's base URL: `$MORPH_NEURONPEDIA_URL`, else the setting, else Neuronpedia's own."""
    return (os.environ.get(URL_ENV) or setting or NEURONPEDIA_URL).rstrip("/")


def fetch_explanations(source: NeuronpediaSource, d_sae: int | None, base_url: str | None = None,
                       progress: Callable[[FetchProgress], None] | None = None) -> FetchResult:
    """Download, check and cache every explanation of `source` (see the module's docstring)."""
    base = export_url(base_url)
    keys = _list_batches(base, source)
    features: dict[int, list[Explanation]] = {}
    done_bytes = 0
    if progress:
        progress(FetchProgress(0, len(keys) if keys is not None else None, 0))
    number = 0
    while True:
        if keys is not None:
            if number >= len(keys):
                break
            key = keys[number]
        else:
            key = f"{source.prefix}batch-{number}.jsonl.gz"
        data = _get(base, key, missing_ok=keys is None and number > 0)
        if data is None:  # the end of a probed export
            break
        name = key.rsplit("/", 1)[-1]
        for index, explanation in parse_batch(data, source, d_sae, name):
            features.setdefault(index, []).append(explanation)
        number += 1
        done_bytes += len(data)
        if progress:
            progress(FetchProgress(number, len(keys) if keys is not None else None, done_bytes))
    if not features:
        raise ExportError(f"the Neuronpedia export for {source.id} holds no explanations")
    cached = CachedExplanations(source, f"{base}/{source.prefix}",
                                {i: best_first(found) for i, found in features.items()})
    staging = staging_folder(source)
    try:
        path = write_cache(cached, staging)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot write the labels cache in {staging.parent}: {err.strerror or err}") from None
    return FetchResult(path, number, len(cached.features), cached.n_explanations)


def _list_batches(base: str, source: NeuronpediaSource) -> list[str] | None:
    """The export's batch keys in batch order from the S3 listing, or None where the server gives no
    listing. No batch listed: ExportError (Neuronpedia has no export for this SAE)."""
    keys: list[str] = []
    token = None
    while True:
        query = {"list-type": "2", "prefix": source.prefix}
        if token:
            query["continuation-token"] = token
        body = _get(base, "?" + urllib.parse.urlencode(query), missing_ok=True, listing=True)
        if body is None:
            return None
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return None
        if root.tag != f"{_S3}ListBucketResult":
            return None
        keys += [k.text or "" for k in root.iter(f"{_S3}Key")]
        truncated = (root.findtext(f"{_S3}IsTruncated") or "").strip() == "true"
        token = root.findtext(f"{_S3}NextContinuationToken")
        if not truncated or not token:
            break
    batches = sorted((int(m.group(1)), k) for k in keys if (m := _BATCH.search(k)))
    if not batches:
        raise ExportError(f"Neuronpedia has no explanations export for {source.id} "
                          f"(nothing under {base}/{source.prefix})")
    return [k for _, k in batches]


def _get(base: str, key: str, missing_ok: bool = False, listing: bool = False) -> bytes | None:
    """GET `base/key`: its body, or None for a 404 where `missing_ok` (or any refusal of a listing)."""
    url = f"{base}/{key}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        if listing and err.code in (400, 403, 404, 405, 501):
            return None
        if err.code == 404:
            if missing_ok:
                return None
            raise ExportError(f"Neuronpedia has no explanations export at {url} (404)") from None
        raise ExportError(f"{url}: HTTP {err.code} {err.reason}") from None
    except http.client.IncompleteRead as err:
        raise ExportError(f"the download of {url} broke off after {len(err.partial)} bytes") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise ExportError(f"cannot reach {base}: {reason}") from None
