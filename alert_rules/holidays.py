"""Danish public holidays (helligdage), computed: no kept library provides them.

Source: the Danish holiday act (lov om søgnehelligdage); Store bededag was abolished from 2024
(lov nr. 158 af 28.02.2023).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache


def easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def danish_public_holidays(year: int) -> dict[date, str]:
    e = easter_sunday(year)
    out = {
        date(year, 1, 1): "Nytårsdag",
        e - timedelta(days=3): "Skærtorsdag",
        e - timedelta(days=2): "Langfredag",
        e: "Påskedag",
        e + timedelta(days=1): "2. påskedag",
        e + timedelta(days=39): "Kristi himmelfartsdag",
        e + timedelta(days=49): "Pinsedag",
        e + timedelta(days=50): "2. pinsedag",
        date(year, 12, 25): "Juledag",
        date(year, 12, 26): "2. juledag",
    }
    if year < 2024:
        out[e + timedelta(days=26)] = "Store bededag"
    return out
