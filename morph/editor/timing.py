"""Timing marks: what the editor tells an observer (the benchmarks) at the points a pause is made of, so that
it is measured from outside without patching the app.

`MorphApp.timings` is a `TimingHook` or None (the default: nothing is measured, and each point costs one
attribute test). The marks, each stamped with time.perf_counter():

- "debounce_fired": the pause is over, the analysis is being started (UI thread);
- "analysis_started" / "analysis_delivered" / "analysis_finished": the worker asked the engine for the
  analysis, got its first result (the cursor's block), got the final one (with its token counts);
- "highlights_set": highlights for the current text were handed to the writing surface (UI thread);
- "ui_work": a piece of UI-thread work on a result (`name`) ran from `started` to `at`.

Keystrokes are followed through the writing surface's own stream of edits (DocumentView.subscribe).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Literal, ParamSpec, Protocol, TypeVar

MarkKind = Literal["debounce_fired", "analysis_started", "analysis_delivered", "analysis_finished",
                   "highlights_set", "ui_work"]


@dataclass(frozen=True)
class TimingMark:
    kind: MarkKind
    at: float
    """time.perf_counter() when it happened (ui_work: when the work ended)."""
    generation: int = 0
    """The edit count the analysis or highlights are for."""
    partial: bool = False
    """highlights_set: from a partial result (the cursor's block only)."""
    name: str = ""
    """ui_work: which work."""
    started: float = 0.0
    """ui_work: when it began."""
    tokens: int | None = None
    """analysis_finished: the analysis' tokens, and those the model computed for it (the rest came from cache)."""
    computed_tokens: int | None = None


TimingHook = Callable[[TimingMark], None]


class Timed(Protocol):
    timings: TimingHook | None


P = ParamSpec("P")
R = TypeVar("R")


def mark(owner: Timed, kind: MarkKind, **facts: int | bool | str | None) -> None:
    """Tell the owner's hook, if it has one, that `kind` happens now."""
    hook = owner.timings
    if hook is not None:
        hook(TimingMark(kind, time.perf_counter(), **facts))  # type: ignore[arg-type]


def timed_work(method: Callable[P, R]) -> Callable[P, R]:
    """A method of a `Timed` owner whose run is reported as "ui_work" (named after the method)."""
    name = method.__name__

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        hook = args[0].timings  # type: ignore[attr-defined]
        if hook is None:
            return method(*args, **kwargs)
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            hook(TimingMark("ui_work", time.perf_counter(), name=name, started=started))

    return run
