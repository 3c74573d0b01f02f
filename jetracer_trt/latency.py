"""Latency statistics with bounded memory: p50/p99 over a whole run (a log-spaced histogram) and over recent frames.

A node that runs for hours adds one value per frame; keeping every value would grow without bound, and keeping only
the last few hundred would make a 10-minute summary describe its last 10 seconds. The histogram's bins are 1% wide
(relative), so a reported percentile is within 1% of the exact one, from 1 µs to 1000 s.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

_LOW_MS = 1e-3
_BINS_PER_DECADE = 230  # 10 ** (1 / 230) = 1.0101: 1% wide bins
_DECADES = 9            # 1e-3 ms .. 1e6 ms
_NBINS = _BINS_PER_DECADE * _DECADES + 2  # + underflow and overflow
_SCALE = _BINS_PER_DECADE / math.log(10.0)


class LatencyStats:
    """``add(ms)`` per frame; ``whole_run()`` and ``recent()`` give (p50, p99) in milliseconds (0, 0 when empty)."""

    def __init__(self, recent: int = 300):
        self.counts = np.zeros(_NBINS, dtype=np.int64)
        self.count = 0
        self._recent: deque[float] = deque(maxlen=recent)

    def add(self, ms: float) -> None:
        if not math.isfinite(ms):
            return
        self._recent.append(ms)
        if ms <= _LOW_MS:
            index = 0
        else:
            index = min(_NBINS - 1, 1 + int(math.log(ms / _LOW_MS) * _SCALE))
        self.counts[index] += 1
        self.count += 1

    def percentile(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = q / 100.0 * (self.count - 1)
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if index == 0:
            return _LOW_MS
        # the bin's geometric centre
        return float(_LOW_MS * math.exp((index - 0.5) / _SCALE))

    def whole_run(self) -> tuple[float, float]:
        return self.percentile(50), self.percentile(99)

    def recent(self) -> tuple[float, float]:
        if not self._recent:
            return 0.0, 0.0
        p50, p99 = np.percentile(np.fromiter(self._recent, float, len(self._recent)), (50, 99))
        return float(p50), float(p99)
