"""`morph models [--json]`: the embedded default and the presets, and which are on this machine."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list")


def _hub_path(repo: str, filename: str) -> str | None:
    """The local cache path of a hub file, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return found if isinstance(found, str) else None


def _sae_cached(spec: str) -> bool:
    release, _, sae_id = spec.partition(":")
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory().get(release)
    if lookup is None or sae_id not in lookup.saes_map:
        return False
    folder = lookup.saes_map[sae_id]
    return any(_hub_path(lookup.repo_id, f"{folder}/{name}") for name in ("cfg.json", "params.npz", "sae_weights.safetensors"))


def list_models() -> list[dict]:
    from morph.models import default_model
    from morph.models.presets import DEFAULT_SAE_DIR, PRESETS, default_available

    rows = []
    for preset in PRESETS.values():
        row = {"name": preset.name, "model": preset.model, "sae": preset.sae, "description": preset.description}
        if preset.name == "default":
            source = default_model.find_source()
            row.update(sae="morph-default/sae", sae_path=str(DEFAULT_SAE_DIR), available=default_available())
            if source is not None:
                # "converted": Morph's cache; "hub-cache": the Hugging Face cache; "gguf": converted on first use
                row.update(path=str(source.path), source=source.kind)
            else:
                row["how_to_get"] = default_model.HOW_TO_GET
        else:
            config = _hub_path(preset.model, "config.json")
            row["available"] = bool(config) and _sae_cached(preset.sae)
            if config:
                row["path"] = str(__import__("pathlib").Path(config).parent)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Models (use: morph --model NAME, or --model HF_ID --sae RELEASE:SAE_ID)", title_justify="left")
    for column in ("name", "model", "sae", "here"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["model"], row["sae"], "yes" if row["available"] else "no")
    Console().print(table)
    return 0
