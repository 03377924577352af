"""Seconds per phase of a run, kept as named laps (a build's stages, dedup's search phases)."""

from __future__ import annotations

import time


class Laps:
    """`lap(name)` stores the seconds since the previous lap (or since creation) in `laps`."""

    def __init__(self, laps: dict[str, float] | None = None) -> None:
        self.laps: dict[str, float] = {} if laps is None else laps
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
