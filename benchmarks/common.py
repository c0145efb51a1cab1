"""What every benchmark shares: the Figure record, robust statistics, the run context."""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence


@dataclass
class Figure:
    """One measured figure: a median (or a pooled percentile) with its spread, and its target."""

    name: str  # stable id, e.g. "keystroke_p50_on_ms"
    label: str  # for the table
    value: float | None
    lo: float | None = None
    hi: float | None = None
    spread: str = "min–max"  # what [lo, hi] is: "min–max", "IQR", "95% CI" (bootstrap)
    unit: str = ""
    n: int = 0  # samples behind the figure (runs, keystrokes, ...)
    target: str = ""  # e.g. "< 16 ms"
    met: bool | None = None  # None: no target, or nothing measured
    benchmark: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(value: float | None, op: str, bound: float) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def figure(name: str, label: str, samples: Sequence[float], unit: str = "", target: tuple[str, float] | None = None,
           spread: str = "min–max", **details: Any) -> Figure:
    """The median of repeated runs with their spread (min–max, or IQR from 5 runs up when asked)."""
    values = [float(v) for v in samples if v is not None and not math.isnan(v)]
    fig = Figure(name, label, None, unit=unit, n=len(values), details=dict(details))
    if values:
        fig.value = statistics.median(values)
        if spread == "IQR" and len(values) >= 5:
            fig.lo, fig.hi, fig.spread = percentile(values, 25), percentile(values, 75), "IQR"
        else:
            fig.lo, fig.hi, fig.spread = min(values), max(values), "min–max"
    _target(fig, target)
    fig.details.setdefault("samples", [round(v, 6) for v in values])
    return fig


def pooled(name: str, label: str, samples: Sequence[float], q: float, unit: str = "",
           target: tuple[str, float] | None = None, seed: int = 0, **details: Any) -> Figure:
    """A percentile over pooled samples (e.g. every keystroke), spread = bootstrap 95% interval."""
    values = [float(v) for v in samples]
    fig = Figure(name, label, None, unit=unit, n=len(values), spread="95% CI", details=dict(details))
    if values:
        fig.value = percentile(values, q)
        fig.lo, fig.hi = bootstrap(lambda xs: percentile(xs, q), [values], seed=seed)
    _target(fig, target)
    return fig


def mean_figure(name: str, label: str, samples: Sequence[float], unit: str = "",
                target: tuple[str, float] | None = None, seed: int = 0, **details: Any) -> Figure:
    """A mean (for rates and averages the brief asks as means), spread = bootstrap 95% interval."""
    values = [float(v) for v in samples]
    fig = Figure(name, label, None, unit=unit, n=len(values), spread="95% CI", details=dict(details))
    if values:
        fig.value = statistics.fmean(values)
        fig.lo, fig.hi = bootstrap(statistics.fmean, [values], seed=seed)
    _target(fig, target)
    return fig


def ratio_figure(name: str, label: str, num: Sequence[float], den: Sequence[float],
                 stat: Callable[[Sequence[float]], float], target: tuple[str, float] | None = None,
                 seed: int = 0, **details: Any) -> Figure:
    """stat(num) / stat(den) of two independent sample sets, spread = bootstrap 95% interval."""
    num, den = [float(v) for v in num], [float(v) for v in den]
    fig = Figure(name, label, None, unit="×", n=min(len(num), len(den)), spread="95% CI", details=dict(details))
    if num and den and stat(den) > 0:
        fig.value = stat(num) / stat(den)
        fig.lo, fig.hi = bootstrap(lambda a, b: stat(a) / max(stat(b), 1e-12), [num, den], seed=seed)
    _target(fig, target)
    return fig


def _target(fig: Figure, target: tuple[str, float] | None) -> None:
    if target is None:
        return
    op, bound = target
    unit = "" if fig.unit in ("", "×") else f" {fig.unit}"
    fig.target = f"{op} {bound:g}{unit}" if fig.unit != "×" else f"{op} {bound:g}×"
    fig.met = check(fig.value, op, bound)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bootstrap(stat: Callable[..., float], groups: list[list[float]], rounds: int = 1000,
              seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    outs = []
    for _ in range(rounds):
        outs.append(stat(*[[rng.choice(g) for _ in g] for g in groups]))
    return percentile(outs, 2.5), percentile(outs, 97.5)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def now() -> float:
    return time.perf_counter()


@dataclass
class Context:
    """One model under test, and how hard to try."""

    mode: str  # "full", "quick" (fewer repeats, smaller sizes) or "smoke" (one of everything, for tests)
    model: str | None  # None: the embedded default
    sae: str | None
    label: str
    lens: Any = None
    threads: int = 1
    cli_threads: int = 1  # torch's own count, which the CLI keeps (`morph steer` sets none): the cores
    log: Callable[[str], None] = print

    @property
    def quick(self) -> bool:
        return self.mode != "full"

    def pick(self, full: Any, quick: Any, smoke: Any = None) -> Any:
        if self.mode == "full":
            return full
        if self.mode == "smoke" and smoke is not None:
            return smoke
        return quick

    def lens_spec(self):
        from morph.models.lens import LensSpec

        return LensSpec(model=self.model, sae=self.sae, device="cpu")

    def load(self) -> Any:
        if self.lens is None:
            from morph.features.engine import quiet_hf
            from morph.models.lens import load_lens

            quiet_hf()
            self.lens = load_lens(self.lens_spec())
        return self.lens

    def count_tokens(self, text: str) -> int:
        return len(self.load().tokenizer(text, add_special_tokens=False)["input_ids"])

    def analysis_config(self):
        """The editor's configuration: torch threads = cores - 1 (see morph.commands.edit)."""
        from morph.features.analysis import AnalysisConfig

        return AnalysisConfig(threads=self.threads)


def editor_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's thread count is `n` while inside, then what it was."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
