"""Chart descriptions for the trend plots: aligned columns for uPlot, threshold bands, alert
markers. Pure: values in, plain dicts out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from backend.api.clinical import Series, Trend


def align(
    series: Sequence[Series],
) -> tuple[list[float], list[list[float | None]], list[list[float | None]], list[list[float | None]]]:
    """One shared x axis (uPlot wants aligned columns); gaps are None."""
    xs = sorted({t for s in series for t in s.t})
    index = {t: i for i, t in enumerate(xs)}
    values, lows, highs = [], [], []
    for s in series:
        v: list[float | None] = [None] * len(xs)
        lo: list[float | None] = [None] * len(xs)
        hi: list[float | None] = [None] * len(xs)
        for j, t in enumerate(s.t):
            i = index[t]
            v[i] = s.value[j]
            if s.low:
                lo[i], hi[i] = s.low[j], s.high[j]
        values.append(v)
        lows.append(lo)
        highs.append(hi)
    return xs, values, lows, highs


def chart(
    *,
    key: str,
    title: str,
    trends: Sequence[Trend],
    bands: Iterable[dict[str, Any]] = (),
    markers: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``bands``: {"scale": unit, "from": low|None, "to": high|None, "level": "red"|"yellow"};
    ``markers``: {"t": epoch s, "level": severity, "label": text}."""
    series = [s for tr in trends for s in tr.series]
    xs, values, lows, highs = align(series)
    return {
        "key": key,
        "title": title,
        "resolution": trends[0].resolution if trends else "raw",
        "start": trends[0].start.timestamp() if trends else None,
        "end": trends[0].end.timestamp() if trends else None,
        "x": xs,
        "series": [
            {"label": s.label, "unit": s.unit, "values": values[i], "low": lows[i], "high": highs[i]}
            for i, s in enumerate(series)
        ],
        "bands": list(bands),
        "markers": list(markers),
        # x positions with any value: SpO2 and pulse may come from different readings.
        "points": sum(1 for i in range(len(xs)) if any(v[i] is not None for v in values)),
    }
