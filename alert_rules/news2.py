"""A NEWS2-style early-warning score over the home measurements that are available.

Bands are from the Royal College of Physicians' NEWS2 chart (2017) as tabulated in
../shared/CLINICAL.md. NEWS2 is a hospital score; its value at home is unproven, which is why
the response thresholds live in the rule file for a clinician to set (TOBS is the Danish
municipal equivalent). Oxygen therapy and consciousness are not measured at home: a patient is
scored as on air and alert.
"""

from __future__ import annotations

from collections.abc import Mapping


def _band(value: float, bands: tuple[tuple[float, float, int], ...]) -> int:
    for low, high, points in bands:
        if low <= value <= high:
            return points
    return 0


_INF = float("inf")
RESPIRATION = ((-_INF, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, _INF, 3))
SPO2_SCALE1 = ((-_INF, 91, 3), (92, 93, 2), (94, 95, 1), (96, _INF, 0))
# Scale 2 on air: 88-92 and >=93 both score 0 (the on-oxygen bands need data we lack).
SPO2_SCALE2 = ((-_INF, 83, 3), (84, 85, 2), (86, 87, 1), (88, _INF, 0))
SYSTOLIC = ((-_INF, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, _INF, 3))
PULSE = ((-_INF, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, _INF, 3))
TEMPERATURE = ((-_INF, 35.0, 3), (35.05, 36.0, 1), (36.05, 38.0, 0), (38.05, 39.0, 1), (39.05, _INF, 2))


def _rounded(value: float, decimals: int) -> float:
    return round(value, decimals)


def score(values: Mapping[str, float], *, spo2_scale: int = 1) -> dict[str, int]:
    """Points per available parameter. ``values`` keys: spo2, pulse, systolic, temperature,
    respiration_rate. Values are rounded the way they are charted (integers; temperature 0.1)."""
    parts: dict[str, int] = {}
    if "respiration_rate" in values:
        parts["respiration_rate"] = _band(_rounded(values["respiration_rate"], 0), RESPIRATION)
    if "spo2" in values:
        parts["spo2"] = _band(_rounded(values["spo2"], 0), SPO2_SCALE2 if spo2_scale == 2 else SPO2_SCALE1)
    if "systolic" in values:
        parts["systolic"] = _band(_rounded(values["systolic"], 0), SYSTOLIC)
    if "pulse" in values:
        parts["pulse"] = _band(_rounded(values["pulse"], 0), PULSE)
    if "temperature" in values:
        parts["temperature"] = _band(_rounded(values["temperature"], 1), TEMPERATURE)
    return parts
