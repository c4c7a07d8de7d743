"""Property tests: whatever the bytes, only GattDecodeError ever escapes a decoder.

Also runs every successful decode through readings_from and the CLI's JSON rendering, so
the whole path from radio bytes to JSON is covered by the same promise.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.gatt import GattDecodeError, decode, readings_from
from edge_agent.gatt.berrymed import decode_bm1000, split_bm1000_stream
from edge_agent.gatt.command import to_json_object
from edge_agent.gatt.registry import DECODERS, Decoded

FUZZ = settings(
    max_examples=300,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _exercise(decoder: Callable[[bytes], Decoded], data: bytes) -> None:
    try:
        decoded = decoder(data)
    except GattDecodeError as err:
        assert err.offset >= 0
        assert err.reason
        return
    readings_from(decoded)
    json.dumps(to_json_object(decoded), allow_nan=False)


@pytest.mark.parametrize("uuid", sorted(DECODERS))
@FUZZ
@given(data=st.binary(max_size=64))
def test_only_decode_error_escapes(uuid: str, data: bytes) -> None:
    _exercise(DECODERS[uuid], data)


@pytest.mark.parametrize("uuid", sorted(DECODERS))
@FUZZ
@given(flags=st.integers(0, 255), tail=st.binary(max_size=40))
def test_only_decode_error_escapes_with_every_flag_combination(
    uuid: str, flags: int, tail: bytes
) -> None:
    # Random bytes rarely get past the flags byte into the optional fields; pin the flags
    # and let the tail vary so every optional-field path is walked.
    _exercise(DECODERS[uuid], bytes([flags]) + tail)


@FUZZ
@given(uuid=st.text(max_size=40), data=st.binary(max_size=64))
def test_registry_rejects_any_uuid_with_decode_error(uuid: str, data: bytes) -> None:
    with contextlib.suppress(GattDecodeError):
        decode(uuid, data)


@FUZZ
@given(stream=st.binary(max_size=64))
def test_bm1000_stream_split_always_yields_decodable_frames(stream: bytes) -> None:
    frames, rest = split_bm1000_stream(stream)
    if frames:
        assert len(decode_bm1000(frames).frames) == len(frames) // 5
    assert len(rest) < 5
    assert not rest or rest[0] & 0x80
