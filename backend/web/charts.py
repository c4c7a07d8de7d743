"""Chart descriptions for the trend plots: aligned columns for uPlot, threshold bands, alert and
rejected-reading markers. Pure: values in, plain dicts out.

Issue 13: one chart per series (SpO2, pulse, weight, systolic, diastolic), so each threshold band
is drawn on the series it belongs to (a systolic red zone below 90 mmHg never sits under a
normal diastolic line); the x range always contains every point (the daily point sits at 12:00
UTC, after "now" in the morning); the y range contains the points and the bands' limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from backend.api.clinical import Series, Trend

DAY_S = 86_400.0


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


def x_range(*, start: float | None, end: float | None, xs: Sequence[float], resolution: str) -> list[float] | None:
    """The requested window, widened to every point with a margin (half a day for daily points,
    which are plotted at 12:00 UTC: before 13:00 Danish time today's point lies after "now")."""
    if start is None or end is None:
        return None
    pad = DAY_S / 2 if resolution == "daily" else 0.0
    lo = min([start, *xs]) - (pad if xs and min(xs) - pad < start else 0.0)
    hi = max([end, *xs]) + (pad if xs and max(xs) + pad > end else 0.0)
    return [lo, hi]


def y_range(values: Iterable[float | None], bands: Iterable[Mapping[str, Any]]) -> list[float] | None:
    """From the lowest to the highest of the points and the bands' finite limits, padded by 5 %."""
    finite = [float(v) for v in values if v is not None]
    limits = [float(b[k]) for b in bands for k in ("from", "to") if b.get(k) is not None]
    every = finite + limits
    if not every:
        return None
    lo, hi = min(every), max(every)
    span = max(hi - lo, 1.0)
    # An open-ended zone (red below 85 %) shows a visible strip below (above) its limit.
    for b in bands:
        if b.get("from") is None and b.get("to") is not None:
            lo = min(lo, float(b["to"]) - 0.08 * span)
        if b.get("to") is None and b.get("from") is not None:
            hi = max(hi, float(b["from"]) + 0.08 * span)
    pad = max((hi - lo) * 0.04, 0.5)
    return [lo - pad, hi + pad]


def chart(
    *,
    key: str,
    title: str,
    trends: Sequence[Trend],
    bands: Iterable[dict[str, Any]] = (),
    markers: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``bands``: {"scale": unit, "from": low|None, "to": high|None, "level": "red"|"yellow",
    "series": index}; ``markers``: {"t": epoch s, "level": severity or "rejected", "label": text}."""
    series = [s for tr in trends for s in tr.series]
    xs, values, lows, highs = align(series)
    band_list = [dict(b, series=b.get("series", 0)) for b in bands]
    resolution = trends[0].resolution if trends else "raw"
    start = trends[0].start.timestamp() if trends else None
    end = trends[0].end.timestamp() if trends else None
    return {
        "key": key,
        "title": title,
        "resolution": resolution,
        "start": start,
        "end": end,
        "x_range": x_range(start=start, end=end, xs=xs, resolution=resolution),
        "y_range": y_range([v for col in values + lows + highs for v in col], band_list),
        "x": xs,
        "series": [
            {"label": s.label, "unit": s.unit, "component": s.component, "values": values[i], "low": lows[i],
             "high": highs[i]}
            for i, s in enumerate(series)
        ],
        "bands": band_list,
        "markers": list(markers),
        # x positions with any value.
        "points": sum(1 for i in range(len(xs)) if any(v[i] is not None for v in values)),
    }


CHARTS: tuple[tuple[str, str, str], ...] = (
    ("spo2", "spo2", "spo2"),
    ("pulse", "pulse", "pulse"),
    ("weight", "weight", "weight"),
    ("bp_systolic", "blood_pressure", "systolic"),
    ("bp_diastolic", "blood_pressure", "diastolic"),
)
"""(chart key, measurement kind, component): one chart per series."""


def patient_charts(
    *,
    trends: Mapping[str, Trend],
    bands: Iterable[Mapping[str, Any]],
    markers: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The patient page's charts, one per series, each with only its own series' bands and the
    markers of its measurement (a blood-pressure marker naming no component goes on both)."""
    band_list, marker_list = list(bands), list(markers)
    out = []
    for key, kind, component in CHARTS:
        tr = trends.get(kind)
        if tr is None:
            continue
        own = tuple(s for s in tr.series if s.component == component)
        if not own:
            continue
        single = replace(tr, series=own)
        out.append(chart(
            key=key,
            title=own[0].label if kind == "blood_pressure" else tr.label,
            trends=[single],
            bands=[dict(b, series=0) for b in band_list
                   if b["kind"] == kind and b.get("component") in (None, component)],
            markers=[dict(m) for m in marker_list
                     if m["kind"] == kind and m.get("component") in (None, "", component)],
        ))
    return out
