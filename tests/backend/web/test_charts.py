"""The trend charts' pure description (issue 13): one chart per series with only its own bands,
an x range containing today's daily point (12:00 UTC, after "now" in the morning), a y range
containing the points and the bands' limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.api.clinical import Series, Trend
from backend.web.charts import patient_charts, x_range, y_range

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 10:00 in Denmark: today's noon point lies ahead


def _trend(kind: str, comps: dict[str, tuple[float, ...]], unit: str) -> Trend:
    days = [NOW.replace(hour=12) - timedelta(days=d) for d in range(len(next(iter(comps.values()))))][::-1]
    series = tuple(
        Series(c, c.capitalize(), unit, t=[d.timestamp() for d in days], value=list(vs)) for c, vs in comps.items()
    )
    return Trend(kind, kind, "30d", "daily", NOW - timedelta(days=30), NOW, series)


def test_each_chart_has_one_series_and_only_its_own_bands_and_markers() -> None:
    trends = {
        "blood_pressure": _trend("blood_pressure", {"systolic": (130, 128, 135), "diastolic": (82, 80, 85)}, "mmHg"),
        "spo2": _trend("spo2", {"spo2": (95, 94, 96)}, "%"),
    }
    bands: list[dict[str, Any]] = [
        {"kind": "blood_pressure", "component": "systolic", "scale": "mmHg", "from": None, "to": 90.0, "level": "red"},
        {"kind": "blood_pressure", "component": "systolic", "scale": "mmHg", "from": 180.0, "to": None,
         "level": "red"},
        {"kind": "spo2", "component": "spo2", "scale": "%", "from": None, "to": 85.0, "level": "red"},
    ]
    markers = [
        {"t": NOW.timestamp(), "level": "red", "label": "x", "kind": "blood_pressure", "component": "diastolic"},
        {"t": NOW.timestamp(), "level": "rejected", "label": "y", "kind": "spo2", "component": ""},
    ]
    charts = {c["key"]: c for c in patient_charts(trends=trends, bands=bands, markers=markers)}
    assert set(charts) == {"spo2", "bp_systolic", "bp_diastolic"}
    assert [s["component"] for s in charts["bp_systolic"]["series"]] == ["systolic"]
    assert [(b["from"], b["to"]) for b in charts["bp_systolic"]["bands"]] == [(None, 90.0), (180.0, None)]
    assert charts["bp_diastolic"]["bands"] == []
    assert [m["label"] for m in charts["bp_diastolic"]["markers"]] == ["x"]
    assert charts["bp_systolic"]["markers"] == []
    assert [m["level"] for m in charts["spo2"]["markers"]] == ["rejected"]
    # Ranges: today's noon point inside; the bands' limits inside the y range, below them a strip.
    for c in charts.values():
        lo, hi = c["x_range"]
        assert lo <= min(c["x"]) and hi >= max(c["x"]) and hi > NOW.replace(hour=12).timestamp()
    ylo, yhi = charts["bp_systolic"]["y_range"]
    assert ylo < 90 and yhi > 180
    slo, shi = charts["spo2"]["y_range"]
    assert slo < 85 < 94 < 96 < shi


def test_ranges() -> None:
    assert x_range(start=0.0, end=100.0, xs=[], resolution="raw") == [0.0, 100.0]
    assert x_range(start=0.0, end=100.0, xs=[50.0], resolution="raw") == [0.0, 100.0]
    daily = x_range(start=0.0, end=100_000.0, xs=[143_200.0], resolution="daily")
    assert daily is not None and daily[1] >= 143_200.0 + 43_200.0 and daily[0] == 0.0
    assert y_range([None], []) is None
    ys = y_range([10.0, 20.0], [{"from": 30.0, "to": None}])
    assert ys is not None and ys[0] < 10.0 and ys[1] > 30.0
