"""`python -m benchmarks`: run the suite on the embedded default model (and on --model/--sae if given)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import morph.editor  # noqa: F401 - before Textual loads: it sets Textual's frame rate, as in the editor
from benchmarks import BENCHMARKS
from benchmarks.common import Context, Figure, editor_threads

RESULTS = Path(__file__).resolve().parent / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (for development)")
    parser.add_argument("--smoke", action="store_true",
                        help="one of everything, as fast as possible (for the test suite; the figures mean nothing)")
    parser.add_argument("--model", help="also benchmark this model (folder or hub id; needs --sae)")
    parser.add_argument("--sae", help="the SAE for --model (folder or RELEASE:SAE_ID)")
    parser.add_argument("--tiny", action="store_true",
                        help="also benchmark the tiny random test model (morph/models/tiny.py), for development")
    parser.add_argument("--no-default", action="store_true", help="skip the embedded default model")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(BENCHMARKS)}")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    parser.add_argument("--out", default=str(RESULTS), help=f"results JSON (default {RESULTS})")
    return parser.parse_args(argv)


def build_tiny() -> tuple[str, str]:
    """The tests' tiny GPT-2 (d_model 64, 3 layers) and TopK SAE at blocks.1.hook_resid_post, built once."""
    root = Path(tempfile.gettempdir()) / "morph-bench-tiny"
    model, sae = root / "model", root / "sae"
    if not (model / "config.json").is_file() or not (sae / "cfg.json").is_file():
        from morph.models.tiny import build_model, build_sae

        build_model(model, "gpt2", d_model=64, n_layers=3)
        build_sae(sae, d_in=64, hook_name="blocks.1.hook_resid_post", arch="topk")
    return str(model), str(sae)


def contexts(args: argparse.Namespace, cli_threads: int) -> list[Context]:
    from morph.models.default_model import HOW_TO_GET
    from morph.models.presets import default_available

    out: list[Context] = []
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    threads = editor_threads()
    if not args.no_default:
        if default_available():
            out.append(Context(mode, None, None, "default", threads=threads, cli_threads=cli_threads))
        else:
            print(f"benchmarks: default skipped: {HOW_TO_GET}", file=sys.stderr)
    if args.model or args.sae:
        if not (args.model and args.sae):
            raise SystemExit("benchmarks: --model and --sae go together")
        out.append(Context(mode, args.model, args.sae, Path(args.model).name or args.model, threads=threads,
                           cli_threads=cli_threads))
    if args.tiny:
        model, sae = build_tiny()
        out.append(Context(mode, model, sae, "tiny-test-model", threads=threads, cli_threads=cli_threads))
    if not out:
        raise SystemExit("benchmarks: no model to benchmark (the default is missing): give --model/--sae or --tiny")
    return out


def number(value: float) -> str:
    a = abs(value)
    return f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}" if a >= 0.1 else f"{value:.3f}"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "%":
        return f"{value:.0f}%"
    return f"{number(value)} {unit}".strip()


def spread_text(fig: Figure) -> str:
    if fig.lo is None or fig.hi is None:
        return "—"
    if fig.unit == "×":
        return f"{fig.lo:.2f}–{fig.hi:.2f} ({fig.spread}, n={fig.n})"
    return f"{number(fig.lo)}–{number(fig.hi)} ({fig.spread}, n={fig.n})"


def met_text(fig: Figure) -> str:
    return "—" if fig.met is None else ("yes" if fig.met else "NO")


def table_rows(results: list[dict]) -> list[tuple[str, ...]]:
    rows = []
    for model in results:
        for fig in model["figures"]:
            f = Figure(**{k: v for k, v in fig.items()})
            rows.append((model["label"], f.label, fmt(f.value, f.unit), spread_text(f), f.target or "—", met_text(f)))
        for name, error in model.get("errors", {}).items():
            rows.append((model["label"], f"{name}: FAILED", "—", error[:80], "—", "—"))
    return rows


HEADER = ("model", "figure", "median", "spread", "target", "met?")


def print_rich(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Morph benchmarks")
    for name in HEADER:
        table.add_column(name, justify="right" if name in ("median",) else "left")
    for row in table_rows(results):
        style = "red" if row[-1] == "NO" else None
        table.add_row(*row, style=style)
    console = Console()
    console.width = max(console.width, 150)
    console.print(table)


def markdown(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for row in table_rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def environment() -> dict:
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads_editor": editor_threads(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        import textual
        import textual.constants

        info["textual"] = textual.__version__
        info["textual_fps"] = textual.constants.MAX_FPS
    except Exception:  # noqa: BLE001
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The editor must not read the developer's own settings or write recovery files into their state dir.
    scratch = Path(tempfile.mkdtemp(prefix="morph-bench-"))
    os.environ["MORPH_CONFIG_DIR"] = str(scratch / "config")
    os.environ["MORPH_STATE_DIR"] = str(scratch / "state")
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            raise SystemExit(f"benchmarks: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    import torch

    cli_threads = torch.get_num_threads()  # torch's own count, before the editor's is set
    torch.set_num_threads(editor_threads())  # the editor's analysis threads; both sides of each ratio share it
    started = time.perf_counter()
    env = environment()
    results = []
    for ctx in contexts(args, cli_threads):
        ctx.log = lambda msg, label=ctx.label: print(f"[{label}] {msg}", file=sys.stderr, flush=True)
        entry: dict = {"label": ctx.label, "model": ctx.model or "default", "sae": ctx.sae or "default",
                       "mode": ctx.mode, "figures": [], "errors": {}, "seconds": {}}
        for name in names:
            module = importlib.import_module(f"benchmarks.{name}")
            ctx.log(f"{name} ...")
            t0 = time.perf_counter()
            try:
                figures = module.run(ctx)
            except Exception as err:  # noqa: BLE001 - one failing benchmark must not hide the others
                traceback.print_exc()
                entry["errors"][name] = f"{type(err).__name__}: {err}"
                figures = []
            entry["seconds"][name] = round(time.perf_counter() - t0, 2)
            ctx.log(f"{name} done in {entry['seconds'][name]:.1f} s")
            entry["figures"].extend(f.as_dict() for f in figures)
        lens = ctx.lens
        if lens is not None:
            entry["lens"] = {"model_name": lens.model_name, "sae_name": lens.sae_name, "hook": lens.hook.name,
                             "d_model": lens.d_model, "d_sae": lens.d_sae, "context_size": lens.context_size,
                             "parameters": sum(p.numel() for p in lens.model.parameters())}
        results.append(entry)
    payload = {"environment": env, "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
               "seconds": round(time.perf_counter() - started, 1), "models": results}
    try:
        payload["environment"]["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if args.markdown:
        print(markdown(results))
    else:
        print_rich(results)
    print(f"results: {out} ({payload['seconds']:.0f} s)", file=sys.stderr)
    return 1 if any(m["errors"] for m in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
