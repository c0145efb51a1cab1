"""Colour slots for highlighted features, kept on the UI thread: a feature keeps its colour while it stays
among those in view."""

from __future__ import annotations

from collections import OrderedDict


class ColorBook:
    """Colour slots for features: a feature keeps its colour while it stays among those in view."""

    def __init__(self, n_slots: int):
        self.n_slots = max(1, n_slots)
        self._slots: OrderedDict[int, int] = OrderedDict()

    def assign(self, features: list[int]) -> dict[int, int]:
        wanted = features[: self.n_slots]
        for feature in wanted:
            if feature in self._slots:
                self._slots.move_to_end(feature)
        used = {self._slots[f] for f in wanted if f in self._slots}
        free = [s for s in range(self.n_slots) if s not in used]
        for feature in wanted:
            if feature not in self._slots:
                if len(self._slots) >= self.n_slots:
                    # evict the least recently seen feature that is not wanted now
                    for old in list(self._slots):
                        if old not in wanted:
                            free.append(self._slots.pop(old))
                            break
                slot = free.pop(0) if free else len(self._slots) % self.n_slots
                self._slots[feature] = slot
        return {f: self._slots[f] for f in wanted}

    def slot(self, feature: int) -> int | None:
        return self._slots.get(feature)
