"""The golden envelopes' raw bytes decode, through the agent's own decoders, to the values the
envelopes carry: the agent side and the backend side agree on the same examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.gatt import decode, readings_from
from vitals import parse_envelope

GOLDEN = Path(__file__).parent.parent / "golden"


@pytest.mark.parametrize(
    "name", ["envelope_bp_single.json", "envelope_oximeter_batch.json", "envelope_weight_user.json"]
)
def test_golden_raw_bytes_decode_to_the_envelope_values(name: str) -> None:
    env = parse_envelope(json.loads((GOLDEN / name).read_text()))
    for m in env.measurements:
        assert m.raw is not None
        readings = readings_from(decode(m.raw.characteristic, m.raw.data))
        same_kind = [r for r in readings if r.kind is m.kind]
        assert len(same_kind) == 1, (name, m.kind)
        r = same_kind[0]
        assert r.values == dict(m.values)
        assert set(m.quality) <= set(r.quality)
        if m.user_index is not None:
            assert r.user_index == m.user_index
