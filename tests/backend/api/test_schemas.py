"""Text that PostgreSQL cannot store (NUL) is refused at the edge as a 422, never a 500.

schemathesis once found a lone NUL passing the "says something" patterns (``\\S`` matches NUL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from backend.admin.routes import MunicipalTeamIn
from backend.api.schemas import ResolveIn, SnoozeIn, ThresholdIn


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "   ", "\x00 \x00"])
def test_notes_and_reasons_refuse_nul_and_blank(text: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    attempts: list[tuple[type[BaseModel], dict[str, object]]] = [
        (ResolveIn, {"note": text}),
        (SnoozeIn, {"until": later, "reason": text}),
        (ThresholdIn, {"rule_id": "r", "field": "f", "value": 1.0, "reason": text + "xyz" if text.strip() else text}),
        (MunicipalTeamIn, {"key": "aarhus-x", "name": text, "sector": "municipal", "municipality": "Aarhus"}),
    ]
    for model, data in attempts:
        with pytest.raises(ValidationError):
            model.model_validate(data)


def test_ordinary_text_is_accepted() -> None:
    assert ResolveIn(note="Ringet op, har det bedre").note == "Ringet op, har det bedre"
    assert MunicipalTeamIn.model_validate({"key": "aarhus-x", "name": "Aarhus sygepleje", "sector": "municipal",
                                           "municipality": "Aarhus"}).name
