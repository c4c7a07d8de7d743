"""The patient's own usual state (habituel værdi): mean ± k·SD over the last N stable days.

Pure: the backend's nightly job and the replay command call the same function. A day is
"stable" when the patient had no red or yellow alert open that day (Hurst 2020 computed
Z-scores against 14 stable days).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class Baseline:
    mean: float
    sd: float
    n_days: int
    last_day: date | None = None


def compute_baseline(
    daily_means: Iterable[tuple[date, float]],
    *,
    today: date,
    days: int,
    min_days: int,
    unstable_days: Collection[date] = (),
) -> Baseline | None:
    """Mean and SD of the daily means of the last ``days`` stable days before ``today``.

    None while fewer than ``min_days`` such days exist: the rule stays inactive rather than
    alerting against a baseline made of too little data.
    """
    chosen = sorted(
        ((d, v) for d, v in daily_means if d < today and d not in unstable_days), key=lambda x: x[0], reverse=True
    )[:days]
    if len(chosen) < max(min_days, 2):
        return None
    values = [v for _, v in chosen]
    mean = statistics.fmean(values)
    # the sample SD in floats (statistics.stdev works in exact fractions: 10x slower, same figure
    # to the last few bits for daily means)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return Baseline(mean=mean, sd=sd, n_days=len(values), last_day=chosen[0][0])
